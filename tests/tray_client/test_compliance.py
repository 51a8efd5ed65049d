"""Compliance checks: each says pass, warn or fail with a reason the provider can act on."""

import os
import sys

import pytest

from tray_client import compliance


def test_app_version_compares_numerically():
    assert compliance.app_version("0.10.0", "0.9.1")["status"] == "pass"
    old = compliance.app_version("0.9.1", "0.10.0")
    assert old["status"] == "warn" and "0.10.0" in old["reason"]
    assert compliance.app_version("0.1.0", None)["status"] == "warn"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_credentials_file_must_be_owner_only(tmp_path):
    path = tmp_path / "worker.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    loose = compliance.credentials_file(path)
    assert loose["status"] == "fail" and "chmod 600" in loose["reason"]
    os.chmod(path, 0o600)
    assert compliance.credentials_file(path)["status"] == "pass"
    assert compliance.credentials_file(tmp_path / "missing.json")["status"] == "fail"


@pytest.mark.parametrize("url, status", [
    ("https://portal.example.com", "pass"),
    ("http://127.0.0.1:5000", "pass"),
    ("http://localhost:5000", "pass"),
    ("http://portal.example.com", "fail"),
    (None, "fail"),
])
def test_server_connection_needs_https_off_this_machine(url, status):
    assert compliance.server_url(url)["status"] == status


def test_not_admin_reflects_the_user():
    check = compliance.not_admin()
    if sys.platform != "win32":
        assert check["status"] == ("fail" if os.geteuid() == 0 else "pass")


def test_free_disk_grades_against_the_cache_size(tmp_path):
    assert compliance.free_disk(tmp_path, 0)["status"] in ("pass", "fail")
    assert compliance.free_disk(tmp_path, 10**18)["status"] in ("warn", "fail")


def test_gpu_driver():
    assert compliance.gpu_driver([{"name": "RTX 4090", "driver": "550.54"}])["status"] == "pass"
    assert compliance.gpu_driver([{"name": "RTX 4090", "driver": ""}])["status"] == "fail"
    assert compliance.gpu_driver([], "no NVIDIA GPU found")["status"] == "warn"


def test_renderer_hardening_checks_the_real_blender_command_line():
    check = compliance.renderer_hardening()
    assert check["status"] in ("pass", "warn")  # warn only when Blender is absent
    if check["status"] == "pass":
        assert "--disable-autoexec" in check["reason"]


def test_run_all_reports_every_check_even_when_one_breaks(tmp_path, monkeypatch):
    monkeypatch.setattr(compliance, "gpu_driver", lambda *a: 1 / 0)
    results = compliance.run_all(config_path=None, server="https://x.example", data_dir=tmp_path,
                                 cache_max_bytes=1, hardware={})
    names = [r["check"] for r in results]
    assert names == ["app_version", "credentials_file", "server_connection", "renderer_hardening",
                     "renderer_sandbox", "not_admin", "free_disk", "gpu_driver"]
    assert results[-1]["status"] == "warn" and "could not run" in results[-1]["reason"]
    assert all(r["status"] in ("pass", "warn", "fail") and r["reason"] for r in results)
