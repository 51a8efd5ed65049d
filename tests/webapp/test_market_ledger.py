"""The market (average bid, price per bench-hour, earning estimate) and the ledger (costs, earnings, daily rows)."""

from datetime import timedelta

import pytest

from tests.conftest import T0
from tests.webapp.dispatch_factories import frame_png, make_job, make_user, make_worker
from webapp.extensions import db
from webapp.models import (LedgerEntry, LedgerKind, PresenceInterval, Task, TaskOutput, TaskStatus, Worker,
                           WorkerDailyStat)
from webapp.services import ServiceError, dispatch, ledger, market, storage


@pytest.fixture
def any_ctx(any_app, clock):
    with any_app.app_context():
        yield any_app


def seen(worker_id, at):
    db.session.get(Worker, worker_id).last_heartbeat_at = at
    db.session.commit()


def verified(worker_id, at=None):
    """A task reward for the worker: it did verified work."""
    db.session.add(LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=1000, worker_id=worker_id,
                               created_at=at or T0))
    db.session.commit()


def test_average_bid_is_one_voice_per_account_with_verified_work(ctx, clock):
    assert market.average_bid_micros() == 500_000  # DEFAULT_BID before the first market day
    careful = make_user("careful@example.com")
    for bid in ("0.40", "0.44", "0.48"):
        verified(make_worker(careful, bid=bid)[0])
    verified(make_worker(make_user("solo@example.com"), bid="0.56")[0])
    # The attack: a hundred throwaway workers at $100/h that never delivered, and one that did.
    sybil = make_user("sybil@example.com")
    for i in range(100):
        make_worker(sybil, name=f"throwaway-{i}", bid="100")
    verified(make_worker(make_user("greedy@example.com"), bid="100")[0])
    stale, _ = make_worker(make_user("gone@example.com"), bid="9.00")
    verified(stale, at=T0 - timedelta(hours=25))  # its work is older than a day
    default_bidder, _ = make_worker(bid=None)
    verified(default_bidder)
    # Accounts' medians 0.44, 0.56 and 100: the median is 0.56, inside today's 0.40..0.625 band.
    assert market.compute_market_day() == 560_000 == market.average_bid_micros()
    assert market.effective_bid_micros(db.session.get(Worker, default_bidder)) == 560_000
    assert market.compute_market_day() == 560_000  # once a day, whatever happens meanwhile


def test_the_average_bid_moves_at_most_a_quarter_a_day(ctx, clock):
    for i in range(3):
        verified(make_worker(make_user(f"p{i}@example.com"), bid="100")[0])
    assert market.compute_market_day() == 625_000  # DEFAULT_BID 0.50 x 5/4, not 100
    clock.advance(days=1)
    for worker in db.session.execute(db.select(Worker)).scalars():
        verified(worker.id, at=clock.now)
    assert market.compute_market_day() == 781_250  # and again x 5/4: the majority walks it, slowly
    assert market.default_max_price_micros() == 976_562  # x 1.25, under the cap of 4 x DEFAULT_BID


def test_reversed_or_suspended_work_gives_no_voice(ctx, clock):
    liar, _ = make_worker(make_user("liar@example.com"), bid="0.10")
    verified(liar)
    entry = db.session.execute(db.select(LedgerEntry).where(LedgerEntry.worker_id == liar)).scalar_one()
    db.session.add(LedgerEntry(kind=LedgerKind.REVERSAL, amount_micros=-1000, worker_id=liar, reverses_id=entry.id))
    caught, _ = make_worker(make_user("caught@example.com"), bid="0.10")
    verified(caught)
    db.session.get(Worker, caught).suspended_at = T0
    db.session.commit()
    assert market.verified_bids_by_account(T0) == {}
    assert market.compute_market_day() == 500_000


def test_price_per_bench_hour():
    assert market.price_per_bench_hour_micros(500_000, 1000) == 500_000
    assert market.price_per_bench_hour_micros(500_000, 2000) == 250_000
    assert market.price_per_bench_hour_micros(500_000, 3000) == 166_667  # rounded half up
    assert market.price_per_bench_hour_micros(500_000, None) is None
    assert market.price_per_bench_hour_micros(500_000, 0) is None


def _online(worker_id, hours):
    db.session.add(PresenceInterval(worker_id=worker_id, started_at=T0 - timedelta(hours=hours), ended_at=T0))
    db.session.commit()


def _completed(worker_id, job_id, seconds):
    db.session.add(Task(job_id=job_id, seq=0, type="render", params={}, input_names=[], status=TaskStatus.COMPLETED,
                        worker_id=worker_id, compute_seconds=seconds, finished_at=T0 - timedelta(hours=1)))
    db.session.commit()


