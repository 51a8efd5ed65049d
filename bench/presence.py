#!/usr/bin/env python3
"""A large network's idle presence on one portal: capacity, the share 10,000 workers use, pickup latency.

Starts the portal as `pictor-portal serve` does (SQLite; --postgres for PostgreSQL), pairs --workers
workers through the service layer (many provider accounts), asks the portal which heartbeat and idle
poll intervals it advises for a network that size, then with wrk (bench/wrk/presence.lua, round-robin
over the workers' tokens, heartbeats and idle claims in the advised ratio):

1. capacity: the mix as fast as the portal answers;
2. the network's own load: the mix paced at N/heartbeat + N/poll requests per second, while full task
   cycles (bench/wrk/cycle.lua) run beside it at --cycles per second: p99 of presence and of each step;
3. pickup latency: one-task jobs submitted while the network idles at the advised poll interval, on this
   large network and on a small one (--small workers): submission to the task's claim, p50/p95.

The bare Flask ceiling under the same server settings is measured in the same run.

    .venv/bin/python bench/presence.py                         # 10,000 workers, SQLite
    .venv/bin/python bench/presence.py --postgres --processes 4

Targets (issue 15): 10,000 workers use <= 50% of the capacity, p99 < 250 ms at that load with dispatch
at 100 cycles/s beside it; pickup p95 <= 2 s on a small network and on a large one.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dispatch  # noqa: E402
import netload  # noqa: E402

IDLE_TYPES = ("upscale",)  # the network idles: it offers upscaling while the cycles render


def advised(url: str, token: str) -> dict:
    """The intervals the portal asks this network's workers to keep (its hello answer)."""
    body = json.dumps({"capabilities": {"job_types": list(IDLE_TYPES), "gpu": False}}).encode()
    request = urllib.request.Request(f"{url}/api/v1/worker/hello", body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        data = json.load(answer)
    return {"heartbeat_s": float(data["heartbeat_seconds"]), "poll_s": float(data["poll_seconds"])}


def presence_env(folder: Path, tokens: list[str], intervals: dict, interval_ms: float = 0) -> dict:
    return {"WRK_TOKENS": str(netload.write_tokens(folder, tokens, f"presence-{len(tokens)}.txt")),
            "WRK_HEARTBEAT_S": str(intervals["heartbeat_s"]), "WRK_POLL_S": str(intervals["poll_s"]),
            "WRK_INTERVAL_MS": str(interval_ms)}


def upscale_job(owner) -> int:
    from PIL import Image
    from webapp.services import jobs
    image = io.BytesIO()
    Image.new("RGB", (32, 24), (int(time.time() * 1000) % 255, 10, 10)).save(image, "PNG")
    image.seek(0)
    return jobs.submit_upscale_job(owner, {"type": "upscale", "name": "pickup", "scale": 2},
                                   files=[("photo.png", image)]).id


def pickups(site: netload.Site, jobs_to_submit: int, gap_s: float) -> list[float]:
    """Seconds from each job's submission to its task's claim, measured by the portal's own clock."""
    from webapp.extensions import db
    from webapp.models import Job, Task
    from webapp.services import dispatch as dispatch_service
    latencies = []
    with site.app():
        owner = netload.creator()
        for _ in range(jobs_to_submit):
            job_id = upscale_job(owner)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                db.session.rollback()  # a fresh snapshot
                started = db.session.execute(db.select(Task.started_at).where(Task.job_id == job_id)).scalar()
                if started is not None:
                    job = db.session.get(Job, job_id)
                    latencies.append((started - job.created_at).total_seconds())
                    # The bench's workers never run what they claim: cancel it, or the worker's one slot
                    # stays busy and a small network runs out of idle workers after a few pickups.
                    dispatch_service.cancel_job(job)
                    break
                time.sleep(0.02)
            else:
                latencies.append(float("inf"))
            time.sleep(gap_s)
    return latencies


def online_now() -> None:
    """Every paired worker seen now, as its app's heartbeats would have it: pairing 10,000 takes longer
    than OFFLINE_AFTER_SECONDS on PostgreSQL, and the portal advises its intervals for the workers it
    counts online, so the first paired would otherwise count as gone and the advice be for a smaller network."""
    from webapp.clock import utcnow
    from webapp.extensions import db
    from webapp.models import Worker
    db.session.execute(db.update(Worker).values(last_heartbeat_at=utcnow()))
    db.session.commit()


def paced(rate: float, connections: int, latency_ms: float) -> float:
    """wrk waits delay() after each answer: the delay that makes `connections` send `rate` per second."""
    return max(0.0, connections * 1000 / rate - latency_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=5, help="workers of the small network (pickup latency)")
    parser.add_argument("--cycles", type=float, default=100, help="task cycles per second beside the load")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pickups", type=int, default=10)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-presence-"))
    opened = netload.postgres_site(folder) if args.postgres else dispatch._sqlite(folder)
    with opened as site:
        started = time.monotonic()
        with site.app():
            tokens = netload.pair_workers(args.workers, job_types=IDLE_TYPES)
            cycle_tokens = netload.pair_workers(32, first_account=10**6)
            owner = netload.creator()
            for i in range(0, 20_000, 2_000):
                netload.submit_render(owner, 2_000, name=f"bench-{i}")
            online_now()
        print(f"{'PostgreSQL' if args.postgres else 'SQLite'}, {args.processes} processes x 8 threads; "
              f"{args.workers:,} workers paired in {time.monotonic() - started:.0f} s")
        bare = netload.ceiling(folder, args.processes, 32, args.seconds / 2)
        with netload.serve_portal(site, args.processes) as url:
            intervals = advised(url, tokens[0])
            need = args.workers / intervals["heartbeat_s"] + args.workers / intervals["poll_s"]
            print(f"advised: heartbeat every {intervals['heartbeat_s']:g} s, idle claim every {intervals['poll_s']:g} s "
                  f"-> {args.workers:,} workers send {need:,.0f} requests/s")
            env = presence_env(folder, tokens, intervals)
            netload.run_wrk("presence.lua", url, connections=32, seconds=2, env=env, folder=folder)  # warm
            capacity = netload.run_wrk("presence.lua", url, connections=32, seconds=args.seconds, env=env, folder=folder)
            print(f"\n1. capacity: {capacity.requests_per_s:,.0f} requests/s = {100 * capacity.requests_per_s / bare:.0f}% "
                  f"of the bare ceiling ({bare:,.0f} req/s)")
            for step in ("heartbeat", "claim"):
                print(f"   {step:9s} {netload.ms(capacity.by_step.get(step, []))}")
            print(f"   {args.workers:,} workers use {100 * need / capacity.requests_per_s:.0f}% of it (target <= 50%)")

            # 2. The network's own load with dispatch beside it.
            connections = 64
            p50 = netload.pct(capacity.all_latencies(), 50)
            presence_env_paced = presence_env(folder, tokens, intervals, paced(need, connections, min(p50, 5)))
            cycle_connections = 16
            cycle_interval = paced(4 * args.cycles, cycle_connections, 5)
            results = {}
            beside = threading.Thread(target=lambda: results.update(cycles=dispatch.cycles(
                site, url, cycle_tokens[cycle_connections:2 * cycle_connections], args.seconds, cycle_interval)))
            dispatch.cycles(site, url, cycle_tokens[:cycle_connections], 2)  # warm the cycle path
            beside.start()
            load = netload.run_wrk("presence.lua", url, connections=connections, seconds=args.seconds,
                                   env=presence_env_paced, folder=folder)
            beside.join()
            done = results["cycles"].statuses.get("complete:200", 0) / results["cycles"].seconds
            print(f"\n2. the network's load: {load.requests_per_s:,.0f} presence requests/s (asked {need:,.0f}) "
                  f"beside {done:.0f} cycles/s")
            for step in ("heartbeat", "claim"):
                print(f"   {step:9s} {netload.ms(load.by_step.get(step, []))}")
            print(f"   presence p99 {netload.pct(load.all_latencies(), 99):.0f} ms (target < 250 ms)")
            dispatch.report(results["cycles"], bare, "   cycles beside it")

            # 3. Pickup latency on this large network, idling at its advised pace.
            pickup_env = presence_env(folder, tokens, intervals,
                                      paced(need, connections, min(p50, 5)))
            waits = {}
            idle = threading.Thread(target=lambda: waits.update(load=netload.run_wrk(
                "presence.lua", url, connections=connections, seconds=args.pickups * 1.5 + 5, env=pickup_env, folder=folder)))
            idle.start()
            time.sleep(2)
            large = pickups(site, args.pickups, 1.0)
            idle.join()
        print(f"\n3. pickup, {args.workers:,} idle workers: p50 {netload.pct(large, 50):.2f} s, p95 {netload.pct(large, 95):.2f} s "
              "(target <= 2 s)")

    # ... and on a small network of its own.
    small_folder = Path(tempfile.mkdtemp(prefix="bench-presence-small-"))
    small_site = netload.Site(small_folder)
    with small_site.app():
        small_tokens = netload.pair_workers(args.small, job_types=IDLE_TYPES)
    with netload.serve_portal(small_site, args.processes) as url:
        small_intervals = advised(url, small_tokens[0])
        # One connection per worker, each asking at the advised pace.
        env = presence_env(small_folder, small_tokens, small_intervals,
                           1000 / (1 / small_intervals["heartbeat_s"] + 1 / small_intervals["poll_s"]))
        waits = {}
        idle = threading.Thread(target=lambda: waits.update(load=netload.run_wrk(
            "presence.lua", url, connections=args.small, seconds=args.pickups * 2.5 + 5, env=env, folder=small_folder)))
        idle.start()
        time.sleep(2)
        small = pickups(small_site, args.pickups, 2.0)
        idle.join()
    print(f"   pickup, {args.small} idle workers (heartbeat {small_intervals['heartbeat_s']:g} s, poll "
          f"{small_intervals['poll_s']:g} s): p50 {netload.pct(small, 50):.2f} s, p95 {netload.pct(small, 95):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
