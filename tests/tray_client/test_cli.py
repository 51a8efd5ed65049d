"""`pictor-worker` against a live portal (the app over real HTTP): pairing, import, status, run, exit codes."""

import importlib.util
import json
import os
import stat
import sys

import pytest
from click.testing import CliRunner

from tray_client import __version__
from tray_client.cli import main
from tests.conftest import create_user
from tests.tray_client.portal_fixture import free_port


@pytest.fixture
def worker(app, live_server):
    """A new worker in the live portal: (worker id, pairing code, config document)."""
    from webapp.extensions import db
    from webapp.models import User
    from webapp.services import workers
    user_id = create_user(app)
    with app.app_context():
        row, code, token = workers.create_worker(db.session.get(User, user_id), "node-1")
        return row.id, code, workers.worker_config(row, token, live_server.url)


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def test_pair_with_a_code_saves_owner_only_credentials(tmp_path, live_server, worker):
    worker_id, code, _ = worker
    config = tmp_path / "conf" / "worker.json"
    result = invoke("pair", code, "--server", live_server.url, "--config", config, "--data-dir", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert f"Paired as worker {worker_id}" in result.output
    doc = json.loads(config.read_text())
    assert doc["worker_id"] == worker_id and doc["server_url"] == live_server.url and doc["token"]
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(config).st_mode) == 0o600

    status = invoke("status", "--config", config, "--data-dir", tmp_path / "d")
    assert status.exit_code == 0
    assert live_server.url in status.output and f"Worker ID:     {worker_id}" in status.output
    assert "not running" in status.output and "0 update(s)" in status.output

    again = invoke("pair", code, "--server", live_server.url, "--config", tmp_path / "other.json")
    assert again.exit_code == 4 and "pairing refused" in again.output  # single use


def test_pair_needs_a_server_and_reports_an_unreachable_one(tmp_path):
    assert invoke("pair", "ABCD-EFGH", "--config", tmp_path / "w.json").exit_code == 2
    result = invoke("pair", "ABCD-EFGH", "--server", f"http://127.0.0.1:{free_port()}",
                    "--config", tmp_path / "w.json")
    assert result.exit_code == 3 and "cannot reach" in result.output.lower()  # worded as in the window


