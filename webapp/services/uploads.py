"""Uploaded files: the checks a .blend, an image or a zip of images passes before anything is stored."""

import io
import os
import stat
import tempfile
import zipfile
import zlib
from typing import BinaryIO

from werkzeug.utils import secure_filename

from tray_client.untrusted import MAX_PATH_DEPTH, is_relative_path

from . import ServiceError, storage

# --- The rules of uploaded files ---------------------------------------------------------------------
BLEND_MAX_BYTES = 500 * 1024 * 1024
IMAGE_MAX_BYTES = 50 * 1024 * 1024
IMAGE_MAX_SIDE = 4096
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
MAX_IMAGES = 500  # also under the request's form-part limit; more images go in several jobs
ARCHIVE_MAX_MEMBERS = 1000
ARCHIVE_MAX_TOTAL = 1024 * 1024 * 1024  # uncompressed
ARCHIVE_MAX_RATIO = 100  # images barely compress; a member shrunk 100x is a zip bomb
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLEND_MAGIC = b"BLENDER"


class InputError(ServiceError):
    """An uploaded file is not acceptable; `field` names the upload (blend, images, archive)."""

    def __init__(self, code: str, message: str, field: str, status: int = 400):
        super().__init__(code, message, status)
        self.field = field



# --- File checks ------------------------------------------------------------------------------------

def check_blend_header(head: bytes) -> str:
    """'plain', 'gzip' or 'zstd' when `head` (the file's first bytes) starts a .blend; else InputError.

    Blender 3.x compresses with gzip, 4.x and later with Zstandard. The zstd case is checked in full
    only when the optional `zstandard` module is installed; without it the magic number is accepted
    and the worker's Blender is the final judge.
    """
    def bad():
        return InputError("not_a_blend", "This is not a Blender file (no BLENDER header): upload the .blend "
                          "you saved from Blender.", "blend")
    if head.startswith(BLEND_MAGIC):
        return "plain"
    if head.startswith(GZIP_MAGIC):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
        except zlib.error:
            raise bad() from None
        if inner.startswith(BLEND_MAGIC):
            return "gzip"
        raise bad()
    if head.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            return "zstd"
        try:
            inner = zstandard.ZstdDecompressor().decompressobj().decompress(head)
        except zstandard.ZstdError:
            raise bad() from None
        if inner[:len(BLEND_MAGIC)] == BLEND_MAGIC or len(inner) < len(BLEND_MAGIC):
            return "zstd"
        raise bad()
    raise bad()


class PrefixedStream(io.RawIOBase):
    """A stream that replays bytes already read from its head, then reads on: no seek needed."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def readable(self):
        return True

    def read(self, size=-1):
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.rest.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.rest.read(size)


def input_name(filename: str | None, default_stem: str, suffix: str) -> str:
    """A safe file name ending in `suffix` (no paths, ASCII, at most 100 characters)."""
    base = secure_filename((filename or "").replace("\\", "/").rsplit("/", 1)[-1]) or default_stem
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return (stem[:100] or default_stem) + suffix


def unique_name(name: str, taken: set) -> str:
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate, n = f"{stem}-{n}{dot}{ext}", n + 1
    taken.add(candidate.lower())
    return candidate


def seekable_upload(stream: BinaryIO, cap: int, field: str, what: str) -> BinaryIO:
    """A seekable copy-free view of an upload (werkzeug spools them), or a bounded spooled copy."""
    try:
        if stream.seekable():
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(0)
            if size > cap:
                raise InputError("too_large", f"{what} is larger than {cap // (1024 * 1024)} MiB.", field, 413)
            return stream
    except (AttributeError, OSError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    size = 0
    while chunk := stream.read(storage.CHUNK):
        size += len(chunk)
        if size > cap:
            raise InputError("too_large", f"{what} is larger than {cap // (1024 * 1024)} MiB.", field, 413)
        spool.write(chunk)
    spool.seek(0)
    return spool


def check_image(fp: BinaryIO, label: str, field: str) -> str:
    """The image's format (PNG, JPEG or WEBP) when `fp` is one within the limits; else InputError."""
    from PIL import Image
    try:
        with Image.open(fp) as img:
            fmt, (width, height) = img.format, img.size
            if fmt in IMAGE_FORMATS and width <= IMAGE_MAX_SIDE and height <= IMAGE_MAX_SIDE:
                img.verify()
    except Exception:  # Pillow raises many kinds for junk (and DecompressionBombError)
        raise InputError("not_an_image", f"{label} is not a readable PNG, JPEG or WebP image.", field) from None
    finally:
        fp.seek(0)
    if fmt not in IMAGE_FORMATS:
        raise InputError("not_an_image", f"{label} is a {fmt} image; upload PNG, JPEG or WebP.", field)
    if width > IMAGE_MAX_SIDE or height > IMAGE_MAX_SIDE:
        raise InputError("image_too_large", f"{label} is {width}x{height} pixels; the limit is "
                         f"{IMAGE_MAX_SIDE}x{IMAGE_MAX_SIDE}.", field)
    return fmt


