"""`python -m tray_client.selfcheck`: what the installed app runs to prove its imports work."""

import subprocess
import sys

import tray_client
from tray_client import selfcheck


def test_passes_here_and_lists_versions_and_the_apps_modules(capsys):
    assert selfcheck.main([]) == 0
    out = capsys.readouterr().out
    assert f"Pictor Worker {tray_client.__version__} self-check" in out
    assert "self-check passed" in out and "FAIL" not in out
    assert "ok   tkinter" in out and "Tcl/Tk 8.6" in out
    assert "ok   requests" in out and "ok   tray_client.config" in out


def test_a_missing_package_fails_it_and_says_which(monkeypatch, capsys):
    monkeypatch.setitem(selfcheck.DEPENDENCIES, "pictor_not_installed", "pictor-not-installed")
    assert selfcheck.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL pictor_not_installed" in out and "ModuleNotFoundError" in out
    assert "self-check FAILED" in out and "1 failed" in out


def test_app_modules_skip_entry_scripts():
    names = selfcheck.app_modules()
    assert "tray_client.config" in names
    assert not any(name.endswith(("__main__", "selfcheck")) for name in names)


def test_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "tray_client.selfcheck"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-check passed" in proc.stdout
