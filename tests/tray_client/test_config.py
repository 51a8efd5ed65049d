"""Worker App config: owner-only credentials, the data folder layout, documents from the portal."""

import json
import os
import stat
import sys

import pytest

from tray_client import config


def test_unpaired_when_the_file_is_absent(tmp_path):
    cfg = config.load(tmp_path / "worker.json", tmp_path / "data")
    assert not cfg.paired
    assert cfg.settings["cache_max_bytes"] == config.DEFAULT_CACHE_MAX_BYTES
    assert cfg.cache_dir == tmp_path / "data" / "cache"
    assert cfg.outbox_path == tmp_path / "data" / "outbox.sqlite3"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_credentials_are_written_owner_only_and_round_trip(tmp_path):
    old = os.umask(0o000)  # even a permissive umask must not leak the token
    try:
        cfg = config.load(tmp_path / "cfg" / "worker.json", tmp_path / "data")
        config.import_document({"server_url": "https://portal.example/api/v1/", "worker_id": 7,
                                "token": "pwk_secret"}, cfg)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(cfg.path).st_mode) == 0o600
    again = config.load(cfg.path)
    assert (again.server_url, again.worker_id, again.token) == ("https://portal.example", 7, "pwk_secret")
    assert again.data_dir == tmp_path / "data"  # an explicit --data-dir is remembered


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_rewriting_a_world_readable_file_makes_it_private(tmp_path):
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"server_url": "http://127.0.0.1:5000", "token": "t"}))
    os.chmod(path, 0o644)
    cfg = config.load(path)
    cfg.settings["blender_path"] = "/opt/blender/blender"
    cfg.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert config.load(path).settings["blender_path"] == "/opt/blender/blender"


def test_default_locations_follow_the_platform_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    if sys.platform.startswith("linux"):
        assert config.default_config_path() == tmp_path / "xdg-config" / "pictor-worker" / "worker.json"
        assert config.default_data_dir() == tmp_path / "xdg-data" / "pictor-worker"


@pytest.mark.parametrize("doc, words", [
    ({"worker_id": 1, "token": "t"}, "server_url"),
    ({"server_url": "https://x.example", "worker_id": 1}, "token"),
    ({"server_url": "ftp://x.example", "token": "t"}, "not a server URL"),
    ({"server_url": "https://x.example", "token": "t", "worker_id": "7"}, "worker_id"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_documents_are_refused_with_a_reason(doc, words):
    with pytest.raises(config.ConfigError, match=words):
        config.parse_document(doc)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "[" * 100_000])
def test_a_corrupt_config_file_is_set_aside_and_the_app_starts_unpaired(tmp_path, text):
    path = tmp_path / "worker.json"
    path.write_text(text)
    cfg = config.load(path)
    assert not cfg.paired and not path.exists()
    kept = list(tmp_path.glob("worker.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_text() == text
    assert len(cfg.set_aside) == 1 and str(kept[0]) in cfg.set_aside[0] and "pair" in cfg.set_aside[0]


def test_a_bad_setting_falls_back_to_its_default_with_a_notice(tmp_path):
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"server_url": "http://127.0.0.1:5000", "token": "t",
                                "settings": {"cache_max_bytes": "lots", "auto_benchmark": False},
                                "data_dir": 7}))
    cfg = config.load(path)
    assert cfg.paired and cfg.settings["cache_max_bytes"] == config.DEFAULT_CACHE_MAX_BYTES
    assert cfg.settings["auto_benchmark"] is False
    assert any("cache_max_bytes" in line for line in cfg.set_aside)


def test_the_ui_section_and_keys_from_a_newer_app_survive_a_save(tmp_path):
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"server_url": "http://127.0.0.1:5000", "token": "t",
                                "ui": {"idle_only": True, "idle_minutes": 7, "theme": "dark"},
                                "telemetry": {"opt_in": False},
                                "settings": {"blender_path": "/opt/blender/blender", "retired": 1}}))
    cfg = config.load(path)
    assert cfg.ui == {"idle_only": True, "idle_minutes": 7, "theme": "dark"}
    cfg.ui["idle_minutes"] = 9
    cfg.settings["auto_benchmark"] = False
    cfg.save()
    saved = json.loads(path.read_text())
    assert saved["ui"] == {"idle_only": True, "idle_minutes": 9, "theme": "dark"}
    assert saved["telemetry"] == {"opt_in": False}
    assert saved["settings"] == {"blender_path": "/opt/blender/blender", "auto_benchmark": False}
    assert (saved["server_url"], saved["token"]) == ("http://127.0.0.1:5000", "t")
    # A fresh config has no ui section until the UI stores something in it.
    fresh = config.load(tmp_path / "new.json")
    fresh.save()
    assert "ui" not in json.loads((tmp_path / "new.json").read_text())