def test_pair_imports_a_downloaded_config_file_into_the_user_config_folder(tmp_path, monkeypatch, worker):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    _, _, doc = worker
    downloaded = tmp_path / "Downloads" / "pictor-worker.json"
    downloaded.parent.mkdir()
    downloaded.write_text(json.dumps(doc))
    result = invoke("pair", "--config", downloaded)
    assert result.exit_code == 0, result.output
    from tray_client import config
    saved = config.load()
    assert saved.token == doc["token"] and saved.worker_id == doc["worker_id"]

    downloaded.write_text(json.dumps({**doc, "token": "pwk_revoked"}))
    refused = invoke("pair", "--config", downloaded)
    assert refused.exit_code == 4 and "refused" in refused.output


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """The user's config and data folders, pointed into tmp_path (nothing touches the real home)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    from tray_client import config
    return config.default_config_path()


def two_workers(app, live_server):
    from webapp.extensions import db
    from webapp.models import User
    from webapp.services import workers
    user_id = create_user(app)
    with app.app_context():
        user = db.session.get(User, user_id)
        made = [workers.create_worker(user, name) for name in ("farm-a", "farm-b")]
        return [(row.id, code, workers.worker_config(row, token, live_server.url)) for row, code, token in made]


def test_data_dir_holds_the_whole_worker_and_two_workers_never_share_a_token(tmp_path, app, live_server, user_dirs):
    (a_id, a_code, _), (b_id, b_code, _) = two_workers(app, live_server)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    assert invoke("pair", a_code, "--server", live_server.url, "--data-dir", a_dir).exit_code == 0
    assert invoke("pair", b_code, "--server", live_server.url, "--data-dir", b_dir).exit_code == 0
    assert not user_dirs.exists()  # nothing written to ~/.config/pictor-worker/worker.json
    a_doc, b_doc = (json.loads((d / "worker.json").read_text()) for d in (a_dir, b_dir))
    assert (a_doc["worker_id"], b_doc["worker_id"]) == (a_id, b_id) and a_doc["token"] != b_doc["token"]
    for folder, worker_id in ((a_dir, a_id), (b_dir, b_id)):
        status = invoke("status", "--data-dir", folder)
        assert f"Worker ID:     {worker_id}" in status.output and str(folder) in status.output
    # `run` with the same --data-dir finds the worker paired there (before the subcommand too).
    result = invoke("--data-dir", b_dir, "run", "--headless", "--once")
    assert result.exit_code == 0, result.output
    from webapp.extensions import db
    from webapp.models import Worker
    with app.app_context():
        assert db.session.get(Worker, b_id).last_heartbeat_at is not None
        assert db.session.get(Worker, a_id).last_heartbeat_at is None
    # A folder nobody paired is not paired (it does not borrow another worker's token).
    unpaired = invoke("run", "--headless", "--once", "--data-dir", tmp_path / "c")
    assert unpaired.exit_code == 2 and "pair --import FILE" in unpaired.output


def test_pair_import_and_the_old_config_spelling(tmp_path, app, live_server, user_dirs):
    (a_id, _, a_doc), (b_id, _, b_doc) = two_workers(app, live_server)
    downloaded = tmp_path / "Downloads" / "a.json"
    downloaded.parent.mkdir()
    downloaded.write_text(json.dumps(a_doc))
    result = invoke("pair", "--import", downloaded, "--data-dir", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "worker.json").read_text())["worker_id"] == a_id
    assert not user_dirs.exists()
    # The old spelling still imports (into the user folder, as before), and says the new one.
    (tmp_path / "b.json").write_text(json.dumps(b_doc))
    old = invoke("pair", "--config", tmp_path / "b.json")
    assert old.exit_code == 0 and "pair --import FILE" in old.output
    assert json.loads(user_dirs.read_text())["worker_id"] == b_id
    # Both at once is a mistake, said plainly.
    both = invoke("pair", "ABCD-EFGH", "--import", downloaded)
    assert both.exit_code == 2 and "not both" in both.output


def test_a_worker_paired_before_the_rule_is_still_found_by_its_data_dir(tmp_path, user_dirs, worker):
    _, _, doc = worker
    folder = tmp_path / "farm"
    user_dirs.parent.mkdir(parents=True)
    user_dirs.write_text(json.dumps({**doc, "data_dir": str(folder)}))  # the old layout
    status = invoke("status", "--data-dir", folder)
    assert status.exit_code == 0 and f"Worker ID:     {doc['worker_id']}" in status.output
    # ...but not by another folder.
    other = invoke("status", "--data-dir", tmp_path / "elsewhere")
    assert f"Worker ID:     {doc['worker_id']}" not in other.output


def test_run_without_pairing_says_how_to_pair(tmp_path):
    result = invoke("run", "--headless", "--config", tmp_path / "none.json", "--data-dir", tmp_path / "d")
    assert result.exit_code == 2 and "pictor-worker pair" in result.output


def test_run_once_says_hello_and_exits_when_there_is_no_work(tmp_path, app, worker):
    worker_id, _, doc = worker
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({**doc, "settings": {"auto_benchmark": False}}))  # speed test on
    os.chmod(config, 0o600)
    # --config / --data-dir also work before the subcommand
    result = invoke("--config", config, "--data-dir", tmp_path / "d", "run", "--headless", "--once")
    assert result.exit_code == 0, result.output
    from webapp.extensions import db
    from webapp.models import Worker
    with app.app_context():
        row = db.session.get(Worker, worker_id)
        assert row.app_version == __version__ and row.last_heartbeat_at is not None
        assert {c["check"] for c in row.compliance} >= {"credentials_file", "server_connection", "not_admin"}
        assert "render" in row.capabilities["job_types"] or "blender" not in row.renderers
        assert row.download_mbps > 0 and row.upload_mbps > 0  # measured once on the first start
    assert (tmp_path / "d" / "logs" / "worker.log").read_text().count("connected to") == 1


def test_run_once_against_a_stopped_portal_exits_3(tmp_path):
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"server_url": f"http://127.0.0.1:{free_port()}", "worker_id": 1,
                                  "token": "pwk_x", "settings": {"auto_benchmark": False}}))
    os.chmod(config, 0o600)
    result = invoke("run", "--headless", "--once", "--config", config, "--data-dir", tmp_path / "d")
    assert result.exit_code == 3


def test_gui_without_the_desktop_ui_explains_and_exits_2(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tray_client.ui" else real(name, *a))
    result = invoke("gui", "--config", tmp_path / "w.json")
    assert result.exit_code == 2 and "desktop UI is not installed" in result.output


def test_speedtest_command_reports_both_directions(tmp_path, app, worker):
    worker_id, _, doc = worker
    config = tmp_path / "worker.json"
    config.write_text(json.dumps(doc))
    result = invoke("speedtest", "--config", config, "--data-dir", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "Download" in result.output and "Mbit/s" in result.output
    from webapp.extensions import db
    from webapp.models import Worker
    with app.app_context():
        row = db.session.get(Worker, worker_id)
        assert row.download_mbps > 0 and row.upload_mbps > 0 and row.speed_measured_at is not None
