"""Content-addressed blob storage under STORAGE_DIR: a file's name is its SHA-256.

Nothing here can fill the disk for good: uploads stream into tmp/ and a temp file a crash left there is
swept at start-up and hourly; a blob no row refers to is collected (outputs.collect_unreferenced_blobs
for rows, collect_stray_files for files whose row never committed). A full disk raises OSError(ENOSPC),
which the app answers with 507.
"""

import functools
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from ..clock import utcnow
from ..database import dialect_insert
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
    """store_blob, and its row added to the session (the caller commits)."""
    return ensure_row(*store_blob(stream, max_bytes, expected_sha256))


def store_blob(stream: BinaryIO, max_bytes: int, expected_sha256: str | None = None) -> tuple[str, int]:
    """Stream into a temp file while hashing, check size and hash, then move into place; returns the
    SHA-256 and size. Nothing lands under blobs/ unless it is complete and correct, and the same content
    is stored once. No database statement: a caller may take its write transaction after the upload."""
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = temp_file()
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
        try:
            os.utime(final)  # stored already: young again, so collect_stray_files leaves it be
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return sha256, size


def keep_row(sha256: str, size: int) -> None:
    """The blob's row, made once however many uploads of the same bytes race (a plain INSERT of the
    second would fail on the key), and young again so the blob collector leaves it be meanwhile."""
    connection = db.session.connection()  # Core: an upload's write transaction runs it under the write lock
    connection.execute(_row_upsert(connection.dialect.name), {"sha256": sha256, "size": size, "created_at": utcnow()})


@functools.cache
def _row_upsert(dialect: str):
    stmt = dialect_insert(dialect)(StoredFile.__table__)
    return stmt.on_conflict_do_update(index_elements=["sha256"], set_={"created_at": stmt.excluded.created_at})


def ensure_row(sha256: str, size: int) -> StoredFile:
    """keep_row, and the row."""
    keep_row(sha256, size)
    return db.session.execute(db.select(StoredFile).where(StoredFile.sha256 == sha256)
                              .execution_options(populate_existing=True)).scalar_one()


def put_bytes(data: bytes, max_bytes: int | None = None) -> StoredFile:
    import io
    return put_stream(io.BytesIO(data), max_bytes or len(data))


def open_blob(sha256: str) -> BinaryIO:
    return path_for(sha256).open("rb")


def delete_blob(sha256: str) -> None:
    path = path_for(sha256)
    path.unlink(missing_ok=True)


def _old_files(folder: Path, max_age: float, now: float):
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            if path.is_file() and now - path.stat().st_mtime > max_age:
                yield path
        except FileNotFoundError:  # another process removed it meanwhile
            continue


def sweep_temp_files(now: float | None = None) -> int:
    """Delete temp files untouched for TEMP_MAX_AGE_SECONDS (an upload in flight writes to its own file
    every second, so it is never that old); returns how many. Run at start-up and by the scheduler."""
    if not current_app.config.get("STORAGE_DIR"):
        return 0
    base = Path(current_app.config["STORAGE_DIR"])
    max_age = float(current_app.config.get("TEMP_MAX_AGE_SECONDS", 3600))
    now = time.time() if now is None else now
    swept = 0
    for path in _old_files(base / "tmp", max_age, now):
        path.unlink(missing_ok=True)
        swept += 1
    return swept


def temp_file(suffix: str = "") -> tuple[int, str]:
    """A new temp file under tmp/ (same file system as blobs/, so os.replace moves it into place)."""
    tmp_dir = root() / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    return tempfile.mkstemp(dir=tmp_dir, suffix=suffix)


def collect_stray_files(now: float | None = None) -> int:
    """Delete files under blobs/ that have no StoredFile row (their upload's transaction never committed:
    a crash, or a result refused after it was stored) once older than BLOB_GRACE_SECONDS; returns how many."""
    max_age = float(current_app.config.get("BLOB_GRACE_SECONDS", 3600))
    now = time.time() if now is None else now
    candidates = {path.name: path for path in _old_files(root() / "blobs", max_age, now)}
    if not candidates:
        return 0
    known: set[str] = set()
    names = list(candidates)
    for start in range(0, len(names), 500):
        known.update(db.session.execute(db.select(StoredFile.sha256).where(
            StoredFile.sha256.in_(names[start:start + 500]))).scalars())
    db.session.rollback()
    stray = 0
    for name, path in candidates.items():
        try:  # put_stream touches a blob it receives again: one re-uploaded meanwhile is young again
            if name not in known and now - path.stat().st_mtime > max_age:
                path.unlink()
                stray += 1
        except FileNotFoundError:
            continue
    return stray


def disk_usage() -> int:
    return sum(p.stat().st_size for p in (root() / "blobs").rglob("*") if p.is_file()) \
        if (root() / "blobs").exists() else 0


def copy_to(sha256: str, dest: Path) -> None:
    with open_blob(sha256) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
