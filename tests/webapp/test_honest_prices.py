"""Honest prices: the portal's own Bench Score, billable time a worker can't stretch, the creator's cap,
and the attack of the issue (a reported score of 10,000,000 and a $100 bid) scripted over the API."""

from datetime import timedelta

import pytest
from PIL import Image

from tests.conftest import T0
from tests.webapp.dispatch_factories import auth, make_job, make_user, make_worker
from tests.webapp.test_verification import picture, png, run_check, upload, w
from webapp import money
from webapp.extensions import db
from webapp.models import JobType, LedgerEntry, LedgerKind, Task, TaskStatus, VerificationState, Worker
from webapp.services import benchmarks, dispatch, ledger, market

BENCH = (320, 240)


@pytest.fixture
def hctx(any_app, clock):
    any_app.config.update(VERIFY_SEED=3, VERIFY_SETTLE_SECONDS=3600, STALL_SECONDS=600)
    with any_app.app_context():
        yield any_app


def finish(worker_id, seconds, clock, pings=()):
    """Claim, ping progress at the given offsets, and complete after `seconds` with a correct frame."""
    task = dispatch.claim_task(w(worker_id))
    task_id, frame = task.id, task.params["frames"][0]
    start = clock.now
    for offset, progress in pings:
        clock.set(start + timedelta(seconds=offset))
        assert dispatch.report_progress(worker_id, task_id, progress)
    output = upload(task_id, f"frame_{frame:04d}.png", png(picture(task_id, size=(32, 18))))
    clock.set(start + timedelta(seconds=seconds))
    dispatch.complete_task(w(worker_id), task_id, [output], seconds)
    return db.session.get(Task, task_id)


# -- the lease and the clock -------------------------------------------------------------------------

def test_pings_that_dont_move_a_task_forward_stop_keeping_its_lease(hctx, clock):
    make_job(tasks=1)
    worker, _ = make_worker()
    task = dispatch.claim_task(w(worker))
    task_id = task.id
    clock.advance(seconds=30)
    assert dispatch.report_progress(worker, task_id, 0.2)
    for _ in range(10):  # the same 20% for ten minutes: the lease still follows (a slow sample)
        clock.advance(seconds=59)
        assert dispatch.report_progress(worker, task_id, 0.2)
    lease = db.session.get(Task, task_id).lease_expires_at
    clock.advance(seconds=59)  # stalled for more than STALL_SECONDS: this ping no longer extends it
    dispatch.report_progress(worker, task_id, 0.2)
    assert db.session.get(Task, task_id).lease_expires_at == lease
    clock.set(lease + timedelta(seconds=1))
    assert dispatch.reap_expired_leases() == 1
    assert db.session.get(Task, task_id).status == TaskStatus.QUEUED
    assert not dispatch.report_progress(worker, task_id, 0.9)  # the app is told to stop


def test_billable_time_is_bounded_by_the_jobs_verified_peers(hctx, clock):
    make_job(tasks=4)
    for i in range(3):  # three honest workers, 100 s a frame at score 1000, results standing
        peer, _ = make_worker(make_user(f"peer{i}@example.com"), bid="0.36", bench_score=1000)
        finish(peer, 100, clock)
    slow, _ = make_worker(make_user("slow@example.com"), bid="0.36", bench_score=1000)
    # It holds the task for an hour with advancing pings and reports all of it.
    task = finish(slow, 3600, clock, pings=[(s, s / 4000) for s in range(50, 3600, 50)])
    assert task.compute_seconds == 200.0  # 2 x the peers' 100 s, not 3600
    assert task.reward_micros == 20_000  # 0.36 USD/h x 200 s
    # A faster machine is expected to take proportionally less; a slower one more.
    assert market.billable_seconds_bound(Task(job_id=task.job_id, type=JobType.RENDER, params={"frames": [9]},
                                              bench_score=2000, worker_id=slow)) == 100.0


def test_a_task_never_bills_above_the_creators_cap(hctx, clock):
    make_job(tasks=1, max_price="0.20")
    worker, _ = make_worker(bid="0.20", bench_score=1000)
    task = dispatch.claim_task(w(worker))
    task.bid_micros = money.to_micros("5.00")  # whatever happened to the bid, the cap holds
    db.session.commit()
    output = upload(task.id, "frame_0001.png", png(picture(1, size=(32, 18))))
    clock.advance(seconds=1800)
    assert dispatch.complete_task(w(worker), task.id, [output], 1800) == 100_000  # 0.20 x 0.5 bench-hour
    job = db.session.get(Task, task.id).job
    from webapp.services import jobs
    body = jobs.serialize_job(job)
    assert (body["cost"], body["bench_hours"], body["paid_per_bench_hour"], body["saving"]) == \
        ("0.100000", 0.5, "0.200000", "0.000000")


# -- the portal's own Bench Score ------------------------------------------------------------------

