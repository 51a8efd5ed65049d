"""Thumbnails of finished outputs: made once with Pillow (OpenEXR frames with OpenEXR), cached on disk
beside the blob store.

A PNG can't be decoded at a reduced scale, and a 285 KB file may claim 9999x10000 pixels (400 MB once
decoded). So the portal reads only the header itself: an image over THUMBNAIL_MAX_PIXELS gets the
placeholder; any other is decoded in one child process with its address space capped at
THUMBNAIL_MEMORY_BYTES, one image at a time. A portal process's memory stays flat whatever is asked of
it, and a child that runs out of memory is replaced, not the portal.

An OpenEXR frame is not even parsed in the portal (its reader is C++: a hostile header must crash a
child, not the portal): the child reads the header, refuses more than EXR_MAX_SAMPLES channel samples
(what the whole image takes as float32), then tone-maps the linear light for a screen — an extended
Reinhard curve whose white point is the frame's 99.5th percentile, so a frame within 0..1 stays as it
is and highlights roll off instead of clipping — and encodes it as sRGB.
"""

import io
import math
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from flask import current_app

from . import storage

SIZE = 256
PNG_MAGIC = b"\x89PNG"
EXR_MAGIC = b"\x76\x2f\x31\x01"  # Pillow has no EXR reader: OpenEXR's bindings decode these
EXR_MAX_SAMPLES = 64_000_000  # pixels x channels: 256 MB as float32, a 4K RGBA frame with room to spare
EXR_WHITE_PERCENTILE = 99.5
DECODE_TIMEOUT = 60  # seconds: a thumbnail request gives up on the child after this
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cache_path(sha256: str) -> Path:
    storage.path_for(sha256)  # validates the digest before it becomes a path
    return storage.root() / "thumbs" / sha256[:2] / f"{sha256}-{SIZE}"


def content_type(data: bytes) -> str:
    return "image/png" if data.startswith(PNG_MAGIC) else "image/jpeg"


def placeholder(label: str = "no preview") -> bytes:
    """A neutral square for files that can't be previewed (corrupt, oversized or purged files)."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (SIZE, SIZE), (230, 232, 240))
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), label)
    draw.text(((SIZE - (box[2] - box[0])) / 2, (SIZE - (box[3] - box[1])) / 2), label, fill=(97, 103, 125))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _cap_memory(limit: int) -> None:
    """In the decoding child: allocations past `limit` bytes fail with MemoryError (Linux and macOS)."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # Windows has no rlimits: the pixel cap still holds
        pass


