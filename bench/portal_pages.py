#!/usr/bin/env python3
"""Server time of the provider pages at farm scale: 10,000 workers and 1,000,000 tasks on one account.

Seeds the data with bulk inserts (executemany on SQLite, COPY on PostgreSQL), then times requests
through the Flask test client (server time: routing, queries, templates; no network):

- the worker list with each sort and order, a search, a status filter, a deep page, the htmx fragment;
- a worker's details page, and its three charts cold (cache cleared) and cached;
- the task list of a worker with 100,000 tasks (each sort, a search, a filter) and of a typical one.

    .venv/bin/python bench/portal_pages.py                     # SQLite in a temporary folder
    .venv/bin/python bench/portal_pages.py --postgres          # PostgreSQL on 127.0.0.1 (a throwaway DB)
    .venv/bin/python bench/portal_pages.py --workers 2000 --tasks 100000 --requests 10   # quicker
    .venv/bin/python bench/portal_pages.py --beside-dispatch 16   # then again, beside 16 workers' task cycles

Goals (issue 6): list p95 < 100 ms; details p95 < 250 ms without cold charts, < 50 ms cached; and the same
while the dispatch bench's load runs on the same database (issue 15). The pages are timed in this process,
on the cores the portal and wrk use as well: beside the load they share the machine's CPU with it.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EMAIL, PASSWORD = "bench@example.com", "bench-password-123"
GPUS = [("NVIDIA GeForce RTX 4090", 24564), ("NVIDIA GeForce RTX 3090", 24576), ("NVIDIA GeForce RTX 3080", 10240),
        ("NVIDIA GeForce RTX 3060", 12288), ("NVIDIA RTX A5000", 24564)]
JOB_NAMES = ["Forest flythrough", "Product turntable", "Archviz interior", "Photo batch", "Logo sting", "Ocean"]


# --- bulk loading -------------------------------------------------------------------------------------

def _sqlite_value(value):
    if isinstance(value, datetime):  # SQLAlchemy's SQLite storage format for naive UTC
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _pg_value(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def bulk_insert(engine, table: str, columns: list[str], rows) -> int:
    """Insert an iterable of tuples as fast as the driver allows; returns the row count."""
    raw = engine.raw_connection()
    count = 0
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            batch = []
            for row in rows:
                batch.append(tuple(_sqlite_value(v) for v in row))
                if len(batch) >= 50_000:
                    cursor.executemany(sql, batch)
                    count += len(batch)
                    batch.clear()
            if batch:
                cursor.executemany(sql, batch)
                count += len(batch)
        else:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(_pg_value(v) for v in row))
                    count += 1
        raw.commit()
    finally:
        raw.close()
    return count


def seed(app, n_workers: int, n_tasks: int, heavy_tasks: int) -> dict:
    """One provider with n_workers workers; n_tasks tasks (heavy_tasks of them on worker 1, over 3 years)."""
    from webapp.extensions import db
    from webapp.services import accounts

    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    with app.app_context():
        user = accounts.sign_up(EMAIL, PASSWORD)
        user_id = user.id
        engine = db.engine
    started = time.perf_counter()

    # Workers: mostly live, some offline, some never paired.
    worker_cols = ["id", "owner_id", "name", "token_hash", "gpus", "gpu_name", "ram_mb", "renderers", "capabilities",
                   "compliance", "mining_config", "bench_details", "state", "state_message", "last_heartbeat_at",
                   "earnings_micros", "compute_seconds", "created_at", "updated_at", "bench_score", "os", "cpu",
                   "app_version", "country"]
    heartbeat = {}

    def workers():
        for i in range(1, n_workers + 1):
            roll = rng.random()
            gpu = rng.choice(GPUS)
            created = now - timedelta(days=1100 if i == 1 else rng.uniform(1, 400))
            if roll < .08:
                state, seen = None, None
            elif roll < .35:
                state, seen = "idle", now - timedelta(hours=rng.uniform(1, 2000))
            else:
                state, seen = rng.choice(["idle", "idle", "busy", "busy", "paused", "error"]), now - timedelta(seconds=rng.uniform(0, 20))
            heartbeat[i] = seen
            name = f"rack{i // 40:03d}-node{i % 40:02d}" if i % 3 else f"Workstation {i}"
            yield (i, user_id, name, secrets.token_hex(32), [{"name": gpu[0], "memory_mb": gpu[1], "driver": "551.86"}],
                   gpu[0], rng.choice([16384, 32768, 65536]), {"blender": {"version": "3.4.1"}},
                   {"job_types": ["render", "upscale"], "gpu": True, "devices": ["CPU", "CUDA"]}, [], {}, {},
                   state, "Blender not found" if state == "error" else None, seen, rng.randint(0, 500_000_000),
                   rng.uniform(0, 1e6), created, seen or created, rng.randint(500, 4000), "Linux", "AMD EPYC 7443P",
                   "1.0.0", "Germany")
    bulk_insert(engine, "workers", worker_cols, workers())

    # Jobs of 100 tasks each, owned by the same account (a creator who also provides).
    n_jobs = max(1, n_tasks // 100)
    job_cols = ["id", "owner_id", "name", "type", "status", "spec", "software", "priority", "device", "created_at",
                "updated_at"]
    bulk_insert(engine, "jobs", job_cols, (
        (j, user_id, f"{rng.choice(JOB_NAMES)} v{j}", "render", "completed", {}, "Blender · Cycles", 0, "any",
         now - timedelta(days=1), now) for j in range(1, n_jobs + 1)))

    # Tasks, and the daily figures they make (what the charts read).
    daily = defaultdict(lambda: [0, 0, 0, 0.0])  # earnings, completed, failed, compute seconds
    task_cols = ["id", "job_id", "seq", "type", "params", "input_names", "status", "priority", "device", "worker_id",
                 "attempts", "progress", "created_at", "started_at", "finished_at", "compute_seconds", "reward_micros"]

    def tasks():
        for t in range(1, n_tasks + 1):
            worker_id = 1 if t <= heavy_tasks else rng.randint(2, n_workers) if n_workers > 1 else 1
            span = 1095 if worker_id == 1 else 90
            finished = now - timedelta(days=rng.uniform(0, span))
            seconds = rng.uniform(60, 1800)
            roll = rng.random()
            status = "completed" if roll < .95 else "failed" if roll < .98 else "canceled"
            reward = int(seconds * 140) if status == "completed" else None
            day = daily[(worker_id, finished.strftime("%Y-%m-%d"))]
            if status == "completed":
                day[0] += reward
                day[1] += 1
                day[3] += seconds
            elif status == "failed":
                day[2] += 1
            yield (t, (t - 1) // 100 + 1, (t - 1) % 100, "render", {"frames": [t % 250 + 1]}, ["scene.blend"], status, 0,
                   "any", worker_id, 1, 1.0 if status == "completed" else 0.3, finished - timedelta(seconds=seconds + 60),
                   finished - timedelta(seconds=seconds), finished, seconds, reward)
    bulk_insert(engine, "tasks", task_cols, tasks())
    stat_cols = ["worker_id", "day", "task_earnings_micros", "mining_earnings_micros", "tasks_completed",
                 "tasks_failed", "compute_seconds"]
    bulk_insert(engine, "worker_daily_stats", stat_cols, (
        (w, d, v[0], 0, v[1], v[2], v[3]) for (w, d), v in daily.items()))

    # Presence: a dozen stretches per seen worker over 30 days; the live ones end now.
    def intervals():
        pid = 0
        for worker_id, seen in heartbeat.items():
            if seen is None:
                continue
            end = seen
            for _ in range(12):
                start = end - timedelta(hours=rng.uniform(2, 40))
                pid += 1
                yield (pid, worker_id, start, end)
                end = start - timedelta(hours=rng.uniform(.5, 12))
    bulk_insert(engine, "presence_intervals", ["id", "worker_id", "started_at", "ended_at"], intervals())

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            for table in ("workers", "jobs", "tasks", "presence_intervals"):
                db.session.execute(db.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                           f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))
            db.session.execute(db.text("ANALYZE"))
        else:
            db.session.execute(db.text("ANALYZE"))
        db.session.commit()
        typical = db.session.execute(db.text(
            "SELECT worker_id FROM tasks WHERE worker_id > 1 GROUP BY worker_id ORDER BY COUNT(*) DESC LIMIT 1")).scalar()
    return {"seconds": time.perf_counter() - started, "daily_rows": len(daily), "typical_worker": typical or 1}


# --- timing -------------------------------------------------------------------------------------------

def measure(client, url: str, n: int, headers=None, before=None) -> list[float]:
    client.get(url, headers=headers or {})  # warm-up: template compilation, query plans, caches
    times = []
    for _ in range(n):
        if before:
            before()
        t0 = time.perf_counter()
        response = client.get(url, headers=headers or {})
        times.append((time.perf_counter() - t0) * 1000)
        if response.status_code not in (200, 304):
            raise SystemExit(f"{url}: HTTP {response.status_code}\n{response.get_data(as_text=True)[:500]}")
    return times


def p(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report(name: str, times: list[float], goal: float | None = None) -> bool:
    ok = goal is None or p(times, 95) < goal
    mark = "" if goal is None else ("  ok" if ok else f"  OVER the {goal:.0f} ms goal")
    print(f"  {name:<58} p50 {statistics.median(times):7.1f} ms   p95 {p(times, 95):7.1f} ms{mark}", flush=True)
    return ok


def time_pages(client, args, info) -> list[bool]:
    """Every page case, printed; whether each met its goal."""
    from webapp import charts
    n = args.requests
    results = []
    print(f"\nWorker list (/workers, {args.workers:,} workers, {n} requests each)")
    for sort in ("status", "name", "created", "updated"):
        for order in ("asc", "desc"):
            results.append(report(f"sort={sort} order={order}",
                                  measure(client, f"/workers?sort={sort}&order={order}", n), 100))
    results.append(report("search q=node1 (name LIKE)", measure(client, "/workers?q=node1", n), 100))
    results.append(report("filter status=error", measure(client, "/workers?status=error", n), 100))
    results.append(report("deep page (page=300, sort=name)", measure(client, "/workers?sort=name&page=300", n), 100))
    results.append(report("htmx fragment (the 5 s poll)", measure(client, "/workers", n, {"HX-Request": "true"}), 100))

    heavy = 1
    print(f"\nWorker details (worker #{heavy}: {min(args.heavy, args.tasks):,} tasks over 3 years)")
    for period in ("week", "month", "year"):
        results.append(report(f"stats page period={period} (without charts)",
                              measure(client, f"/workers/{heavy}?period={period}", n), 250))
    chart_urls = [f"/workers/{heavy}/charts/{name}.svg?period=year" for name in charts.CHARTS]
    cold = []
    for _ in range(max(3, n // 4)):
        for url_ in chart_urls:
            cold += measure(client, url_, 1, before=charts.clear_cache)
    report("one chart, cold (rendered by matplotlib)", cold)
    cached = []
    for url_ in chart_urls:
        measure(client, url_, 1)
        cached += measure(client, url_, n)
    results.append(report("one chart, cached", cached, 50))
    page_cached = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(f"/workers/{heavy}?period=year")
        for url_ in chart_urls:
            client.get(url_)
        page_cached.append((time.perf_counter() - t0) * 1000)
    report("stats page + its 3 charts, cached", page_cached)
    results.append(report("head fragment (the 10 s poll)",
                          measure(client, f"/workers/{heavy}", n, {"HX-Request": "true", "HX-Target": "worker-head"}), 50))

    print("\nTask list (?tab=tasks)")
    for sort in ("created", "name", "status"):
        results.append(report(f"worker #{heavy}, sort={sort}",
                              measure(client, f"/workers/{heavy}?tab=tasks&sort={sort}", n), 250))
    results.append(report(f"worker #{heavy}, search q=Forest",
                          measure(client, f"/workers/{heavy}?tab=tasks&q=Forest", n), 250))
    results.append(report(f"worker #{heavy}, status=failed, page 5",
                          measure(client, f"/workers/{heavy}?tab=tasks&status=failed&page=5", n), 250))
    typical = info["typical_worker"]
    results.append(report(f"worker #{typical} (a typical one), sort=created",
                          measure(client, f"/workers/{typical}?tab=tasks", n), 250))
    return results


@dataclasses.dataclass
class Beside:
    """What the load beside the pages did: its wrk figures, and whether it outlasted the pages."""
    load: object = None
    covered: bool = False

    @property
    def cycles_per_s(self) -> float:
        return self.load.statuses.get("complete:200", 0) / self.load.seconds


@contextlib.contextmanager
def dispatch_beside(app, tmp: Path, url: str | None, workers: int, seconds: float):
    """Full task cycles on the same database while the pages are timed: `pictor-portal serve` on it,
    `workers` workers paired through the service layer, wrk driving bench/dispatch.py's cycle."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dispatch as dispatch_bench
    import netload
    from flask_migrate import stamp
    from webapp.extensions import db
    with app.app_context():
        stamp()  # the seed made the tables itself: the server's migrations have nothing to do
        tokens = netload.pair_workers(workers)
        owner = netload.creator()
        for i in range(10):
            netload.submit_render(owner, 2_000, name=f"beside-{i}")
        db.session.remove()
    site = netload.Site(tmp, url or f"sqlite:///{tmp / 'test.sqlite3'}")
    result = Beside()
    with netload.serve_portal(site) as base:
        worker = threading.Thread(target=lambda: setattr(result, "load", dispatch_bench.cycles(site, base, tokens, seconds)))
        worker.start()
        time.sleep(3)  # the cycles under way before the first page is timed
        try:
            yield result
        finally:
            result.covered = worker.is_alive()
            worker.join()


