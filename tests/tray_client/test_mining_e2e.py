"""Mining and rendering taking turns for real: the portal as a subprocess, the Worker App's engine with
its miner supervisor, a real CPU Blender render, and the fake T-Rex (the only fake: this machine has no
NVIDIA GPU, so the hardware probe reports one at that boundary). The render never waits more than 5 s
for its GPU, mining resumes after it, and the mined periods come back as the portal's estimate in the
"Earnings by Mining" chart data."""

import json
import time
from decimal import Decimal

import psutil
import pytest

from tray_client import config, hardware, mining
from tray_client.api import PortalClient
from tray_client.engine import Engine
from tests.tray_client.conftest import make_scene
from tests.tray_client.portal_fixture import Portal, free_port, pair_worker
from tests.tray_client.test_mining import GPU, fake_trex
from tray_client.mining import MinerStatus

pytestmark = pytest.mark.slow


def test_a_worker_alternates_mining_and_rendering_and_its_estimate_is_charted(blender, tmp_path):
    portal = Portal(tmp_path / "portal").start()
    try:
        portal._cli("mining-rates", "set", "ETC", "--usd-per-mh-day", "0.01", "--max-mh-per-gpu", "130")
        worker, config_path, data_dir = pair_worker(portal, tmp_path, "miner-node")
        port = free_port()
        doc = json.loads(config_path.read_text())
        doc["settings"]["devices"] = ["gpu0"]  # one slot, the (fake) GPU: the render takes it
        doc["mining"] = {"miner": "trex", "path": str(fake_trex(tmp_path)), "api_port": port}
        config_path.write_text(json.dumps(doc))
        cfg = config.load(config_path, data_dir)
        PortalClient(cfg.server_url, cfg.token).update_settings({"mining_config": {
            "enabled": True, "pool": "stratum+tcp://etc.example.org:4444", "coin": "ETC", "wallet": "0x" + "ab" * 20}})

        def probe(*args, **kwargs):  # the NVIDIA boundary: GPUtil finds none on this machine
            return {**hardware.probe(*args, **kwargs), "gpus": [GPU]}
        engine = Engine(cfg, probe=probe, idle_backoff=(0.2, 1.0))
        engine.start()
        sup = mining.attach(engine, cfg, poll_s=0.2, settings_refresh_s=1.0, report_seconds=2)
        try:
            # The portal's first Bench Score run may come first; mining runs once no task does.
            portal.wait_for(lambda: sup.snapshot().status == MinerStatus.RUNNING and engine.snapshot().task_id is None
                            and sup.snapshot().reports_sent >= 1, timeout=120, what="mining and a report")
            miner_pid = sup.snapshot().pid
            job = portal.submit_render(make_scene(blender, tmp_path / "cube.blend"), (1, 1), samples=8)
            seen = portal.wait_for(lambda: engine.snapshot().task_id is not None and time.monotonic(),
                                   timeout=60, interval=0.02, what="the render to be claimed")
            portal.wait_for(lambda: not psutil.pid_exists(miner_pid) or psutil.Process(miner_pid).status()
                            == psutil.STATUS_ZOMBIE, timeout=5.5, interval=0.02, what="the miner to let go")
            assert time.monotonic() - seen < 5.0  # the task never waited more than 5 s for its GPU
            assert sup.snapshot().status == MinerStatus.PAUSED_COMPUTE
            portal.wait_for(lambda: portal.job(job["id"])["status"] == "completed", timeout=120, what="the render")
            portal.wait_for(lambda: sup.snapshot().status == MinerStatus.RUNNING and sup.snapshot().pid != miner_pid,
                            timeout=30, what="mining to resume")
            sent = sup.snapshot().reports_sent
            portal.wait_for(lambda: sup.snapshot().reports_sent > sent, timeout=30, what="a report after the render")
        finally:
            sup.stop()
            engine.stop()
            engine.join(30)
        stats = portal.api("GET", f"/workers/{worker['id']}/stats", params={"period": "week"})
        assert Decimal(stats["totals"]["mining_earnings"]) > 0  # the "Earnings by Mining" chart's figures
        assert Decimal(stats["totals"]["task_earnings"]) > 0  # the render (and any Bench run), apart
        settings = PortalClient(cfg.server_url, cfg.token).settings()
        assert Decimal(settings["mining_estimate"]["today"]) > 0
    finally:
        portal.close()
