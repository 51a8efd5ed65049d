"""Thumbnails of finished outputs: made once with Pillow, cached on disk beside the blob store."""

import io
import os
import tempfile
from pathlib import Path

from . import storage

SIZE = 256
MAX_PIXELS = 100_000_000  # an output bigger than this gets the placeholder rather than a memory spike
PNG_MAGIC = b"\x89PNG"


def _cache_path(sha256: str) -> Path:
    storage.path_for(sha256)  # validates the digest before it becomes a path
    return storage.root() / "thumbs" / sha256[:2] / f"{sha256}-{SIZE}"


def content_type(data: bytes) -> str:
    return "image/png" if data.startswith(PNG_MAGIC) else "image/jpeg"


def placeholder(label: str = "no preview") -> bytes:
    """A neutral square for files Pillow cannot preview (OpenEXR, corrupt or purged files)."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (SIZE, SIZE), (230, 232, 240))
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), label)
    draw.text(((SIZE - (box[2] - box[0])) / 2, (SIZE - (box[3] - box[1])) / 2), label, fill=(97, 103, 125))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _render(sha256: str) -> bytes:
    from PIL import Image
    path = storage.path_for(sha256)
    if not path.exists():
        return placeholder("file deleted")
    with path.open("rb") as f:
        if f.read(4) == b"\x76\x2f\x31\x01":  # OpenEXR magic: Pillow has no EXR reader
            return placeholder("OpenEXR")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                return placeholder("too large")
            img.draft("RGB", (SIZE, SIZE))  # JPEG decodes at a reduced scale: much faster
            img.thumbnail((SIZE, SIZE))
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            img = img.convert("RGBA" if has_alpha else "RGB")
            out = io.BytesIO()
            if has_alpha:  # renders with a transparent film keep it
                img.save(out, "PNG", optimize=True)
            else:
                img.save(out, "JPEG", quality=85)
            return out.getvalue()
    except Exception:  # any file Pillow can't read gets the placeholder; a page must not 500
        return placeholder()


def thumbnail(sha256: str) -> bytes:
    """A thumbnail of at most 256x256 pixels (JPEG, or PNG with alpha) of the blob, cached on disk.

    Placeholders for missing files are not cached, so a file that arrives later gets its real preview.
    """
    cached = _cache_path(sha256)
    if cached.exists():
        return cached.read_bytes()
    if not storage.path_for(sha256).exists():
        return placeholder("file deleted")
    data = _render(sha256)
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cached.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, cached)  # atomic: two requests racing both write whole files
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return data


def forget(sha256: str) -> None:
    """Drop the cached thumbnail (its blob was deleted)."""
    _cache_path(sha256).unlink(missing_ok=True)
