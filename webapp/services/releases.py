"""Worker App builds the portal serves: publish a built installer, find the latest, stamp it with this
portal's address, send it, judge a version."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from tray_client import portal_stamp

from ..extensions import db
from ..models import AppRelease
from . import Conflict, NotFound, ServiceError, storage

WINDOWS = "windows"
INSTALLER_NAME = "PictorWorkerSetup-{version}.exe"
# What installer/build.py writes: PictorWorkerSetup-<tray_client.__version__>.exe
INSTALLER_NAME_RE = re.compile(r"^PictorWorkerSetup-(?P<version>[0-9][0-9A-Za-z.+-]{0,31})\.exe$")
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,31}$")  # fits AppRelease.version and the hello report
EXE_MIMETYPE = "application/vnd.microsoft.portable-executable"
CHUNK = 1024 * 1024


def version_key(version: str) -> tuple:
    """Order versions numerically (0.10.0 > 0.9.2); a pre-release sorts before its release (1.0.0rc1 < 1.0.0)."""
    match = re.match(r"^(\d+(?:\.\d+)*)(.*)$", version.strip())
    if not match:
        return ((), 0, version)
    numbers = tuple(int(n) for n in match.group(1).split("."))
    while len(numbers) > 1 and numbers[-1] == 0:  # 1.0 == 1.0.0
        numbers = numbers[:-1]
    suffix = match.group(2).lstrip(".-")
    return (numbers, 0 if suffix and not suffix.startswith("+") else 1, suffix)


def version_from_filename(name: str) -> str | None:
    match = INSTALLER_NAME_RE.match(name)
    return match.group("version") if match else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def get_release(version: str, platform: str = WINDOWS) -> AppRelease | None:
    return db.session.execute(
        db.select(AppRelease).where(AppRelease.version == version, AppRelease.platform == platform)
    ).scalar_one_or_none()


def publish(path: str | Path, version: str | None = None, platform: str = WINDOWS) -> AppRelease:
    """Copy a built installer into storage and record it as a release (committed).

    The version defaults to the one in the file name. Publishing the same file again returns the
    existing release; a different file under a version already published is refused, because
    providers may already have installed the first one under that number.
    """
    path = Path(path)
    if not path.is_file():
        raise ServiceError("not_found", f"{path} is not a file.")
    version = version or version_from_filename(path.name)
    if not version or not VERSION_RE.match(version):
        raise ServiceError("bad_version", f"Cannot tell the version of {path.name}: name it "
                           f"{INSTALLER_NAME.format(version='1.2.3')} or pass the version.")
    with path.open("rb") as f:
        if f.read(2) != b"MZ":
            raise ServiceError("not_an_installer", f"{path.name} is not a Windows program.")
    sha256 = _sha256_of(path)
    existing = db.session.execute(db.select(AppRelease).where(AppRelease.version == version)).scalar_one_or_none()
    if existing is not None:
        if existing.sha256 == sha256 and existing.platform == platform:
            return existing
        raise Conflict("version_exists", f"Version {version} is already published as a different file "
                       f"(sha256 {existing.sha256[:12]}...): raise tray_client.__version__ and build again.")
    with path.open("rb") as f:
        stored = storage.put_stream(f, max_bytes=path.stat().st_size, expected_sha256=sha256)
    release = AppRelease(version=version, platform=platform, filename=INSTALLER_NAME.format(version=version),
                         sha256=stored.sha256, size=stored.size)
    db.session.add(release)
    try:
        db.session.commit()
    except IntegrityError:  # published by someone else in the meantime
        db.session.rollback()
        raise Conflict("version_exists", f"Version {version} was published meanwhile.")
    return release


def latest_release(platform: str = WINDOWS) -> AppRelease | None:
    """The release with the highest version (releases are few: ordering them in Python is fine)."""
    rows = db.session.execute(db.select(AppRelease).where(AppRelease.platform == platform)).scalars().all()
    return max(rows, key=lambda r: (version_key(r.version), r.created_at, r.id), default=None)


def latest_version(platform: str = WINDOWS) -> str | None:
    release = latest_release(platform)
    return release.version if release else None


def is_current(app_version: str | None, platform: str = WINDOWS) -> bool | None:
    """Whether a worker's reported app version is the latest published one or newer; None = cannot tell."""
    latest = latest_version(platform)
    if latest is None or not app_version:
        return None
    return version_key(app_version) >= version_key(latest)


