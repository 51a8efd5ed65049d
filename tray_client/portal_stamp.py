"""The portal's address stamped onto a downloaded installer: the trailer's format, for the portal that
appends it and for the installer step that copies it beside the installed Python for the first run.

A portal serves its installer with a trailer appended after the last byte the installer itself reads
(NSIS checks its CRC over its own length and ignores what follows), so one build serves every portal
and nothing is rebuilt. Layout, from the end of the file backwards:

    ... installer ... | payload (UTF-8 JSON {"server_url": ...}) | length u32 LE | CRC-32 u32 LE | MAGIC

Anyone can append such a trailer to a copy of the installer, so the address is untrusted input: it is
read only from the last MAX_PAYLOAD bytes, checked for a plain http(s) origin (no credentials, query or
odd characters) and only ever shown prefilled in the pairing form, where the provider sees it.

    python -I -m tray_client.portal_stamp INSTALLER.exe OUT.txt   # what the installer runs
"""

from __future__ import annotations

import ipaddress
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from urllib.parse import urlsplit

MAGIC = b"PICTOR-PORTAL-1\n"  # 16 bytes; the version is in the magic so a new layout never misreads
FOOTER = struct.Struct("<II")  # payload length, CRC-32 of the payload
MAX_PAYLOAD = 1024
MAX_URL = 200
# The installer copies the stamp here (beside python.exe); pairing.default_server_url reads it after
# the config, $PICTOR_SERVER_URL and server_url.txt, which all win over it.
STAMP_FILE = "installer_portal.txt"

_HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                      r"(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)*/?$")


class StampError(ValueError):
    """No usable address: the message says why (shown in the installer's log, never to a provider)."""


def clean_url(value) -> str:
    """A stamped address reduced to scheme://host[:port][/path], or StampError."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise StampError("the address is missing or longer than %d characters" % MAX_URL)
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise StampError("the address has characters a portal address never has")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise StampError("the address is not http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise StampError("the address carries a user name or password")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise StampError("the address carries a query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise StampError("the address has a bad port") from None
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
        host_text = f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        if not _HOST_RE.match(host):
            raise StampError("the address has no valid host name") from None
        host_text = host.lower()
    path = parts.path.rstrip("/")
    if not _PATH_RE.match(path or "/") or "/../" in path + "/" or "/./" in path + "/":
        raise StampError("the address has an unusual path")
    if path.endswith("/api/v1"):
        path = path[: -len("/api/v1")]
    return f"{parts.scheme}://{host_text}{f':{port}' if port is not None else ''}{path}"


def trailer(server_url: str) -> bytes:
    """The bytes a portal appends to its installer download (the address is checked first)."""
    payload = json.dumps({"server_url": clean_url(server_url)}, separators=(",", ":")).encode("utf-8")
    return payload + FOOTER.pack(len(payload), zlib.crc32(payload)) + MAGIC


def read_stamp(path: Path) -> str | None:
    """The address stamped on an installer; None when it carries none; StampError when it is bad."""
    tail_size = MAX_PAYLOAD + FOOTER.size + len(MAGIC)
    with Path(path).open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - tail_size))
        tail = f.read()
    if not tail.endswith(MAGIC):
        return None
    end = len(tail) - len(MAGIC)
    if end < FOOTER.size:
        raise StampError("the trailer is cut short")
    length, crc = FOOTER.unpack_from(tail, end - FOOTER.size)
    start = end - FOOTER.size - length
    if length > MAX_PAYLOAD or start < 0:
        raise StampError("the trailer's length is out of range")
    payload = tail[start:end - FOOTER.size]
    if zlib.crc32(payload) != crc:
        raise StampError("the trailer is damaged (CRC mismatch)")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except ValueError:
        raise StampError("the trailer is not JSON") from None
    if not isinstance(doc, dict):
        raise StampError("the trailer is not a JSON object")
    return clean_url(doc.get("server_url"))


def read_stamp_file(folder: Path) -> str:
    """The address the installer left in folder (checked again: the file is as untrusted); '' if none."""
    try:
        text = (Path(folder) / STAMP_FILE).read_text(encoding="ascii").strip()
        return clean_url(text)
    except (OSError, UnicodeDecodeError, StampError):
        return ""


def main(argv: list[str] | None = None) -> int:
    """INSTALLER OUT: write the installer's stamped address to OUT, or remove OUT when it has none."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tray_client.portal_stamp INSTALLER.exe OUT.txt", file=sys.stderr)
        return 2
    installer, out = Path(args[0]), Path(args[1])
    try:
        url = read_stamp(installer)
    except (OSError, StampError) as exc:
        print(f"no portal address taken from {installer.name}: {exc}")
        url = None
    if url is None:
        out.unlink(missing_ok=True)
        print("this installer names no portal: the first run asks for its address")
        return 0
    out.write_text(url + "\n", encoding="ascii")
    print(f"portal address for the first run: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
