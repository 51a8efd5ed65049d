"""Presence: heartbeats extend or open online intervals; uptime and uptime percentage derive from them; location."""

from datetime import timedelta

import pytest
from sqlalchemy import event

from tests.conftest import T0
from tests.webapp.dispatch_factories import auth, make_worker
from webapp.extensions import db
from webapp.models import PresenceInterval, Worker, WorkerState
from webapp.services import geo, presence


def beat(clock, worker_id, at, state="idle"):
    clock.set(at)
    presence.record_heartbeat(db.session.get(Worker, worker_id), state)


def intervals(worker_id):
    return [(i.started_at, i.ended_at) for i in db.session.execute(
        db.select(PresenceInterval).where(PresenceInterval.worker_id == worker_id)
        .order_by(PresenceInterval.started_at)).scalars()]


def add_interval(worker_id, start, end):
    db.session.add(PresenceInterval(worker_id=worker_id, started_at=start, ended_at=end))
    db.session.commit()


def test_heartbeats_extend_the_open_interval_and_a_gap_opens_a_new_one(ctx, clock):
    worker, _ = make_worker(seen=False)
    beat(clock, worker, T0)
    beat(clock, worker, T0 + timedelta(seconds=15))
    beat(clock, worker, T0 + timedelta(seconds=100))  # 85 s gap: under the 90 s offline threshold
    assert intervals(worker) == [(T0, T0 + timedelta(seconds=100))]
    beat(clock, worker, T0 + timedelta(seconds=200), "busy")  # 100 s gap: it was offline in between
    assert intervals(worker) == [(T0, T0 + timedelta(seconds=100)),
                                 (T0 + timedelta(seconds=200), T0 + timedelta(seconds=200))]
    row = db.session.get(Worker, worker)
    assert row.state == WorkerState.BUSY and row.last_heartbeat_at == T0 + timedelta(seconds=200)


def test_current_uptime_is_the_open_interval_and_zero_once_offline(ctx, clock):
    worker, _ = make_worker(seen=False)
    for second in range(0, 601, 15):
        beat(clock, worker, T0 + timedelta(seconds=second))
    w = db.session.get(Worker, worker)
    assert presence.current_uptime_seconds(w, now=T0 + timedelta(seconds=630)) == 630
    assert presence.current_uptime_seconds(w, now=T0 + timedelta(seconds=600 + 91)) == 0


def test_uptime_percent_clips_to_the_window_and_merges_overlaps(ctx, clock):
    now = T0
    worker, _ = make_worker(seen=False)
    with_overlap, _ = make_worker(seen=False)
    silent, _ = make_worker(seen=False)
    for w in (worker, with_overlap, silent):
        db.session.get(Worker, w).created_at = now - timedelta(days=100)
    db.session.commit()
    # 3 days, half of it before the 30-day window: 1.5 days count. Plus 1.5 days inside the window.
    add_interval(worker, now - timedelta(days=31, hours=12), now - timedelta(days=28, hours=12))
    add_interval(worker, now - timedelta(days=10), now - timedelta(days=8, hours=12))
    # Two overlapping intervals covering 3 days in total.
    add_interval(with_overlap, now - timedelta(days=6), now - timedelta(days=4))
    add_interval(with_overlap, now - timedelta(days=5), now - timedelta(days=3))
    result = presence.uptime_percent([worker, with_overlap, silent], now=now)
    assert result == {worker: 10.0, with_overlap: 10.0, silent: 0.0}


def test_uptime_percent_counts_a_young_worker_from_its_creation_and_open_intervals_to_now(ctx, clock):
    worker, _ = make_worker(seen=False)
    db.session.get(Worker, worker).created_at = T0 - timedelta(hours=10)
    db.session.commit()
    add_interval(worker, T0 - timedelta(hours=5), T0 - timedelta(seconds=30))  # still open: counts to now
    assert presence.uptime_percent([worker], now=T0) == {worker: 50.0}


def test_uptime_percent_for_a_page_is_one_query(ctx, clock):
    clock.set(T0 - timedelta(days=3))
    ids = [make_worker(name=f"n{i}", seen=False)[0] for i in range(25)]
    clock.set(T0)
    for worker in ids:
        add_interval(worker, T0 - timedelta(days=2), T0 - timedelta(days=1))
    statements = []

    def count(*args):
        statements.append(args[2])
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        result = presence.uptime_percent(ids, now=T0)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert all(value > 0 for value in result.values()) and set(result) == set(ids)


def test_sweep_merges_intervals_that_racing_heartbeats_opened_side_by_side(ctx, clock):
    worker, _ = make_worker(seen=False)
    add_interval(worker, T0 - timedelta(minutes=10), T0 - timedelta(minutes=5))
    add_interval(worker, T0 - timedelta(minutes=5, seconds=-1), T0 - timedelta(minutes=1))
    add_interval(worker, T0 - timedelta(hours=3), T0 - timedelta(hours=2))  # a real gap: kept apart
    assert presence.close_stale_intervals(now=T0) == 1
    assert intervals(worker) == [(T0 - timedelta(hours=3), T0 - timedelta(hours=2)),
                                 (T0 - timedelta(minutes=10), T0 - timedelta(minutes=1))]
    assert presence.close_stale_intervals(now=T0) == 0


def test_heartbeat_over_http_records_presence(app, client, clock):
    with app.app_context():
        worker, token = make_worker(seen=False)
    assert client.post("/api/v1/worker/heartbeat", json={"state": "idle"}, headers=auth(token)).status_code == 200
    clock.set(T0 + timedelta(seconds=15))
    assert client.post("/api/v1/worker/heartbeat", json={"state": "busy"}, headers=auth(token)).status_code == 200
    with app.app_context():
        assert intervals(worker) == [(T0, T0 + timedelta(seconds=15))]


# -- location --------------------------------------------------------------------------------------

def test_public_ips_resolve_to_a_country_offline():
    assert geo.country_for_ip("8.8.8.8") == "United States"
    assert geo.country_for_ip("81.2.69.160") == "United Kingdom"
    assert geo.country_for_ip("::ffff:8.8.8.8") == "United States"


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "192.168.1.20", "172.16.0.5", "::1", "fe80::1", "", None,
                                "not an ip"])
def test_local_and_invalid_addresses_have_no_country(ip):
    assert geo.country_for_ip(ip) is None


def test_location_label_prefers_the_providers_own_words(ctx, clock):
    worker_id, _ = make_worker()
    worker = db.session.get(Worker, worker_id)
    presence.record_hello(worker, {}, "8.8.8.8")
    worker = db.session.get(Worker, worker_id)
    assert worker.country == "United States" and geo.location_label(worker) == "United States"
    worker.location_override = "Frankfurt rack 3"
    assert geo.location_label(worker) == "Frankfurt rack 3"
    worker.location_override = None
    presence.record_hello(worker, {}, "192.168.0.10")
    worker = db.session.get(Worker, worker_id)
    assert worker.country is None and geo.location_label(worker) == "Local network"
