"""`pictor-worker service install|uninstall|status`: the systemd unit (validated by systemd-analyze where
it exists), installed through the CLI with a recording systemctl stand-in, and the Windows Run-key entry
as it would be written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing
from tray_client import service

WORKER = str(Path(sys.executable).parent / "pictor-worker")


def paired(home: Path) -> tuple[Path, Path]:
    """A paired worker's config (as `POST /api/v1/workers` returns it) in a data folder with a space."""
    data = home / "farm node" / "data"
    data.mkdir(parents=True)
    config = data / "worker.json"
    config.write_text(json.dumps({"server_url": "https://portal.example.net", "worker_id": 7, "token": "pwk_x"}))
    os.chmod(config, 0o600)
    return config, data


def test_the_unit_runs_the_headless_worker_with_absolute_paths_and_passes_systemd_analyze(tmp_path):
    config, data = paired(tmp_path)
    argv = service.worker_argv(data, config)
    assert argv[1:4] == ["run", "--headless", "--data-dir"] and argv[4] == str(data.resolve())
    assert argv[-2:] == ["--config", str(config.resolve())]
    user_unit = service.unit_text(argv, user_unit=True)
    assert f'--data-dir "{data.resolve()}"' in user_unit and "WantedBy=default.target" in user_unit
    system_unit = service.unit_text(argv, user_unit=False, run_as="pictor")
    assert "User=pictor" in system_unit and "WantedBy=multi-user.target" in system_unit
    # Specifiers and variables in a path are escaped, not expanded by systemd.
    assert service._systemd_quote("/srv/100%/$HOME") == '"/srv/100%%/$$HOME"'
    with pytest.raises(service.ServiceError):
        service._systemd_quote("/evil\nExecStartPre=/bin/rm")

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze not installed (apt-get install systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    for text, flags in ((system_unit, []), (user_unit, ["--user"])):
        unit = tmp_path / "units" / f"pictor-worker-{len(flags)}.service"
        unit.parent.mkdir(exist_ok=True)
        unit.write_text(text)
        done = subprocess.run([analyze, *flags, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Unknown key" not in done.stderr and "not executable" not in done.stderr, done.stderr


@pytest.fixture
def systemctl(tmp_path):
    """A recording stand-in for systemctl at the system boundary (no systemd runs in a test)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\n"
                      "case \"$*\" in *is-enabled*) echo enabled;; *is-active*) echo active;; esac\n")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    return env, log


def test_cli_installs_enables_reports_and_removes_a_user_unit(tmp_path, systemctl):
    env, log = systemctl
    config, data = paired(tmp_path)
    common = ["--config", str(config), "--data-dir", str(data)]

    def cli(*args):
        return subprocess.run([WORKER, "service", *args, "--user", *common], capture_output=True, text=True,
                              env=env, timeout=60)
    done = cli("install")
    assert done.returncode == 0, done.stderr
    units = list((tmp_path / "xdg" / "systemd" / "user").glob("pictor-worker-*.service"))
    assert len(units) == 1
    assert f'--data-dir "{data.resolve()}"' in units[0].read_text()
    name = units[0].name
    assert log.read_text().splitlines() == ["--user daemon-reload", f"--user enable --now {name}"]
    status = cli("status")
    assert "Installed:     yes" in status.stdout and "Active:        active" in status.stdout
    assert cli("uninstall").returncode == 0 and not units[0].exists()
    assert log.read_text().splitlines()[-2:] == [f"--user disable --now {name}", "--user daemon-reload"]
    assert "Installed:     no" in cli("status").stdout


def test_an_unpaired_worker_is_not_installed(tmp_path, systemctl):
    env, log = systemctl
    done = subprocess.run([WORKER, "service", "install", "--user", "--data-dir", str(tmp_path / "empty")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "not paired" in done.stderr and not log.exists()


def test_a_user_unit_unless_root(tmp_path, monkeypatch):
    config, data = paired(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(service, "_is_root", lambda: False)
    assert service.Systemd(data, config).path.parent == tmp_path / "xdg" / "systemd" / "user"
    monkeypatch.setattr(service, "_is_root", lambda: True)
    assert service.Systemd(data, config).path.parent == Path("/etc/systemd/system")


class FakeRegistry:
    """The calls of Python's winreg that the Run-key entry uses, kept in a dict (the Windows boundary)."""
    HKEY_CURRENT_USER, KEY_SET_VALUE, KEY_READ, REG_SZ = "HKCU", 2, 1, 1

    def __init__(self):
        self.values: dict[tuple[str, str], tuple[int, str]] = {}

    class _Key:
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def CreateKeyEx(self, root, path, reserved, access):
        return self._Key(f"{root}\\{path}")

    OpenKey = CreateKeyEx

    def SetValueEx(self, key, name, reserved, kind, value):
        self.values[key.path, name] = (kind, value)

    def QueryValueEx(self, key, name):
        if (key.path, name) not in self.values:
            raise FileNotFoundError(name)
        kind, value = self.values[key.path, name]
        return value, kind

    def DeleteValue(self, key, name):
        if self.values.pop((key.path, name), None) is None:
            raise FileNotFoundError(name)


def test_windows_autostart_writes_the_run_key_entry(tmp_path):
    config, data = paired(tmp_path)
    registry = FakeRegistry()
    entry = service.for_this_platform(data, config, platform="win32", registry=registry)
    where = entry.install(start=False)
    assert where.startswith("HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\PictorWorker-")
    ((key, name), (kind, command)), = registry.values.items()
    assert key == "HKCU\\" + service.RUN_KEY and kind == registry.REG_SZ
    assert " -m tray_client run --headless --data-dir " in command
    assert f'"{data.resolve()}"' in command and f'"{config.resolve()}"' in command  # quoted: the path has a space
    assert entry.status()["installed"] == "yes" and entry.status()["command"] == command
    assert entry.uninstall() is True and entry.uninstall() is False
    assert entry.status()["installed"] == "no"


def test_the_readme_farm_recipe_create_by_api_pair_from_file_install_service(app, live_server, tmp_path, systemctl):
    """README "Farms": POST /api/v1/workers returns each node's config; `pair --config FILE` on the node
    (the file checked against the portal and saved into the data folder); `service install`."""
    import requests
    from tests.conftest import create_token
    env, log = systemctl
    token = create_token(app)
    made = requests.post(f"{live_server.url}/api/v1/workers", json={"name": "rack3-node01"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    node_file = tmp_path / "rack3-node01.json"
    node_file.write_text(json.dumps(made["config"]))
    data = tmp_path / "var-lib-pictor"
    paired_now = subprocess.run([WORKER, "pair", "--config", str(node_file), "--data-dir", str(data)],
                                capture_output=True, text=True, env=env, timeout=60)
    assert paired_now.returncode == 0, paired_now.stderr
    saved = json.loads((data / "worker.json").read_text())
    assert saved["worker_id"] == made["id"] and saved["token"] == made["config"]["token"]
    installed = subprocess.run([WORKER, "service", "install", "--user", "--no-start", "--data-dir", str(data)],
                               capture_output=True, text=True, env=env, timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert log.read_text().splitlines()[-1].startswith("--user enable pictor-worker-var-lib-pictor-")