def run(args) -> int:
    from tests.conftest import make_app

    tmp = Path(tempfile.mkdtemp(prefix="pictor-bench-"))
    admin = None
    if args.postgres:
        import psycopg
        admin = psycopg.connect(args.postgres_url, autocommit=True)
        name = f"pictor_bench_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        url = args.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = None
    app = make_app(tmp, url)
    app.config["TESTING"] = False  # measure the production code path (errors would surface as 500s)
    try:
        print(f"Seeding {args.workers:,} workers and {args.tasks:,} tasks on "
              f"{'PostgreSQL' if url else 'SQLite'} ...", flush=True)
        info = seed(app, args.workers, args.tasks, min(args.heavy, args.tasks))
        print(f"  seeded in {info['seconds']:.1f} s ({info['daily_rows']:,} daily stat rows)", flush=True)

        client = app.test_client()
        client.post("/login", data={"email": EMAIL, "password": PASSWORD})
        started = time.perf_counter()
        results = time_pages(client, args, info)
        if args.beside_dispatch:
            alone = time.perf_counter() - started
            with dispatch_beside(app, tmp, url, args.beside_dispatch, seconds=2 * alone + 30) as load:
                print(f"\n--- again, while {args.beside_dispatch} workers run full task cycles beside "
                      f"(bench/dispatch.py's load, pictor-portal serve on this database) ---", flush=True)
                results += time_pages(client, args, info)
            print(f"\nbeside: {load.cycles_per_s:.1f} task cycles/s"
                  + ("" if load.covered else " (the load ended before the pages did: the last ones ran alone)"))
        print("\nAll goals met." if all(results) else "\nSome goals were missed (marked OVER).")
        return 0 if all(results) else 1
    finally:
        from webapp.extensions import db
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(kept {tmp})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--heavy", type=int, default=100_000, help="tasks on worker #1, the one whose details are timed")
    parser.add_argument("--requests", type=int, default=30, help="requests per case")
    parser.add_argument("--postgres", action="store_true", help="use PostgreSQL instead of SQLite")
    parser.add_argument("--beside-dispatch", type=int, default=0, metavar="WORKERS",
                        help="time the pages again while this many workers run full task cycles beside them")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file (its folder is printed)")
    parser.add_argument("--postgres-url", default=os.environ.get("PICTOR_TEST_POSTGRES",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"))
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