def _ignored_member(name: str) -> bool:
    """Debris archivers add (macOS resource forks, Finder and Explorer files): skipped silently."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".") or parts[-1].lower() == "thumbs.db"


def _unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts
            or "\x00" in name)


# A project: the .blend and the files it uses, at their relative paths.
PROJECT_PATH_MAX = 255  # a job input's name


def check_project_archive(fp: BinaryIO) -> list[zipfile.ZipInfo]:
    """The file members of a project zip after every safety check (zip-slip, symlinks, bombs, names a
    worker could not write, two paths that differ only in case); else InputError on `project`."""
    def reject(code, message, status=400):
        return InputError(code, message, "project", status)
    try:
        zf = zipfile.ZipFile(fp)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise reject("bad_archive", "The project is not a readable zip file.") from None
    if len(infos) > ARCHIVE_MAX_MEMBERS:
        raise reject("bad_archive", f"The project has {len(infos):,} entries; at most {ARCHIVE_MAX_MEMBERS:,}.")
    members, total, paths, folders = [], 0, set(), set()
    for info in infos:
        name = info.filename
        if _unsafe_member_name(name):
            raise reject("unsafe_archive", f"The project entry {name!r} points outside the project "
                         "(absolute path, drive letter or '..'): it was rejected.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise reject("unsafe_archive", f"The project entry {name!r} is a symbolic link; put the file "
                         "itself in the zip.")
        if info.is_dir() or _ignored_member(name):
            continue
        parts = name.split("/")
        if not is_relative_path(name):  # the Worker App's own rule: what it accepts, every worker can write
            raise reject("bad_archive", f"The project entry {name!r} has a path workers cannot use (at most "
                         f"{PROJECT_PATH_MAX} characters and {MAX_PATH_DEPTH} folders deep; no \\ : * ? \" < > |, "
                         "no names Windows reserves such as CON or NUL).")
        if info.flag_bits & 0x1:
            raise reject("bad_archive", f"The project entry {name!r} is encrypted.")
        key = name.lower()  # Windows and macOS workers would write both names into one file
        if key in paths or key in folders:
            raise reject("bad_archive", f"The project has {name!r} twice (names differing only in case, or a "
                         "file and a folder of that name).")
        prefixes = {"/".join(parts[:i]).lower() for i in range(1, len(parts))}
        if prefixes & paths:
            raise reject("bad_archive", f"The project entry {name!r} is inside a path that is a file.")
        paths.add(key)
        folders |= prefixes
        total += info.file_size
        if info.file_size > BLEND_MAX_BYTES:
            raise reject("too_large", f"{name!r} is larger than {BLEND_MAX_BYTES // (1024 * 1024)} MiB.", 413)
        if total > ARCHIVE_MAX_TOTAL:
            raise reject("archive_too_large", f"The project unpacks to more than "
                         f"{ARCHIVE_MAX_TOTAL // (1024 * 1024)} MiB.", 413)
        if info.file_size > 1024 * 1024 and info.file_size > ARCHIVE_MAX_RATIO * max(info.compress_size, 1):
            raise reject("unsafe_archive", f"{name!r} expands {info.file_size // max(info.compress_size, 1)}"
                         "-fold: that is a zip bomb, not a project file.")
        members.append(info)
    if not any(m.filename.lower().endswith(".blend") for m in members):
        raise reject("no_blend", "The project holds no .blend file: zip the folder with your .blend and its files.")
    return members


def check_archive(fp: BinaryIO) -> list[zipfile.ZipInfo]:
    """The image members of a zip after every safety check (zip-slip, symlinks, bombs); else InputError."""
    def reject(code, message, status=400):
        return InputError(code, message, "archive", status)
    try:
        zf = zipfile.ZipFile(fp)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise reject("bad_archive", "The archive is not a readable zip file.") from None
    if len(infos) > ARCHIVE_MAX_MEMBERS:
        raise reject("bad_archive", f"The archive has {len(infos):,} entries; at most {ARCHIVE_MAX_MEMBERS:,}.")
    members, total = [], 0
    for info in infos:
        if _unsafe_member_name(info.filename):
            raise reject("unsafe_archive", f"The archive entry {info.filename!r} points outside the archive "
                         "(absolute path, drive letter or '..'): it was rejected.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise reject("unsafe_archive", f"The archive entry {info.filename!r} is a symbolic link; "
                         "only plain image files are accepted.")
        if info.is_dir() or _ignored_member(info.filename):
            continue
        if info.flag_bits & 0x1:
            raise reject("bad_archive", f"The archive entry {info.filename!r} is encrypted.")
        total += info.file_size
        if info.file_size > IMAGE_MAX_BYTES:
            raise reject("image_too_large", f"{info.filename!r} is larger than "
                         f"{IMAGE_MAX_BYTES // (1024 * 1024)} MiB.")
        if total > ARCHIVE_MAX_TOTAL:
            raise reject("archive_too_large", f"The archive unpacks to more than "
                         f"{ARCHIVE_MAX_TOTAL // (1024 * 1024)} MiB.", 413)
        if info.file_size > 1024 * 1024 and info.file_size > ARCHIVE_MAX_RATIO * max(info.compress_size, 1):
            raise reject("unsafe_archive", f"{info.filename!r} expands {info.file_size // max(info.compress_size, 1)}"
                         "-fold: that is a zip bomb, not an image.")
        members.append(info)
    if not members:
        raise reject("no_images", "The archive holds no images: put PNG, JPEG or WebP files in it.")
    if len(members) > MAX_IMAGES:
        raise reject("too_many_images", f"The archive holds {len(members):,} files; a job takes at most "
                     f"{MAX_IMAGES:,} images.")
    for info in members:
        try:
            # ZipExtFile never yields more than the declared size, so this read is bounded.
            with zf.open(info) as member:
                data = member.read(IMAGE_MAX_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, zlib.error):
            raise reject("bad_archive", f"The archive entry {info.filename!r} is corrupt.") from None
        check_image(io.BytesIO(data), f"Archive entry {info.filename!r}", "archive")
    return members
