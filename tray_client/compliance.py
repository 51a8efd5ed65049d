"""Security compliance checks the app runs on itself and reports in hello: each one pass, warn or fail
with a one-line reason the provider can act on."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .api import is_loopback_url

PASS, WARN, FAIL = "pass", "warn", "fail"
MIN_FREE_BYTES = 2 * 1024**3  # room for one large .blend and its frames beyond the cache


def result(check: str, status: str, reason: str) -> dict[str, str]:
    return {"check": check, "status": status, "reason": reason}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version or "")[:4])


def app_version(current: str = __version__, latest: str | None = None) -> dict[str, str]:
    if not latest:
        return result("app_version", WARN, f"version {current}; the portal did not say which is the latest")
    if _version_tuple(current) >= _version_tuple(latest):
        return result("app_version", PASS, f"version {current} is current")
    return result("app_version", WARN, f"version {current} is older than {latest}: download the new "
                                       "Worker App from the portal")


def credentials_file(path: Path | None) -> dict[str, str]:
    if path is None or not Path(path).exists():
        return result("credentials_file", FAIL, "no credentials file: pair the worker")
    if sys.platform == "win32":
        return result("credentials_file", PASS, "stored in your user profile, which only you can read")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        return result("credentials_file", FAIL, f"{path} is readable by others (mode {mode:o}): "
                                                f"run chmod 600 {path}")
    return result("credentials_file", PASS, "readable by its owner only (mode 600)")


def server_url(url: str | None) -> dict[str, str]:
    if not url:
        return result("server_connection", FAIL, "no server URL: pair the worker")
    if url.lower().startswith("https://"):
        return result("server_connection", PASS, "HTTPS to the portal")
    if is_loopback_url(url):
        return result("server_connection", PASS, "plain HTTP, but only to this machine (loopback)")
    return result("server_connection", FAIL, "plain HTTP over the network exposes the worker token: "
                                             "use the portal's https:// address")


def renderer_hardening(blender_path: str | None = None) -> dict[str, str]:
    """Blender gets --factory-startup --disable-autoexec, its own config folders and no PYTHONPATH."""
    from .runners import blender
    exe = blender.find_blender(blender_path)
    if exe is None:
        return result("renderer_hardening", WARN, "Blender not found: render jobs are not offered to "
                                                  "this worker (install Blender or set blender_path)")
    params = {"blend": "x.blend", "frames": [1], "engine": "CYCLES", "samples": 1,
              "resolution_percent": 100, "format": "PNG", "device": "any"}
    argv = blender.build_argv(exe, "x.blend", Path("work"), params)
    missing = [flag for flag in ("--factory-startup", "--disable-autoexec") if flag not in argv]
    if missing or "--enable-autoexec" in argv or "-y" in argv:
        return result("renderer_hardening", FAIL, f"Blender would run without {', '.join(missing) or 'auto-run off'}")
    return result("renderer_hardening", PASS, "Blender runs with --factory-startup --disable-autoexec, "
                                              "an isolated user config and no PYTHONPATH")


def renderer_sandbox() -> dict[str, str]:
    """What keeps a creator's scene from the provider's files here (runners/sandbox.py): the scene
    path check everywhere, plus bubblewrap on Linux when it is installed and works."""
    from .runners import sandbox
    found = sandbox.protection()
    return result("renderer_sandbox", PASS if found.sandboxed else WARN, found.detail)


def not_admin() -> dict[str, str]:
    if sys.platform == "win32":
        try:
            import ctypes
            admin = bool(ctypes.windll.shell32.IsUserAnAdmin())
        except Exception:
            return result("not_admin", WARN, "could not tell whether the app runs as Administrator")
        if admin:
            return result("not_admin", FAIL, "runs as Administrator: start the Worker App as a normal user")
        return result("not_admin", PASS, "runs as a normal user")
    if os.geteuid() == 0:
        return result("not_admin", FAIL, "runs as root: a rendered file could act with full rights; "
                                         "run the worker as an unprivileged user")
    return result("not_admin", PASS, "runs as an unprivileged user")


def free_disk(data_dir: Path, cache_max_bytes: int) -> dict[str, str]:
    path = Path(data_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return result("free_disk", WARN, f"cannot read free space: {exc}")
    gib = free / 1024**3
    if free >= cache_max_bytes + MIN_FREE_BYTES:
        return result("free_disk", PASS, f"{gib:.1f} GiB free for the input cache and outputs")
    if free >= MIN_FREE_BYTES:
        return result("free_disk", WARN, f"{gib:.1f} GiB free, less than the cache may use "
                                         f"({cache_max_bytes / 1024**3:.1f} GiB): free space or lower the cache size")
    return result("free_disk", FAIL, f"only {gib:.1f} GiB free: large tasks will fail; free disk space")


def gpu_driver(gpus: list[dict[str, Any]] | None, note: str | None = None) -> dict[str, str]:
    gpus = gpus or []
    with_driver = [g for g in gpus if g.get("driver")]
    if with_driver:
        g = with_driver[0]
        return result("gpu_driver", PASS, f"{g.get('name', 'GPU')} with driver {g['driver']}")
    if gpus:
        return result("gpu_driver", FAIL, "a GPU was found but no driver version: reinstall the NVIDIA driver")
    return result("gpu_driver", WARN, (note or "no NVIDIA GPU found") + ": CPU rendering only")


def run_all(*, config_path: Path | None, server: str | None, data_dir: Path, cache_max_bytes: int,
            hardware: dict[str, Any] | None = None, latest_app_version: str | None = None,
            blender_path: str | None = None) -> list[dict[str, str]]:
    """Every check; a check that breaks reports a warning instead of stopping the others."""
    hardware = hardware or {}
    checks: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("app_version", lambda: app_version(__version__, latest_app_version)),
        ("credentials_file", lambda: credentials_file(config_path)),
        ("server_connection", lambda: server_url(server)),
        ("renderer_hardening", lambda: renderer_hardening(blender_path)),
        ("renderer_sandbox", renderer_sandbox),
        ("not_admin", not_admin),
        ("free_disk", lambda: free_disk(data_dir, cache_max_bytes)),
        ("gpu_driver", lambda: gpu_driver(hardware.get("gpus"), hardware.get("gpu_note"))),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(check())
        except Exception as exc:  # a check must never keep the worker from starting
            results.append(result(name, WARN, f"check could not run: {exc}"[:200]))
    return results
