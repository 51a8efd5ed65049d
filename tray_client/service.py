"""Run the worker as a service: a systemd unit on Linux (a user unit when not root), a Run-key autostart
entry on Windows; `pictor-worker service install|uninstall|status`.

The unit runs `pictor-worker run --headless` with this worker's absolute --data-dir and --config, so a
farm node with several workers gets one unit per data folder (named after it). systemctl and the Windows
registry are the boundaries: both are passed in, so tests see exactly what would be run and written.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SERVICE_NAME = "pictor-worker"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "PictorWorker"
SYSTEMCTL_TIMEOUT_S = 60


class ServiceError(Exception):
    """Installing or removing the service failed; the message says what to do."""


def worker_argv(data_dir: Path, config_path: Path, windows: bool = False) -> list[str]:
    """The command the service runs: this installation's pictor-worker, headless, with absolute paths."""
    exe_dir = Path(sys.executable).parent
    if windows:
        # pythonw: no console window at logon; the worker logs to its data folder's logs/ as well.
        pythonw = exe_dir / "pythonw.exe"
        base = [str(pythonw if pythonw.exists() else Path(sys.executable)), "-m", "tray_client"]
    else:
        script = exe_dir / "pictor-worker"
        base = [str(script)] if script.exists() else [str(Path(sys.executable)), "-m", "tray_client"]
    return base + ["run", "--headless", "--data-dir", str(Path(data_dir).resolve()),
                   "--config", str(Path(config_path).resolve())]


def unit_name(data_dir: Path) -> str:
    """pictor-worker.service for the default data folder, else one name per folder (several workers)."""
    from .config import default_data_dir
    if Path(data_dir).resolve() == default_data_dir().resolve():
        return f"{SERVICE_NAME}.service"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data_dir).resolve().name).strip("-.")[:40] or "worker"
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:6]
    return f"{SERVICE_NAME}-{slug}-{digest}.service"


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: specifiers (%) and variables ($) escaped, quoted when it has spaces."""
    if any(ch in arg for ch in "\n\r\x00"):
        raise ServiceError(f"a path for the service contains a line break: {arg!r}")
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if any(ch.isspace() for ch in arg) or escaped != arg or not arg else arg


def unit_text(argv: list[str], user_unit: bool, run_as: str | None = None) -> str:
    """The systemd unit. SIGTERM is the worker's clean stop (a nearly done task finishes, others are
    handed back), so the stop timeout leaves room for that; a crash restarts it after a pause."""
    lines = [
        "[Unit]",
        "Description=Pictor Worker (headless render node)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in argv),
        "Restart=on-failure",
        "RestartSec=15",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=120",
        "Nice=10",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if run_as and not user_unit:
        lines.append(f"User={run_as}")
    lines += ["", "[Install]", f"WantedBy={'default.target' if user_unit else 'multi-user.target'}", ""]
    return "\n".join(lines)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def unit_dir(user_unit: bool) -> Path:
    if not user_unit:
        return Path("/etc/systemd/system")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)


@dataclass
class Systemd:
    """Install, remove and query the worker's unit; `user_unit` None = a user unit unless root."""

    data_dir: Path
    config_path: Path
    user_unit: bool | None = None
    run_as: str | None = None
    runner: Runner = _run

    def __post_init__(self):
        if self.user_unit is None:
            self.user_unit = not _is_root()

    @property
    def name(self) -> str:
        return unit_name(self.data_dir)

    @property
    def path(self) -> Path:
        return unit_dir(self.user_unit) / self.name

    def _systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["systemctl", *(["--user"] if self.user_unit else []), *args]
        try:
            done = self.runner(argv)
        except FileNotFoundError:
            raise ServiceError("systemctl not found: this system does not use systemd; start "
                               f"`{' '.join(worker_argv(self.data_dir, self.config_path))}` another way") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"`{' '.join(argv)}` did not finish in {SYSTEMCTL_TIMEOUT_S} s") from None
        if check and done.returncode != 0:
            raise ServiceError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[:300]}")
        return done

    def install(self, start: bool = True) -> Path:
        text = unit_text(worker_argv(self.data_dir, self.config_path), self.user_unit, self.run_as)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)
        self._systemctl("daemon-reload")
        self._systemctl("enable", *(["--now"] if start else []), self.name)
        return self.path

    def uninstall(self) -> bool:
        """Stop, disable and remove the unit; False when there was none."""
        if not self.path.exists():
            return False
        self._systemctl("disable", "--now", self.name, check=False)  # already stopped is fine
        self.path.unlink()
        self._systemctl("daemon-reload", check=False)
        return True

    def status(self) -> dict[str, str]:
        if not self.path.exists():
            return {"unit": str(self.path), "installed": "no", "enabled": "-", "active": "-"}
        enabled = self._systemctl("is-enabled", self.name, check=False).stdout.strip() or "unknown"
        active = self._systemctl("is-active", self.name, check=False).stdout.strip() or "unknown"
        return {"unit": str(self.path), "installed": "yes", "enabled": enabled, "active": active}


def windows_command(data_dir: Path, config_path: Path) -> str:
    """The Run value's command line (Windows quoting rules)."""
    return subprocess.list2cmdline(worker_argv(data_dir, config_path, windows=True))


def _run_value_name(data_dir: Path) -> str:
    stem = unit_name(data_dir).removesuffix(".service")
    return RUN_VALUE if stem == SERVICE_NAME else f"{RUN_VALUE}-{stem[len(SERVICE_NAME) + 1:]}"


@dataclass
class WindowsAutostart:
    """The per-user Run key entry that starts the worker at logon (no admin rights needed)."""

    data_dir: Path
    config_path: Path
    registry: object | None = None  # the winreg module, or a stand-in with the same calls

    def _reg(self):
        if self.registry is None:
            import winreg  # only on Windows
            self.registry = winreg
        return self.registry

    @property
    def value_name(self) -> str:
        return _run_value_name(self.data_dir)

    def install(self, start: bool = True) -> str:
        reg = self._reg()
        command = windows_command(self.data_dir, self.config_path)
        with reg.CreateKeyEx(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
            reg.SetValueEx(key, self.value_name, 0, reg.REG_SZ, command)
        if start:  # now as well, not only at the next logon
            subprocess.Popen(worker_argv(self.data_dir, self.config_path, windows=True),
                             creationflags=getattr(subprocess, "DETACHED_PROCESS", 0), close_fds=True)
        return f"HKCU\\{RUN_KEY}\\{self.value_name}"

    def uninstall(self) -> bool:
        reg = self._reg()
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
                reg.DeleteValue(key, self.value_name)
        except FileNotFoundError:
            return False
        return True

    def status(self) -> dict[str, str]:
        reg = self._reg()
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_READ) as key:
                command, _type = reg.QueryValueEx(key, self.value_name)
        except FileNotFoundError:
            return {"entry": f"HKCU\\{RUN_KEY}\\{self.value_name}", "installed": "no"}
        return {"entry": f"HKCU\\{RUN_KEY}\\{self.value_name}", "installed": "yes", "command": command}


def for_this_platform(data_dir: Path, config_path: Path, platform: str | None = None, **kwargs):
    platform = platform or sys.platform
    if platform.startswith("win"):
        return WindowsAutostart(data_dir, config_path, registry=kwargs.get("registry"))
    if platform.startswith("linux"):
        return Systemd(data_dir, config_path, user_unit=kwargs.get("user_unit"), run_as=kwargs.get("run_as"),
                       **({"runner": kwargs["runner"]} if "runner" in kwargs else {}))
    raise ServiceError(f"no service support on {platform}: run `pictor-worker run --headless` from your "
                       "own service manager")
