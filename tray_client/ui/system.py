"""The desktop's side of two Settings: start with the system (HKCU Run entry on Windows, an XDG
autostart .desktop file elsewhere) and "work only when idle" (seconds since the last user input)."""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "PictorWorker"  # the name the Windows installer uses too: one entry, whoever writes it
DESKTOP_FILE = "pictor-worker.desktop"
LAUNCHER = "pictor_worker_gui.pyw"  # the installer's launcher: in the app folder, above its Python folder


# --- start with the system ------------------------------------------------------------------------

def launch_command(config_path: Path | None = None, data_dir: Path | None = None) -> list[str]:
    """How to start this copy of the app's GUI from a login script."""
    return autostart_command(sys.executable, sys.platform, os.path.exists, config_path, data_dir)


def autostart_command(executable: str, platform: str, exists: Callable[[str], bool],
                      config_path: Path | str | None = None, data_dir: Path | str | None = None) -> list[str]:
    """The command line that starts the GUI of the app running under executable (pure: `exists` answers
    for the file system, so Windows layouts are checked anywhere).

    The Windows installer puts Python in <app>\\Python and its launcher <app>\\pictor_worker_gui.pyw
    beside it (installer/pictor_worker.nsi): that launcher logs to a file and shows a message box when
    the app cannot start, where plain pythonw.exe would fail silently at every sign-in."""
    args = []
    if config_path is not None:
        args += ["--config", str(config_path)]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    if platform == "win32":
        exe = PureWindowsPath(executable)
        pythonw = exe.with_name("pythonw.exe")
        python = str(pythonw) if exists(str(pythonw)) else executable
        launcher = exe.parent.parent / LAUNCHER
        if exists(str(launcher)):
            return [python, str(launcher), *args]  # the launcher adds "gui" itself
        return [python, "-m", "tray_client", "gui", *args]
    script = PurePosixPath(executable).with_name("pictor-worker")
    if exists(str(script)):
        return [str(script), "gui", *args]
    return [executable, "-m", "tray_client", "gui", *args]


def autostart_desktop_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart" / DESKTOP_FILE


def autostart_supported() -> tuple[bool, str]:
    if sys.platform == "darwin":
        return False, "Not available on macOS yet: add Pictor Worker to Login Items in System Settings."
    return True, ""


def autostart_enabled() -> bool:
    if sys.platform == "win32":
        import winreg
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.QueryValueEx(key, RUN_VALUE)
            return True
        except OSError:
            return False
    path = autostart_desktop_path()
    try:
        return path.is_file() and "X-GNOME-Autostart-enabled=false" not in path.read_text(encoding="utf-8")
    except OSError:
        return False


def set_autostart(enabled: bool, command: list[str]) -> None:
    """Turn starting at sign-in on or off; raises OSError with the reason when the system refuses."""
    if sys.platform == "win32":
        import winreg
        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            if enabled:
                winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, subprocess.list2cmdline(command))
            else:
                try:
                    winreg.DeleteValue(key, RUN_VALUE)
                except FileNotFoundError:
                    pass
        return
    ok, reason = autostart_supported()
    if not ok:
        raise OSError(reason)
    path = autostart_desktop_path()
    if not enabled:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Exec takes a command line with its own quoting rules; shlex quoting is a safe subset of them.
    path.write_text("[Desktop Entry]\nType=Application\nName=Pictor Worker\n"
                    "Comment=Earn by rendering on this computer's idle GPU/CPU\n"
                    f"Exec={shlex.join(command)}\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
                    encoding="utf-8")


# --- idle detection -------------------------------------------------------------------------------

IdleProbe = Callable[[], float]  # seconds since the last keyboard or mouse input


def idle_probe() -> tuple[IdleProbe | None, str]:
    """A function giving seconds since the last input on this desktop, or None and why there is none."""
    if sys.platform == "win32":
        return _windows_idle_seconds, ""
    if sys.platform == "darwin":
        if shutil.which("ioreg"):
            return _macos_idle_seconds, ""
        return None, "ioreg is missing, so idle time cannot be measured."
    if not os.environ.get("DISPLAY"):
        return None, "Idle time can only be measured on an X11 desktop (DISPLAY is not set)."
    tool = shutil.which("xprintidle")
    if tool is None:
        return None, "Install xprintidle (e.g. apt install xprintidle) to let the app measure idle time."
    return (lambda: _xprintidle_seconds(tool)), ""


class _LASTINPUTINFO(ctypes.Structure):
    _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]


def _windows_idle_seconds() -> float:
    info = _LASTINPUTINFO()
    info.cbSize = ctypes.sizeof(info)
    if not ctypes.windll.user32.GetLastInputInfo(ctypes.byref(info)):
        raise OSError("GetLastInputInfo failed")
    # Both counters are milliseconds since boot that wrap every 49.7 days: subtract modulo 2**32.
    return ((ctypes.windll.kernel32.GetTickCount() - info.dwTime) & 0xFFFFFFFF) / 1000.0


def _xprintidle_seconds(tool: str) -> float:
    done = subprocess.run([tool], capture_output=True, text=True, timeout=5)
    if done.returncode != 0:
        raise OSError(f"xprintidle failed: {done.stderr.strip()[:200]}")
    return int(done.stdout.strip()) / 1000.0


def _macos_idle_seconds() -> float:
    done = subprocess.run(["ioreg", "-c", "IOHIDSystem"], capture_output=True, text=True, timeout=5)
    for line in done.stdout.splitlines():
        if "HIDIdleTime" in line:
            return int(line.rsplit("=", 1)[1].strip()) / 1e9  # nanoseconds
    raise OSError("ioreg reported no HIDIdleTime")


def idle_decision(enabled: bool, idle_seconds: float | None, threshold_s: float, paused: bool,
                  paused_by_idle: bool) -> str | None:
    """"pause", "resume" or None. Only a pause this rule made is undone by it: a pause the provider
    chose stays until they resume."""
    if not enabled or idle_seconds is None:
        return "resume" if paused_by_idle else None
    if idle_seconds < threshold_s:
        return "pause" if not paused else None
    return "resume" if paused_by_idle else None
