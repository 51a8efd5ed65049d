"""Content-addressed blob storage under STORAGE_DIR: a file's name is its SHA-256."""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from ..extensions import db
from ..models import StoredFile
from . import ServiceError

CHUNK = 1024 * 1024


class TooLarge(ServiceError):
    status = 413

    def __init__(self, limit: int):
        super().__init__("too_large", f"The file is larger than the limit of {limit // (1024 * 1024)} MiB.")


def root() -> Path:
    path = Path(current_app.config["STORAGE_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def path_for(sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError("not a sha256 hex digest")
    return root() / "blobs" / sha256[:2] / sha256


def put_stream(stream: BinaryIO, max_bytes: int, expected_sha256: str | None = None) -> StoredFile:
    """Stream into a temp file while hashing, check size and hash, then move into place.

    Nothing lands under blobs/ unless it is complete and correct; the row is added to the session
    (the caller commits) and the same content is stored once.
    """
    tmp_dir = root() / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256.lower():
            raise ServiceError("hash_mismatch",
                               f"SHA-256 of the upload is {sha256}, not {expected_sha256}: upload it again.")
        final = path_for(sha256)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    stored = db.session.get(StoredFile, sha256)
    if stored is None:
        stored = StoredFile(sha256=sha256, size=size)
        db.session.add(stored)
    return stored


def put_bytes(data: bytes, max_bytes: int | None = None) -> StoredFile:
    import io
    return put_stream(io.BytesIO(data), max_bytes or len(data))


def open_blob(sha256: str) -> BinaryIO:
    return path_for(sha256).open("rb")


def delete_blob(sha256: str) -> None:
    path = path_for(sha256)
    path.unlink(missing_ok=True)


def disk_usage() -> int:
    return sum(p.stat().st_size for p in (root() / "blobs").rglob("*") if p.is_file()) \
        if (root() / "blobs").exists() else 0


def copy_to(sha256: str, dest: Path) -> None:
    with open_blob(sha256) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
