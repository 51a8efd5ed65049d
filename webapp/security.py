"""Secrets: password hashing (argon2id), random tokens stored only as SHA-256, pairing codes, and
sealing (Fernet: AES with an HMAC) for what a browser keeps but must not read, like a live pairing code."""

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

_hasher = PasswordHasher()  # argon2id with the library's memory-hard defaults

# Pairing codes are typed by people: no 0/O, 1/I/L look-alikes.
PAIRING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    """A bearer token: a readable kind prefix and 32 random bytes."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """Tokens have 256 bits of entropy, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_pairing_code() -> str:
    """XXXX-XXXX: 8 characters of a 31-letter alphabet (~40 bits), plenty for a 15-minute, single-use code."""
    raw = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_pairing_code(code: str) -> str:
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    return f"{cleaned[:4]}-{cleaned[4:]}"


def _fernet(secret_key: str, purpose: str) -> Fernet:
    # One key per purpose, derived from the app's SECRET_KEY: rotating that key rotates these too.
    key = hmac.new(secret_key.encode(), f"pictor-seal:{purpose}".encode(), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str, secret_key: str, purpose: str) -> str:
    """`text` encrypted and authenticated: unreadable and unforgeable without `secret_key`."""
    return _fernet(secret_key, purpose).encrypt(text.encode()).decode("ascii")


def unseal(token: str, secret_key: str, purpose: str, max_age_seconds: int) -> str | None:
    """The text `seal` sealed, or None when it was tampered with, made with another key or is too old."""
    try:
        return _fernet(secret_key, purpose).decrypt(token.encode("ascii"), ttl=max_age_seconds).decode()
    except (InvalidToken, UnicodeError, ValueError):
        return None