def serialize(release: AppRelease) -> dict:
    return {"version": release.version, "platform": release.platform, "filename": release.filename,
            "sha256": release.sha256, "size": release.size,
            "created_at": release.created_at.isoformat() if release.created_at else None}


def installer_path(release: AppRelease) -> Path:
    """Where the release's installer is stored; NotFound when the file was lost."""
    path = storage.path_for(release.sha256)
    if not path.is_file():
        raise NotFound("installer file (publish it again with `pictor-portal publish-installer`)")
    return path


# --- the portal's address on each download (tray_client/portal_stamp.py holds the format) -----------

STAMP_CACHE_SIZE = 16
_stamped_sha256: dict[tuple[str, bytes], str] = {}


def download_stamp(server_url: str) -> bytes:
    """The trailer naming this portal, appended to every installer download; b"" when the address is
    not one the app would accept (then the download is the file as built and the app asks for it)."""
    try:
        return portal_stamp.trailer(server_url)
    except portal_stamp.StampError:
        return b""


def stamped_sha256(release: AppRelease, stamp: bytes) -> str:
    """SHA-256 of the file as downloaded (installer + stamp): what the Download page shows and the
    download's ETag. Hashing tens of MB takes a moment, so it is kept per release and stamp."""
    if not stamp:
        return release.sha256
    key = (release.sha256, stamp)
    if key not in _stamped_sha256:
        digest = hashlib.sha256()
        with installer_path(release).open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        digest.update(stamp)
        if len(_stamped_sha256) >= STAMP_CACHE_SIZE:
            _stamped_sha256.pop(next(iter(_stamped_sha256)))
        _stamped_sha256[key] = digest.hexdigest()
    return _stamped_sha256[key]


def download_facts(release: AppRelease, server_url: str) -> dict:
    """What the Download page says about the file a visitor gets: size and SHA-256 with this portal's
    stamp, and whether it carries one (a lost file shows the figures as built; its download is a 404)."""
    stamp = download_stamp(server_url)
    try:
        sha256 = stamped_sha256(release, stamp)
    except NotFound:
        stamp, sha256 = b"", release.sha256
    return {"stamped": bool(stamp), "server_url": server_url, "size": release.size + len(stamp),
            "sha256": sha256, "built_sha256": release.sha256}


def stream_stamped(release: AppRelease, stamp: bytes):
    """The installer's bytes, then the stamp (the file is opened before the first byte is sent)."""
    f = installer_path(release).open("rb")

    def chunks():
        with f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield stamp
    return chunks()


WINDOWS_64, WINDOWS_32 = "64", "32"


def windows_bitness(user_agent: str | None) -> str | None:
    """What a browser's User-Agent says about Windows: "64", "32", or None (not Windows, or cannot tell).

    Win64/x64/WOW64 (a 32-bit browser on 64-bit Windows) mean 64-bit Windows; plain "Windows NT" is
    32-bit Windows in browsers that still say so, though Chromium now reports "Win64; x64" everywhere,
    so the page asks navigator.userAgentData where it exists (templates/main/download.html).
    """
    ua = user_agent or ""
    if "Windows NT" not in ua:
        return None
    if re.search(r"\b(Win64|x64|WOW64|amd64|x86_64|ARM64|aarch64)\b", ua, re.I):
        return WINDOWS_64
    return WINDOWS_32
