"""What an idle Worker App costs: `pictor-worker run --headless` against a portal with no tasks,
measured from outside for ~30 s after a warm-up. Prints CPU % (of one core) and RSS MB.

    .venv/bin/python bench/engine_idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tray_client.portal_fixture import WORKER, Portal  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pictor-idle-") as tmp:
        tmp = Path(tmp)
        portal = Portal(tmp / "portal").start()
        try:
            worker = portal.create_worker("idle")
            doc = portal.api("POST", "/pair", json={"code": worker["pairing_code"]})
            doc["settings"] = {"auto_benchmark": False, "auto_speedtest": False}
            config = tmp / "worker.json"
            config.write_text(json.dumps(doc))
            os.chmod(config, 0o600)
            proc = subprocess.Popen([WORKER, "run", "--headless", "--config", str(config), "--data-dir",
                                     str(tmp / "data")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(args.warmup)  # start-up (hello, hardware probe) is not idle time
                p = psutil.Process(proc.pid)
                before, started = p.cpu_times(), time.monotonic()
                peak_rss = 0
                while time.monotonic() - started < args.seconds:
                    peak_rss = max(peak_rss, p.memory_info().rss)
                    time.sleep(1)
                after, wall = p.cpu_times(), time.monotonic() - started
                cpu = (after.user + after.system - before.user - before.system) / wall * 100
                rss = p.memory_info().rss
                claims = portal.api("GET", f"/workers/{worker['id']}")["status"]
            finally:
                proc.terminate()
                proc.wait(30)
        finally:
            portal.close()
    print(f"idle for {wall:.0f} s: CPU {cpu:.2f} % of one core, RSS {rss / 2**20:.1f} MB "
          f"(peak {peak_rss / 2**20:.1f} MB); portal shows the worker as {claims!r}; exit code {proc.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
