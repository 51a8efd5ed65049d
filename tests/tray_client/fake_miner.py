"""A fake T-Rex for the mining tests (the true boundary: a miner needs an NVIDIA GPU and a pool).

Started by the supervisor exactly as T-Rex would be (its documented argv). It serves GET /summary on
the --api-bind-http address in T-Rex's documented format (tests/tray_client/data/trex_summary.json,
the wiki's example), with accepted_count and uptime moving, and starts a helper child process as real
miners do (so the tests see the whole tree stopped). --time-limit N (a real T-Rex option: shut down
after N seconds) makes it exit with code 1 after N seconds: a crash. Each start appends one line
"start <pid> <child pid> <time>" to fake_miner.log in its working folder."""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SUMMARY = json.loads((Path(__file__).parent / "data" / "trex_summary.json").read_text())


def option(argv, *names, default=None):
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
    return default


def main(argv):
    bind = option(argv, "--api-bind-http", default="127.0.0.1:4067")
    host, port = bind.rsplit(":", 1)
    limit = float(option(argv, "--time-limit", default="0"))
    started = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open("fake_miner.log", "a") as log:
        log.write(f"start {os.getpid()} {child.pid} {started} {' '.join(argv)}\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/summary":
                self.send_error(404)
                return
            doc = dict(SUMMARY)
            elapsed = time.time() - started
            doc["uptime"] = int(elapsed)
            doc["accepted_count"] = int(elapsed * 2)  # two shares a second
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(*_):
        child.kill()
        print("fake miner: shutting down", flush=True)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(f"fake T-Rex: {' '.join(argv)}", flush=True)
    while True:
        time.sleep(0.1)
        print(f"fake T-Rex: {SUMMARY['hashrate'] / 1e6:.2f} MH/s", flush=True) if int(time.time() * 10) % 10 == 0 else None
        if limit and time.time() - started >= limit:
            print("fake T-Rex: CUDA error: out of memory (simulated crash)", flush=True)
            child.kill()
            os._exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
