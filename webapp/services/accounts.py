"""Accounts: sign-up, credentials, wallet, personal API tokens."""

from email_validator import EmailNotValidError, validate_email

from ..clock import utcnow
from ..extensions import db
from ..models import ApiToken, User
from ..security import hash_password, new_token, token_hash, verify_password
from . import NotFound, ServiceError

MIN_PASSWORD = 10
WALLET_MAX = 128


def normalize_email(email: str) -> str:
    try:
        return validate_email((email or "").strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ServiceError("invalid_email", f"That email address is not valid: {exc}") from None


def check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise ServiceError("weak_password", f"Use a password of at least {MIN_PASSWORD} characters.")
    if len(password) > 1024:
        raise ServiceError("weak_password", "That password is too long (1024 characters at most).")


def user_by_email(email: str) -> User:
    user = db.session.execute(db.select(User).where(User.email == normalize_email(email))).scalar_one_or_none()
    if user is None:
        raise NotFound("user")
    return user


def sign_up(email: str, password: str) -> User:
    email = normalize_email(email)
    check_password(password)
    if db.session.execute(db.select(User.id).where(User.email == email)).first():
        raise ServiceError("email_taken", "An account with this email exists already: log in instead.", 409)
    user = User(email=email, password_hash=hash_password(password))
    db.session.add(user)
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User | None:
    try:
        email = normalize_email(email)
    except ServiceError:
        return None
    user = db.session.execute(db.select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        verify_password(_DUMMY_HASH, password)  # same cost whether or not the account exists
        return None
    return user if verify_password(user.password_hash, password) else None


def user_for_session(session_id: str) -> User | None:
    """The user a login cookie's id ("<user id>:<session version>") names, if that session is still live."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()) or len(user_id) > 19:
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and (user.session_version or 0) == int(version) else None


def end_sessions(user: User) -> None:
    """Log the user out everywhere: every cookie issued so far names an old session version."""
    db.session.execute(db.update(User).where(User.id == user.id)
                       .values(session_version=User.session_version + 1))
    db.session.commit()


def set_wallet(user: User, address: str) -> None:
    """The account's wallet: where payouts go (services/payouts.py). The rule is free-form but one for the
    account, the worker settings and the app (market.WALLET_RE): letters and digits, plus : . _ - (for
    chain prefixes and pool worker suffixes), up to 128 characters; no chain-specific checksum."""
    from .market import WALLET_RE
    address = (address or "").strip()
    if address and not WALLET_RE.match(address):
        raise ServiceError("invalid_wallet", f"A wallet address is letters and digits (plus : . _ -), starts with a "
                                             f"letter or digit, and has at most {WALLET_MAX} characters.")
    user.wallet_address = address or None
    db.session.commit()


def set_time_zone(user: User, name: str | None) -> None:
    """The zone the user's pages show times in: an IANA name, or empty for the browser's own."""
    from .. import timezones
    name = (name or "").strip()
    if name and timezones.zone_or_none(name) is None:
        raise ServiceError("invalid_time_zone", "Choose a time zone from the list (e.g. Europe/Berlin), "
                                                "or the browser's own.")
    user.time_zone = name or None
    db.session.commit()


def create_api_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Returns the row and the token itself, which is never stored and never shown again."""
    name = (name or "").strip() or "API token"
    if len(name) > 80:
        raise ServiceError("invalid_name", "A token name has at most 80 characters.")
    token = new_token("pct")
    row = ApiToken(user_id=user.id, name=name, prefix=token[:10], token_hash=token_hash(token))
    db.session.add(row)
    db.session.commit()
    return row, token


def list_api_tokens(user: User) -> list[ApiToken]:
    return list(db.session.execute(
        db.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
    ).scalars())


def revoke_api_token(user: User, token_id: int) -> None:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound("API token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()


_DUMMY_HASH = hash_password("timing-equaliser-not-a-password")