def test_estimated_earning_uses_utilisation_of_workers_at_or_under_my_price(ctx, clock):
    me, _ = make_worker(bid="0.50")
    cheap, _ = make_worker(bid="0.30")
    pricey, _ = make_worker(bid="2.00")
    job_id, _ = make_job(tasks=0)
    for worker in (me, cheap, pricey):
        _online(worker, 10)
    _completed(cheap, job_id, 5 * 3600)
    _completed(pricey, job_id, 10 * 3600)  # busy, but above my price: says nothing about my chances
    estimate = market.estimated_earning_per_hour(db.session.get(Worker, me))
    assert estimate["utilisation"] == 0.25  # 5 h computed of 20 h online
    assert estimate["micros"] == 125_000  # 0.50 USD/h x 25%
    assert "25%" in estimate["explanation"] and "2 worker" in estimate["explanation"]


def test_estimated_earning_without_network_data_says_so(ctx, clock):
    me, _ = make_worker(bid="0.50")
    estimate = market.estimated_earning_per_hour(db.session.get(Worker, me))
    assert estimate["micros"] == 0 and estimate["utilisation"] == 0
    assert "no worker" in estimate["explanation"]


@pytest.mark.parametrize("value,expected", [("0.45", 450_000), ("100", 100_000_000), (1, 1_000_000),
                                            ("0.000001", 1), (None, None)])
def test_bids_parse_as_exact_money(value, expected):
    assert market.parse_bid(value) == expected


@pytest.mark.parametrize("value", ["0", "100.000001", "-0.1", 0.45, "1e400", "Infinity", "", [], "0.0000001"])
def test_bad_bids_are_refused(value):
    with pytest.raises(ServiceError):
        market.parse_bid(value)


# -- ledger ----------------------------------------------------------------------------------------

def _finish(clock, worker_id, task_id, seconds):
    dispatch.claim_task(db.session.get(Worker, worker_id))
    task = db.session.get(Task, task_id)
    name = f"frame_{task.params['frames'][0]:04d}.png"
    stored = storage.put_bytes(frame_png(task_id))
    db.session.flush()
    db.session.add(TaskOutput(task_id=task_id, name=name, sha256=stored.sha256, size=stored.size))
    db.session.commit()
    clock.set(T0 + timedelta(seconds=seconds))
    reward = dispatch.complete_task(db.session.get(Worker, worker_id), task_id,
                                    [{"name": name, "sha256": stored.sha256, "size": stored.size}], seconds)
    clock.set(T0)
    return reward


def test_job_cost_is_the_sum_of_its_task_rewards(any_ctx, clock):
    worker, _ = make_worker(bid="0.36")
    job_id, (first, second) = make_job(tasks=2)
    other_job, (third,) = make_job(tasks=1)
    assert _finish(clock, worker, first, 100) == 10_000  # 0.36 USD/h x 100 s
    assert _finish(clock, worker, second, 250) == 25_000
    assert _finish(clock, worker, third, 50) == 5_000
    assert ledger.job_cost_micros(job_id) == 35_000
    assert ledger.job_costs_micros([job_id, other_job, 999]) == {job_id: 35_000, other_job: 5_000, 999: 0}
    assert ledger.worker_earnings(worker) == 40_000 == db.session.get(Worker, worker).earnings_micros
    daily = db.session.get(WorkerDailyStat, (worker, "2024-05-10"))
    assert (daily.task_earnings_micros, daily.tasks_completed, daily.compute_seconds) == (40_000, 3, 400.0)


def test_job_cost_counts_what_this_transaction_added_before_any_flush(any_ctx, clock):
    """A budget's check (credit.cap_reward) asks the cost in the transaction that may just have taken a
    reward back: the reversal counts though nothing flushed it yet."""
    worker, _ = make_worker(bid="0.36")
    job_id, (task_id,) = make_job(tasks=1)
    assert _finish(clock, worker, task_id, 100) == 10_000
    entry = ledger.reward_of(task_id, db.session.get(Task, task_id).attempts)
    db.session.add(LedgerEntry(kind=LedgerKind.REVERSAL, amount_micros=-entry.amount_micros, worker_id=worker,
                               provider_id=entry.provider_id, job_id=job_id, reverses_id=entry.id))
    assert ledger.job_cost_micros(job_id) == 0
    db.session.rollback()
    assert ledger.job_cost_micros(job_id) == 10_000


def test_daily_rows_accumulate_through_the_upsert(any_ctx):
    worker, _ = make_worker()
    ledger.bump_daily(worker, "2024-05-10", task_earnings_micros=5, tasks_completed=1, compute_seconds=1.5)
    ledger.bump_daily(worker, "2024-05-10", mining_earnings_micros=7, tasks_failed=2, compute_seconds=2.0)
    ledger.bump_daily(worker, "2024-05-11", tasks_completed=1)
    db.session.commit()
    row = db.session.get(WorkerDailyStat, (worker, "2024-05-10"))
    assert (row.task_earnings_micros, row.mining_earnings_micros, row.tasks_completed, row.tasks_failed,
            row.compute_seconds) == (5, 7, 1, 2, 3.5)
    assert db.session.get(WorkerDailyStat, (worker, "2024-05-11")).tasks_completed == 1


