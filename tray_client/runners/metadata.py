"""Removes what an output file says about the machine that made it: Blender writes the .blend's
absolute path (the provider's data folder), the date and the render time into PNG text chunks and
JPEG comments. The rewrite drops those chunks and copies every other byte as it is, so the pixels
(IDAT, scan data) stay bit-identical: the portal compares crops of them."""

from __future__ import annotations

import os
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Text and time chunks; eXIf may carry the same. Colour chunks (gAMA, iCCP, sRGB...) stay: they
# change how pixels look.
PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}
_JPEG_COM = 0xFE
_JPEG_SOS = 0xDA
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length field


def _png_without_text(data: bytes) -> bytes | None:
    if not data.startswith(PNG_SIGNATURE):
        return None
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None  # truncated: leave the file alone, the image check decides about it
        if kind not in PNG_DROPPED:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(out)


def _jpeg_without_comments(data: bytes) -> bytes | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    out, pos = [data[:2]], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in _JPEG_STANDALONE:
            out.append(data[pos:pos + 2])
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + length
        if marker == _JPEG_SOS:  # entropy-coded data follows: copied whole, untouched
            out.append(data[pos:])
            return b"".join(out)
        if marker != _JPEG_COM:
            out.append(data[pos:end])
        pos = end
    return None


def strip_path_metadata(path: Path) -> bool:
    """Rewrite a PNG or JPEG without its text metadata, in place and atomically; True if it changed."""
    path = Path(path)
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".png":
        clean = _png_without_text(data)
    elif suffix in (".jpg", ".jpeg"):
        clean = _jpeg_without_comments(data)
    else:
        return False  # EXR: Blender is told not to stamp the file name into it (blender.py)
    if clean is None or clean == data:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(clean)
    os.replace(tmp, path)
    return True
