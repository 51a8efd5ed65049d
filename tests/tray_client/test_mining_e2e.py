"""Mining and rendering taking turns for real: the portal as a subprocess, `pictor-worker run --headless`
as a subprocess with the mining section in its worker.json, a real CPU Blender render, and two fakes at
the true boundaries, because this machine has no NVIDIA GPU: `nvidia-smi` (what GPUtil runs) lists one
GPU, and the miner is the fake T-Rex. The render never waits more than 5 s for its GPU, mining resumes
after it, and the mined periods come back as the portal's estimate in the "Earnings by Mining" data."""

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from decimal import Decimal

import psutil
import pytest

from tray_client.api import PortalClient
from tests.tray_client.conftest import make_scene
from tests.tray_client.portal_fixture import WORKER, Portal, free_port, pair_worker
from tests.tray_client.test_mining import fake_trex

pytestmark = pytest.mark.slow

# GPUtil's query (index, uuid, utilization, memory total/used/free, driver, name, serial, display
# active/mode, temperature), answered as nvidia-smi --format=csv,noheader,nounits prints it.
FAKE_NVIDIA_SMI = """#!/bin/sh
echo "0, GPU-00000000-fake, 0, 12288, 0, 12288, 550.54, NVIDIA GeForce RTX 3060, 0, Disabled, Default, 45"
"""
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def stamp(line: str) -> float:
    return datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def miner_starts(tmp_path, data_dir) -> list[list[str]]:
    log = data_dir / "mining" / "fake_miner.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_headless_worker_alternates_mining_and_rendering_and_its_estimate_is_charted(blender, tmp_path):
    portal = Portal(tmp_path / "portal").start()
    worker_proc = None
    try:
        portal._cli("mining-rates", "set", "ETC", "--usd-per-mh-day", "0.01", "--max-mh-per-gpu", "130")
        worker, config_path, data_dir = pair_worker(portal, tmp_path, "miner-node")
        doc = json.loads(config_path.read_text())
        doc["settings"]["devices"] = ["gpu0"]  # one slot, the GPU: the render takes it from the miner
        doc["mining"] = {"miner": "trex", "path": str(fake_trex(tmp_path)), "api_port": free_port(),
                         "report_seconds": 60, "resume_seconds": 1}
        config_path.write_text(json.dumps(doc))
        client = PortalClient(portal.url, doc["token"])
        client.update_settings({"mining_config": {"enabled": True, "pool": "stratum+tcp://etc.example.org:4444",
                                                  "coin": "ETC", "wallet": "0x" + "ab" * 20}})
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
        (bin_dir / "nvidia-smi").chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        out = open(tmp_path / "worker.log", "w+")
        worker_proc = subprocess.Popen([WORKER, "run", "--headless", "--config", str(config_path),
                                        "--data-dir", str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT)

        def log_lines():
            return (tmp_path / "worker.log").read_text().splitlines()

        def mining_between_tasks():
            """Mining (again) after the tasks so far, here the portal's first Bench Score run."""
            lines = log_lines()
            last_task = max((i for i, line in enumerate(lines) if re.search(r"task \d+: \w+$", line)), default=-1)
            tasks = portal.worker_tasks(worker["id"])["items"]
            return last_task >= 0 and all(t["status"] != "running" for t in tasks) and any(
                "mining: running" in line for line in lines[last_task:])
        portal.wait_for(mining_between_tasks, timeout=120, what="mining between tasks")
        job = portal.submit_render(make_scene(blender, tmp_path / "cube.blend"), (1, 1), samples=8)
        portal.wait_for(lambda: portal.job(job["id"])["status"] == "completed", timeout=120, what="the render")
        lines = log_lines()
        task_id = portal.job(job["id"])["tasks"][0]["id"]
        started = next(stamp(line) for line in lines if f"task {task_id} (job" in line and "started" in line)
        stopped = [stamp(line) for line in lines if "mining: stopped (paused for a compute task)" in line]
        assert any(0 <= s - started < 5.0 for s in stopped), (started, stopped)  # the GPU free within 5 s
        first = miner_starts(tmp_path, data_dir)
        assert first and not any(alive(int(s[1])) or alive(int(s[2])) for s in first[:-1])  # whole trees gone

        # Mining resumes after the render; on SIGTERM its last period is reported.
        resumed = len([line for line in log_lines() if "mining: running" in line])
        portal.wait_for(lambda: len(miner_starts(tmp_path, data_dir)) > len(first) and
                        sum("mining: running" in line for line in log_lines()) > resumed, timeout=30, what="mining again")
        time.sleep(3)
        worker_proc.send_signal(signal.SIGTERM)
        assert worker_proc.wait(60) == 0
        assert not any(alive(int(s[1])) for s in miner_starts(tmp_path, data_dir))
        stats = portal.api("GET", f"/workers/{worker['id']}/stats", params={"period": "week"})
        assert Decimal(stats["totals"]["mining_earnings"]) > 0  # the "Earnings by Mining" chart's figures
        assert Decimal(stats["totals"]["task_earnings"]) > 0  # the render (and any Bench run), apart
        assert Decimal(client.settings()["mining_estimate"]["today"]) > 0
        assert not any("mining report" in line and "refused" in line for line in log_lines())
    finally:
        if worker_proc is not None and worker_proc.poll() is None:
            worker_proc.kill()
        portal.close()
