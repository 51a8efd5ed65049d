"""Pairing (tray_client.pairing, behind both `pictor-worker pair` and the first-run window) against the
real portal: by code, by downloaded config file, and the words a provider sees when it goes wrong."""

import json
import sys

import pytest

from tray_client import config as config_mod
from tray_client.api import PortalError, PortalUnreachable
from tray_client.pairing import PairingError, explain, import_config_file, pair_with_code

from .portal_fixture import free_port
from .ui_helpers import shared_portal, worker_settings


@pytest.fixture(scope="module")
def portal(request, tmp_path_factory):
    return shared_portal(request, tmp_path_factory)


def test_pairing_by_code_and_by_config_file(portal, tmp_path):
    cfg = config_mod.load(tmp_path / "worker.json", tmp_path / "data")
    with pytest.raises(PairingError, match="Wrong pairing code") as refused:
        pair_with_code(cfg, portal.url, "ZZZZ-ZZZZ")
    with pytest.raises(PairingError, match="Cannot reach") as unreachable:
        pair_with_code(cfg, f"http://127.0.0.1:{free_port()}", "ABCD-EFGH")
    with pytest.raises(PairingError, match="server") as typo:
        pair_with_code(cfg, "portal.example.com", "ABCD-EFGH")
    # The CLI exits with these: 4 refused by the portal, 3 unreachable, 2 a mistake in what was typed.
    assert (refused.value.exit_code, unreachable.value.exit_code, typo.value.exit_code) == (4, 3, 2)
    assert not cfg.paired and not cfg.path.exists()

    worker = portal.create_worker("paired-from-ui")
    pair_with_code(cfg, portal.url + "/", worker["pairing_code"])
    saved = json.loads(cfg.path.read_text())
    assert saved["worker_id"] == worker["id"] and saved["server_url"] == portal.url and saved["token"]
    assert (cfg.path.stat().st_mode & 0o777) == 0o600
    assert worker_settings(portal, saved["token"])["bid"]  # the saved token works
    with pytest.raises(PairingError, match="Wrong pairing code"):  # single use
        pair_with_code(config_mod.load(tmp_path / "other.json"), portal.url, worker["pairing_code"])

    other = portal.create_worker("imported-from-file")
    download = tmp_path / "downloaded.json"
    download.write_text(json.dumps(other["config"]))
    imported = import_config_file(config_mod.load(tmp_path / "imported.json", tmp_path / "data2"), download)
    assert imported.worker_id == other["id"] and imported.paired
    if sys.platform != "win32":  # the downloaded copy holds the same token: owner-only too
        assert (download.stat().st_mode & 0o777) == 0o600
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**other["config"], "token": "pwk_not-a-real-token"}))
    with pytest.raises(PairingError, match="refused"):
        import_config_file(config_mod.load(tmp_path / "x.json"), bad)
    bad.write_text("not json")
    with pytest.raises(PairingError, match="not a Pictor Worker config"):
        import_config_file(config_mod.load(tmp_path / "x.json"), bad)
    assert "Expired pairing code" in explain(PortalError(400, "expired_code", "Create a new one."), portal.url)
    assert "Cannot reach" in explain(PortalUnreachable("cannot reach x: connection refused"), portal.url)
