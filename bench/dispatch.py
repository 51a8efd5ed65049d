#!/usr/bin/env python3
"""Full task cycles per second on one portal, beside the bare ceiling of the same server settings.

Starts the portal as `pictor-portal serve` does (gunicorn, --processes × 8 threads; SQLite in a temporary
folder, or PostgreSQL with --postgres), pairs --workers workers through the service layer, submits
render jobs of one-frame tasks, and drives full cycles with wrk (bench/wrk/cycle.lua): claim -> progress
-> output PUT -> complete, one worker per connection. In the same run, wrk measures a bare Flask JSON
endpoint under the same gunicorn settings: the stack's ceiling. Prints cycles/s, the ratio of the
cycle's requests to the ceiling, and p50/p99 per step.

    .venv/bin/python bench/dispatch.py                    # SQLite, 2 processes, 16 workers, 20 s
    .venv/bin/python bench/dispatch.py --postgres --processes 4
    .venv/bin/python bench/dispatch.py --budgets          # each job with a spend limit

Target (issue 15): full cycles at >= 15% of the bare ceiling (the cycle's 4 requests/s / ceiling req/s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netload  # noqa: E402

STEPS = ("claim", "progress", "put", "complete")


BUDGET = "1000.00"  # per job, far more than a bench spends: each completion checks it, none reaches it


def seed(site: netload.Site, workers: int, frames: int, budgets: bool = False) -> list[str]:
    with site.app():
        tokens = netload.pair_workers(workers)
        owner = netload.creator()
        if budgets:
            from webapp.services import credit
            credit.add_credit(owner, str(int(float(BUDGET)) * (frames // 2_000 + 1)), key="bench")
        for i in range(0, frames, 2_000):  # a job holds at most 2,000 tasks
            netload.submit_render(owner, min(2_000, frames - i), name=f"bench-{i}", budget=BUDGET if budgets else None)
    return tokens


def cycles(site: netload.Site, url: str, tokens: list[str], seconds: float, interval_ms: float = 0) -> netload.Load:
    frame = site.folder / "frame.png"
    sha, _size = netload.frame_png(frame)
    token_file = netload.write_tokens(site.folder, tokens, "cycle-tokens.txt")
    return netload.run_wrk("cycle.lua", url, connections=len(tokens), seconds=seconds, folder=site.folder,
                           env={"WRK_TOKENS": str(token_file), "WRK_FRAME": str(frame), "WRK_FRAME_SHA": sha,
                                "WRK_INTERVAL_MS": str(interval_ms)})


def report(load: netload.Load, bare: float, label: str) -> float:
    done = load.statuses.get("complete:200", 0) / load.seconds
    print(f"\n{label}: {done:7.1f} cycles/s  = {4 * done:7.1f} cycle requests/s  "
          f"= {100 * 4 * done / bare:5.1f}% of the bare ceiling ({bare:,.0f} req/s)")
    for step in STEPS:
        print(f"  {step:9s} {load.count(step):7d} requests  {netload.ms(load.by_step.get(step, []))}")
    odd = {k: v for k, v in load.statuses.items() if not k.endswith((":200", ":201", ":204"))}
    if odd:
        print(f"  other answers: {odd}")
    if idle := load.statuses.get("claim:204"):
        print(f"  claims with no task (204): {idle}")
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1 instead of SQLite")
    parser.add_argument("--processes", type=int, default=2, help="server processes (pictor-portal serve --workers)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--budgets", action="store_true",
                        help=f"each job has a budget ({BUDGET} USD): completions take the budget's path")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    with (netload.postgres_site(folder) if args.postgres else _sqlite(folder)) as site:
        print(f"{'PostgreSQL' if args.postgres else 'SQLite'}, {args.processes} processes x 8 threads, "
              f"{args.workers} workers, {args.seconds:g} s per measurement{', jobs with budgets' if args.budgets else ''}")
        # Workers of their own warm the server up: a cycle cut off at the end leaves its task running,
        # and a worker's slot holds one running task.
        tokens = seed(site, 2 * args.workers, args.frames, args.budgets)
        warm, tokens = tokens[:args.workers], tokens[args.workers:]
        bare = netload.ceiling(folder, args.processes, args.workers, args.seconds / 2)
        with netload.serve_portal(site, args.processes) as url:
            cycles(site, url, warm, 2)
            load = cycles(site, url, tokens, args.seconds)
        done = report(load, bare, "full cycles")
        print(f"\nratio: {100 * 4 * done / bare:.1f}% of the bare ceiling (target >= 15%)")
    return 0


class _sqlite:
    def __init__(self, folder):
        self.site = netload.Site(folder)

    def __enter__(self):
        return self.site

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
