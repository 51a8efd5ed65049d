"""`python -m tray_client.selfcheck`: import everything the Worker App needs, print versions, exit 0 if all is there.

Run by the installer's smoke test inside the installed app (and useful on a provider's PC when support
asks "what is installed?"). `--window SECONDS` also shows the result in a Tk window, proving Tk can draw.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pkgutil
import platform
import struct
import sys
from typing import Callable

import tray_client

# Packages the app imports, by import name -> distribution name (for the version).
DEPENDENCIES = {
    "requests": "requests",
    "urllib3": "urllib3",
    "certifi": "certifi",
    "platformdirs": "platformdirs",
    "psutil": "psutil",
    "cpuinfo": "py-cpuinfo",
    "GPUtil": "GPUtil",
    "PIL": "pillow",
    "pystray": "pystray",
}
# Run as scripts, never imported.
SKIP_MODULES = ("__main__",)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"


def check_tk() -> str:
    import tkinter
    interpreter = tkinter.Tcl()  # finds and runs init.tcl: fails when the Tcl library is missing
    return f"Tcl/Tk {interpreter.eval('info patchlevel')} (tkinter {tkinter.TkVersion})"


def check_ssl() -> str:
    import ssl
    return ssl.OPENSSL_VERSION


def check_sqlite() -> str:
    import sqlite3
    return f"SQLite {sqlite3.sqlite_version}"


def _headless_linux() -> bool:
    import os
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _dependency_check(module: str, dist: str) -> Callable[[], str]:
    def check() -> str:
        if module == "pystray" and _headless_linux():
            # pystray picks its X11 backend on import and needs a display; headless mode never uses it.
            return "not imported: no display (the headless worker does not need a tray)"
        importlib.import_module(module)
        return _dist_version(dist)
    return check


def _module_check(name: str) -> Callable[[], str]:
    def check() -> str:
        importlib.import_module(name)
        return "imported"
    return check


def app_modules() -> list[str]:
    """Every module of the installed tray_client (engine, runners, ui... whichever exist)."""
    found = pkgutil.walk_packages(tray_client.__path__, prefix="tray_client.")
    return sorted(m.name for m in found if m.name.rsplit(".", 1)[-1] not in SKIP_MODULES
                  and m.name != __name__ and m.name != "tray_client.selfcheck")


def checks() -> list[tuple[str, Callable[[], str]]]:
    items: list[tuple[str, Callable[[], str]]] = [("tkinter", check_tk), ("ssl", check_ssl), ("sqlite3", check_sqlite)]
    items += [(module, _dependency_check(module, dist)) for module, dist in DEPENDENCIES.items()]
    items += [(name, _module_check(name)) for name in app_modules()]
    return items


def run_checks() -> list[tuple[bool, str, str]]:
    results = []
    for name, check in checks():
        try:
            results.append((True, name, check()))
        except Exception as exc:  # report every failure, not just the first
            results.append((False, name, f"{type(exc).__name__}: {exc}"))
    return results


def report(results: list[tuple[bool, str, str]]) -> str:
    bits = struct.calcsize("P") * 8
    lines = [f"Pictor Worker {tray_client.__version__} self-check",
             f"python {platform.python_version()} ({platform.machine() or 'unknown'}, {bits}-bit) {sys.executable}"]
    width = max(len(name) for _, name, _ in results)
    lines += [f"{'ok  ' if ok else 'FAIL'} {name:<{width}}  {detail}" for ok, name, detail in results]
    failed = sum(not ok for ok, _, _ in results)
    lines.append(f"self-check {'passed' if not failed else 'FAILED'}: {len(results) - failed} ok, {failed} failed")
    return "\n".join(lines)


def show_window(text: str, seconds: float) -> None:
    import tkinter
    root = tkinter.Tk()
    root.title(f"Pictor Worker {tray_client.__version__} self-check")
    tkinter.Label(root, text=text, justify="left", font=("Courier", 9), padx=12, pady=12).pack()
    root.after(int(seconds * 1000), root.destroy)
    root.mainloop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tray_client.selfcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, metavar="SECONDS", help="also show the report in a Tk window")
    args = parser.parse_args(argv)
    results = run_checks()
    text = report(results)
    print(text, flush=True)
    if args.window:
        show_window(text, args.window)
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
