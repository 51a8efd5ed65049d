"""Connection speed to the portal: download and upload a few megabytes, report Mbit/s both ways."""

from __future__ import annotations

import os
import time
from typing import Any

from .api import PortalClient

DEFAULT_BYTES = 4 * 1024 * 1024


def _mbps(size: int, seconds: float) -> float:
    return size * 8 / 1_000_000 / max(seconds, 1e-6)


def measure(client: PortalClient, size: int = DEFAULT_BYTES) -> dict[str, Any]:
    """Time one download and one upload of `size` random bytes (random: nothing compresses them)."""
    started = time.monotonic()
    received = sum(len(chunk) for chunk in client.speedtest_download(size))
    down_s = time.monotonic() - started
    payload = os.urandom(size)
    started = time.monotonic()
    client.speedtest_upload(payload)
    up_s = time.monotonic() - started
    return {"download_mbps": _mbps(received, down_s), "upload_mbps": _mbps(size, up_s),
            "bytes": size, "download_seconds": round(down_s, 3), "upload_seconds": round(up_s, 3)}


def run(client: PortalClient, size: int = DEFAULT_BYTES) -> dict[str, Any]:
    """Measure, then tell the portal (it shows the figures on the worker's Statistics tab)."""
    result = measure(client, size)
    result["answer"] = client.speedtest_result(result["download_mbps"], result["upload_mbps"])
    return result