def decode(path: str, max_pixels: int) -> bytes | None:
    """The thumbnail of the image at `path` (JPEG, or PNG with alpha); None for what Pillow can't
    read. Runs in the decoding child; the caller checked the header already, Pillow checks it again."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = max_pixels // 2  # Pillow refuses at twice this: never more than the cap
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                return None
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
    except Exception:  # MemoryError included: any file Pillow can't read gets the placeholder
        return None


def _exr_planes(channels: dict):
    """(RGB, alpha or None) arrays of an EXR's channels: packed RGBA/RGB, separate R, G, B (or a layer's
    *.R, *.G, *.B), else one grey channel."""
    import numpy as np
    for packed in ("RGBA", "RGB"):
        if packed in channels:
            pixels = channels[packed].pixels
            return pixels[..., :3], (pixels[..., 3] if packed == "RGBA" else None)
    for prefix in [""] + sorted({name.rsplit(".", 1)[0] + "." for name in channels if "." in name}):
        if all(prefix + c in channels for c in "RGB"):
            alpha = channels.get(prefix + "A")
            return (np.stack([channels[prefix + c].pixels for c in "RGB"], axis=-1),
                    None if alpha is None else alpha.pixels)
    grey = channels.get("Y") or next(iter(channels.values()))
    plane = grey.pixels if grey.pixels.ndim == 2 else grey.pixels[..., 0]
    return np.stack([plane] * 3, axis=-1), None


def tone_map(rgb, alpha=None):
    """Linear, premultiplied scene light -> 8-bit sRGB (and straight alpha), see the module docstring."""
    import numpy as np
    rgb = np.nan_to_num(np.asarray(rgb, dtype=np.float32), nan=0.0, posinf=65504.0, neginf=0.0).clip(0.0, 65504.0)
    if alpha is not None:
        alpha = np.nan_to_num(np.asarray(alpha, dtype=np.float32), nan=0.0).clip(0.0, 1.0)
        covered = alpha > 0
        rgb[covered] /= alpha[covered][:, None]  # EXR colour is premultiplied; PNG's is not
    white = max(1.0, float(np.percentile(rgb.max(axis=2), EXR_WHITE_PERCENTILE))) if rgb.size else 1.0
    mapped = (rgb * (1.0 + rgb / (white * white)) / (1.0 + rgb)).clip(0.0, 1.0)
    srgb = np.where(mapped <= 0.0031308, 12.92 * mapped, 1.055 * np.power(mapped, 1 / 2.4) - 0.055)
    out = (srgb * 255.0 + 0.5).astype(np.uint8)
    if alpha is None:
        return out
    return np.concatenate([out, (alpha[..., None] * 255.0 + 0.5).astype(np.uint8)], axis=-1)


def decode_exr(path: str, max_pixels: int, max_samples: int = EXR_MAX_SAMPLES) -> bytes | None:
    """The thumbnail of an OpenEXR frame (JPEG, or PNG when it has transparency); None for a file the
    bindings can't read or one over the caps. Runs in the decoding child."""
    try:
        import numpy as np
        import OpenEXR
        from PIL import Image
        header = OpenEXR.File(path, header_only=True)
        if len(header.parts) != 1:
            return None
        fields = header.header()
        (x0, y0), (x1, y1) = (tuple(int(v) for v in corner) for corner in fields["dataWindow"])
        width, height = x1 - x0 + 1, y1 - y0 + 1
        if width < 1 or height < 1 or width * height > max_pixels \
                or width * height * max(1, len(fields.get("channels") or ())) > max_samples:
            return None
        rgb, alpha = _exr_planes(OpenEXR.File(path).channels())
        if rgb.shape[:2] != (height, width):
            return None
        step = max(1, math.ceil(max(width, height) / (2 * SIZE)))  # tone-map ~512 px, not the whole frame
        rgb = rgb[::step, ::step]
        alpha = None if alpha is None or float(np.min(alpha)) >= 1.0 else alpha[::step, ::step]
        pixels = tone_map(rgb, alpha)
        img = Image.fromarray(np.ascontiguousarray(pixels), "RGBA" if alpha is not None else "RGB")
        img.thumbnail((SIZE, SIZE))
        out = io.BytesIO()
        if alpha is not None:
            img.save(out, "PNG", optimize=True)
        else:
            img.save(out, "JPEG", quality=85)
        return out.getvalue()
    except Exception:  # MemoryError and the bindings' RuntimeError for a damaged file included
        return None


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            limit = int(current_app.config.get("THUMBNAIL_MEMORY_BYTES", 1024 ** 3))
            # spawn: a fresh interpreter, not a fork of a portal process with its threads and connections.
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_cap_memory, initargs=(limit,), max_tasks_per_child=200)
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _pixels(path: Path) -> int | None:
    """Width x height from the header alone (no pixel is decoded), or None if Pillow can't read it."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return img.width * img.height
    except Exception:  # Pillow's own DecompressionBombError included
        return None


def _render(sha256: str) -> bytes:
    path = storage.path_for(sha256)
    if not path.exists():
        return placeholder("file deleted")
    with path.open("rb") as f:
        exr = f.read(4) == EXR_MAGIC
    max_pixels = int(current_app.config.get("THUMBNAIL_MAX_PIXELS", 50_000_000))
    if exr:  # its header is read in the child too (see the module docstring)
        job = (decode_exr, str(path), max_pixels)
    else:
        pixels = _pixels(path)
        if pixels is None:
            return placeholder()
        if pixels > max_pixels:
            return placeholder("too large")
        job = (decode, str(path), max_pixels)
    pool = _executor()
    try:
        data = pool.submit(*job).result(timeout=DECODE_TIMEOUT)
    except (BrokenProcessPool, TimeoutError):  # the child died (out of memory) or hangs: start afresh
        _discard(pool)
        data = None
    return data if data is not None else placeholder()


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
    fd, tmp = storage.temp_file()
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
