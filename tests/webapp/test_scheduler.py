"""Periodic jobs run exactly once per time slot, even when several portal processes race for the slot."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import T0 as START, make_app
from webapp import tasks
from webapp.extensions import db
from webapp.models import PeriodicRun

ROOT = Path(__file__).resolve().parents[2]
SLOTS = 12

# What each portal process runs: the real run_once, with the job's target swapped (monkeypatched
# _resolve) for one that bumps a counter row in the shared database.
CHILD = r"""
import json, os, sys, time
from datetime import datetime, timedelta
from sqlalchemy import text
from webapp import create_app, tasks
from webapp.clock import freeze
from webapp.extensions import db

app = create_app({"TESTING": True, "SECRET_KEY": "x", "SCHEDULER_ENABLED": False,
                  "SQLALCHEMY_DATABASE_URI": os.environ["T_DB"], "STORAGE_DIR": os.environ["T_STORAGE"],
                  "RATELIMIT_STORAGE_URI": "memory://"})

def bump():
    db.session.execute(text("UPDATE sched_counter SET n = n + 1 WHERE id = 1"))
    return "bumped"

tasks._resolve = lambda target: bump
job = tasks.PeriodicJob("test_counter", "test_helper:bump", 60)
start = datetime.fromisoformat(os.environ["T_START"])
won = []
with app.app_context():
    db.session.execute(text("SELECT 1"))  # connect before the race starts
    db.session.commit()
    open(os.environ["T_READY"], "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["T_GO"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    for i in range(int(os.environ["T_SLOTS"])):
        freeze(start + timedelta(seconds=60 * i))
        won.append(tasks.run_once(job, runner=os.environ["T_RUNNER"]))
print(json.dumps(won))
"""


def _race(app, tmp_path) -> list[list[bool]]:
    """Two OS processes run the same job over the same SLOTS time slots, starting together."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sched_counter"))
            conn.execute(text("CREATE TABLE sched_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
            conn.execute(text("INSERT INTO sched_counter (id, n) VALUES (1, 0)"))
    go = tmp_path / "go"
    procs = []
    for name in ("portal-a", "portal-b"):
        env = dict(os.environ, T_DB=url, T_STORAGE=str(tmp_path / "storage"), T_START=START.isoformat(),
                   T_READY=str(tmp_path / f"ready-{name}"), T_GO=str(go), T_SLOTS=str(SLOTS), T_RUNNER=name)
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # Release both only when both are connected, so they really contend for each slot.
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in ("portal-a", "portal-b")):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the portal processes did not start"
        time.sleep(0.02)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _check(app, results):
    a, b = results
    assert len(a) == len(b) == SLOTS
    # For every slot exactly one of the two processes ran the job ...
    assert all(x != y for x, y in zip(a, b)), results
    with app.app_context():
        # ... and the job's effect happened once per slot, not twice.
        assert db.session.execute(text("SELECT n FROM sched_counter WHERE id = 1")).scalar_one() == SLOTS
        runs = db.session.execute(db.select(PeriodicRun).where(PeriodicRun.name == "test_counter")).scalars().all()
        assert len(runs) == SLOTS
        assert {r.result for r in runs} == {"bumped"}
        winners = {r.slot: r.runner for r in runs}
        first = int(START.timestamp()) // 60
        for i in range(SLOTS):
            assert winners[first + i] == ("portal-a" if a[i] else "portal-b")


def test_run_once_across_two_processes_sqlite(tmp_path):
    app = make_app(tmp_path)
    try:
        _check(app, _race(app, tmp_path))
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.postgres
def test_run_once_across_two_processes_postgres(tmp_path, postgres_url):
    app = make_app(tmp_path, postgres_url)
    try:
        _check(app, _race(app, tmp_path))
    finally:
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS sched_counter"))
            db.drop_all()
            db.engine.dispose()


def test_run_once_in_one_process(ctx, monkeypatch, clock):
    calls = []

    def target():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")

    monkeypatch.setattr(tasks, "_resolve", lambda _target: target)
    job = tasks.PeriodicJob("unit", "unit:target", 15)
    clock.set(START)
    assert tasks.run_once(job, runner="one") is True
    assert tasks.run_once(job, runner="two") is False  # same slot: already done
    clock.set(START + timedelta(seconds=14))
    assert tasks.run_once(job, runner="two") is False  # still the same 15-second slot
    clock.set(START + timedelta(seconds=15))
    assert tasks.run_once(job, runner="two") is True
    clock.set(START + timedelta(seconds=30))
    assert tasks.run_once(job, runner="one") is True  # the target fails: recorded, not raised
    assert len(calls) == 3
    results = [r.result for r in db.session.execute(
        db.select(PeriodicRun).where(PeriodicRun.name == "unit").order_by(PeriodicRun.slot)).scalars()]
    assert results == ["ok", "ok", "error: disk full"]


def test_every_listed_job_names_a_real_function():
    for job in tasks.JOBS:
        assert callable(tasks._resolve(job.target)), job