def test_the_bench_score_is_what_the_portal_timed_and_a_check_confirmed(hctx, clock):
    owner = make_user("bench@example.com")
    worker, _ = make_worker(owner, job_types=("render", "benchmark"))
    other, _ = make_worker(make_user("other@example.com"), job_types=("render", "benchmark", "verify"))
    from webapp.services import presence
    presence.record_hello(w(worker), {"capabilities": {"job_types": ["render", "benchmark"]}}, "127.0.0.1")
    runs = db.session.execute(db.select(Task).where(Task.type == JobType.BENCHMARK)).scalars().all()
    assert [t.for_worker_id for t in runs] == [worker]
    assert dispatch.claim_task(w(other)) is None or dispatch.claim_task(w(other)).type != JobType.BENCHMARK
    run = dispatch.claim_task(w(worker))
    assert run.type == JobType.BENCHMARK and set(run.params) == {"seed", "scene_version"}
    frame = picture(77, size=BENCH)
    output = upload(run.id, "frame_0001.png", png(frame))
    clock.advance(seconds=14.4)  # twice the reference time: score 500
    dispatch.complete_task(w(worker), run.id, [output], 14.4)
    assert w(worker).bench_score is None  # not before its check
    check = run_check_bench(other, frame, clock)
    assert check.state == VerificationState.PASSED
    assert w(worker).bench_score == 500 == benchmarks.score_for(14.4)
    assert w(worker).bench_details["portal"]["seconds"] == 14.4
    # The run is the network's cost, never a creator's.
    entry = ledger.reward_of(run.id, 1)
    assert entry.kind == LedgerKind.CHECK_REWARD
    presence.record_hello(w(worker), {}, "127.0.0.1")
    assert db.session.execute(db.select(db.func.count()).where(Task.type == JobType.BENCHMARK)).scalar_one() == 1


@pytest.mark.parametrize("retryable", [True, False])
def test_a_failed_bench_score_run_ends_and_the_next_hello_issues_a_new_one(hctx, clock, retryable):
    """A run is for one worker only: no one else could confirm or retry it, so a failure ends it at
    once, and the worker is not left without a run it can ever take."""
    from webapp.services import presence
    worker, _ = make_worker(make_user("bench@example.com"), job_types=("render", "benchmark"))
    presence.record_hello(w(worker), {"capabilities": {"job_types": ["render", "benchmark"]}}, "127.0.0.1")
    run = dispatch.claim_task(w(worker))
    assert run.type == JobType.BENCHMARK
    assert dispatch.fail_task(w(worker), run.id, "Blender crashed", None, retryable=retryable) == TaskStatus.FAILED
    presence.record_hello(w(worker), {}, "127.0.0.1")
    again = dispatch.claim_task(w(worker))
    assert again.type == JobType.BENCHMARK and again.id != run.id


def run_check_bench(verifier_id, frame, clock):
    from webapp.models import Verification
    from webapp.services import result_checks
    check = dispatch.claim_task(w(verifier_id))
    assert check.type == JobType.VERIFY and check.params["kind"] == "benchmark"
    outputs = [upload(check.id, f"crop_{i:02d}.png", png(frame.crop(result_checks.crop_from_border(b, *BENCH).box)))
               for i, b in enumerate(check.params["crops"])]
    clock.advance(seconds=3)
    dispatch.complete_task(w(verifier_id), check.id, outputs, 3)
    return db.session.execute(db.select(Verification).where(Verification.verify_task_id == check.id)).scalar_one()


def test_the_attack_of_the_issue_earns_nothing_and_moves_no_price(any_app, clock):
    """Report a Bench Score of 10,000,000, bid $100/h, try to claim: nothing to gain."""
    any_app.config.update(VERIFY_SEED=3)
    client = any_app.test_client()
    with any_app.app_context():
        make_job(tasks=19, max_price="0.625")
        honest, _ = make_worker(make_user("honest@example.com"), bid="0.50")
        cheat, token = make_worker(make_user("cheat@example.com"), bid="0.50")
    headers = auth(token)
    answer = client.post("/api/v1/worker/benchmark", json={"score": 10_000_000, "details": {}}, headers=headers)
    assert answer.status_code == 200
    assert (answer.get_json()["bench_score"], answer.get_json()["bench_score_reported"]) == (None, 10_000_000)
    assert client.put("/api/v1/worker/settings", json={"bid": "100"}, headers=headers).status_code == 200
    # Priced by the portal's figure (none yet: the reference machine's 1000), $100/bench-hour is far over
    # every job's cap: the claim finds nothing.
    assert client.post("/api/v1/worker/tasks/claim", json={}, headers=headers).status_code == 204
    with any_app.app_context():
        assert market.compute_market_day() == 500_000  # one bid moves nothing
        assert market.effective_bid_micros(db.session.get(Worker, honest)) == 500_000
        assert market.default_max_price_micros() == 625_000
        assert ledger.worker_earnings(cheat) == 0
        assert db.session.execute(db.select(LedgerEntry)).scalars().all() == []
