"""A pause made in the portal (bulk action) reaches the real Worker App engine on its next heartbeat,
and lifting it resumes the engine; the provider's own pause is never lifted by the portal."""

import threading

import pytest
import requests

from tray_client import config
from tray_client.engine import MESSAGE_PORTAL_PAUSED, Engine
from tests.conftest import create_token
from tests.tray_client.portal_fixture import wait_for


def light_probe(*_args, **_kwargs):
    """The hardware probe is the boundary faked here: no Blender run just to say hello."""
    return {"gpus": [], "cpu": {"brand": "Test CPU", "cores": 2}, "ram_mb": 2048, "os": "Linux",
            "hostname": "pause-node", "disk_free_mb": 10000,
            "renderers": {"blender": {"version": "3.4.1", "path": "/usr/bin/blender"}}}


@pytest.fixture
def portal(app, live_server):
    """The real portal app over real HTTP (in a thread: no subprocess start-up) and a provider's API."""
    token = create_token(app)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    class Portal:
        url = live_server.url

        def api(self, method, path, **kwargs):
            response = session.request(method, f"{self.url}/api/v1{path}", timeout=30, **kwargs)
            assert response.status_code in (200, 201), response.text[:300]
            return response.json()
    return Portal()


def test_portal_pause_reaches_the_engine_on_its_next_heartbeat(portal, tmp_path):
    worker = portal.api("POST", "/workers", json={"name": "pause-node"})
    cfg = config.WorkerConfig(path=tmp_path / "worker.json", data_dir=tmp_path / "data", **worker["config"])
    cfg.settings.update(auto_benchmark=False, auto_speedtest=False)
    cfg.save()
    engine = Engine(config.load(cfg.path, cfg.data_dir), probe=light_probe, idle_backoff=(0.2, 1.0))
    pause = {"action": "pause", "ids": [worker["id"]]}
    resume = {"action": "resume", "ids": [worker["id"]]}
    assert portal.api("POST", "/workers/bulk", json=pause)["changed"] == 1  # paused before the app starts
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        # The hello answer says so: the engine starts paused and claims nothing.
        wait_for(lambda: engine.snapshot().online, 30, what="the engine online")
        snap = engine.snapshot()
        assert snap.paused is True and snap.state == "paused" and snap.task_id is None
        wait_for(lambda: engine.snapshot().message == MESSAGE_PORTAL_PAUSED, 10, what="the pause message")
        engine.heartbeat()  # what the heartbeat thread does every heartbeat_seconds
        shown = portal.api("GET", f"/workers/{worker['id']}")
        assert shown["status"] == "paused" and shown["paused_by_portal"] is True

        portal.api("POST", "/workers/bulk", json=resume)
        engine.heartbeat()
        assert engine.snapshot().paused is False
        engine.heartbeat()
        assert portal.api("GET", f"/workers/{worker['id']}")["status"] in ("online", "busy")

        # Paused again while it runs: the next heartbeat answer pauses it (a running task may finish).
        portal.api("POST", "/workers/bulk", json=pause)
        engine.heartbeat()
        assert engine.snapshot().paused is True

        # The provider's own pause in the app: the portal's "not paused" leaves it alone.
        portal.api("POST", "/workers/bulk", json=resume)
        engine.heartbeat()
        assert engine.snapshot().paused is False
        engine.pause()
        engine.heartbeat()
        assert engine.snapshot().paused is True
    finally:
        engine.stop()
        thread.join(30)
