"""Verified work at the service level: the sampling policy, result checks at complete, spot-check verdicts,
second opinions, pending money, reversals and suspension — with real images compared for real (the
crops a verifier returns here are cut from real PNGs; tests/webapp/test_verified_work.py renders them
with Blender)."""

import io
import random
from datetime import timedelta

import pytest
from PIL import Image

from tests.conftest import T0
from tests.webapp.dispatch_factories import make_job, make_user, make_worker
from webapp.extensions import db
from webapp.models import (Job, JobType, LedgerEntry, LedgerKind, Task, TaskEvent, TaskEventKind, TaskOutput,
                           TaskStatus, Verification, VerificationState, Worker, WorkerStatus)
from webapp.services import ServiceError, dispatch, jobs, ledger, result_checks, storage, verification
from webapp.services import workers as worker_service

SETTLE = 3600
FRAME = (64, 36)  # the scene below at the tasks' 50%


@pytest.fixture
def vctx(any_app, clock):
    any_app.config.update(VERIFY_SEED=7, VERIFY_SETTLE_SECONDS=SETTLE, VERIFY_DISPUTE_SECONDS=600)
    with any_app.app_context():
        yield any_app


def w(worker_id) -> Worker:
    return db.session.get(Worker, worker_id)


def scene_job(tasks=1, engine="CYCLES", **kwargs) -> tuple[int, list[int]]:
    """A render job whose scene the portal read: 128x72 at 100%, tasks at 50% -> 64x36 frames."""
    job_id, task_ids = make_job(tasks=tasks, **kwargs)
    job = db.session.get(Job, job_id)
    settings = {"scene": "Scene", "resolution_x": 128, "resolution_y": 72, "percent": 100, "engine": engine,
                "frame_start": 1, "frame_end": tasks, "use_border": False, "use_crop_to_border": False,
                "border": [0.0, 1.0, 0.0, 1.0], "uses_compositor": False, "uses_sequencer": False}
    job.spec = dict(job.spec, scene={"settings": settings, "spot_checkable": True})
    db.session.commit()
    return job_id, task_ids


def picture(seed: int, size=FRAME) -> Image.Image:
    """A frame with structure (gradients and blocks), different for each seed."""
    rnd = random.Random(seed)
    image = Image.new("RGB", size)
    pixels = image.load()
    blocks = [(rnd.randrange(size[0]), rnd.randrange(size[1]), rnd.randrange(256)) for _ in range(12)]
    for x in range(size[0]):
        for y in range(size[1]):
            near = min(blocks, key=lambda b: (b[0] - x) ** 2 + (b[1] - y) ** 2)
            pixels[x, y] = ((x * 4 + seed * 30) % 256, (y * 7) % 256, near[2])
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def upload(task_id, name, data: bytes) -> dict:
    stored = storage.put_bytes(data)
    db.session.flush()
    db.session.add(TaskOutput(task_id=task_id, name=name, sha256=stored.sha256, size=stored.size))
    db.session.commit()
    return {"name": name, "sha256": stored.sha256, "size": stored.size}


def deliver(worker_id, seconds=60, image=None, clock=None) -> Task:
    """The worker claims its next task and completes it with `image` (a correct-size frame by default)."""
    task = dispatch.claim_task(w(worker_id))
    assert task is not None
    task_id = task.id
    name = f"frame_{task.params['frames'][0]:04d}.png"
    output = upload(task_id, name, png(image or picture(task_id)))
    clock.advance(seconds=seconds)
    dispatch.complete_task(w(worker_id), task_id, [output], seconds)
    return db.session.get(Task, task_id)


def run_check(verifier_id, source: Image.Image | None, clock) -> Verification:
    """The verifier claims a verification task and returns crops cut from `source` (the honest render:
    the delivered frame itself; a liar or a mismatch: another picture)."""
    check = dispatch.claim_task(w(verifier_id))
    assert check is not None and check.type == JobType.VERIFY
    check_id, params = check.id, dict(check.params)
    outputs = []
    for i, border in enumerate(params["crops"]):
        crop = result_checks.crop_from_border(border, *FRAME)
        outputs.append(upload(check_id, f"crop_{i:02d}.png", png(source.crop(crop.box))))
    clock.advance(seconds=5)
    dispatch.complete_task(w(verifier_id), check_id, outputs, 5)
    return db.session.execute(db.select(Verification).where(Verification.verify_task_id == check_id)).scalar_one()


def delivered_image(task: Task) -> Image.Image:
    output = task.outputs[0]
    return Image.open(storage.path_for(output.sha256)).convert("RGB")


# -- the policy --------------------------------------------------------------------------------------

def test_check_probability_is_adaptive_with_a_floor():
    assert [verification.check_probability(n, 0) for n in range(5)] == [1.0] * 5  # the first five: always
    assert verification.check_probability(5, 0) == 1.0  # no passed check yet
    assert verification.check_probability(40, 1) == 1.0
    assert verification.check_probability(40, 4) == 0.25  # BOINC's 1/n
    assert verification.check_probability(40, 10) == 0.1
    assert verification.check_probability(500, 400) == verification.CHECK_FLOOR == 0.05  # never below the floor
    assert verification.check_probability(3, 400) == 1.0  # a new worker's first five, whatever else


def test_sampling_follows_the_record(vctx, clock):
    """A new worker's first five results are all checked; after passes the rate falls; checks go elsewhere."""
    job_id, _ = scene_job(tasks=40)
    worker, _ = make_worker(make_user("new@example.com"), job_types=("render",))
    verifier, _ = make_worker(make_user("checker@example.com"), job_types=("verify",))
    for _ in range(5):
        task = deliver(worker, clock=clock)
        assert verification.states_of([task.id])[task.id] == "pending"
        assert run_check(verifier, delivered_image(task), clock).state == VerificationState.PASSED
    assert verification.record_of(w(worker)) == {"checked": 5, "passed": 5, "failed": 0, "check_rate": 0.2}
    checked = 0
    for _ in range(30):
        task = deliver(worker, clock=clock)
        if verification.states_of([task.id])[task.id] == "pending":
            checked += 1
            run_check(verifier, delivered_image(task), clock)
    assert 1 <= checked <= 15  # a falling rate: 1/5, 1/6, ... (seeded: the same draw every run)
    rate = verification.record_of(w(worker))["check_rate"]
    assert rate == max(0.05, round(1 / (5 + checked), 4))


def test_a_verification_task_never_goes_to_the_checked_account(vctx, clock):
    scene_job(tasks=2)
    owner = make_user("farm@example.com")
    worker, _ = make_worker(owner, job_types=("render",))
    sibling, _ = make_worker(owner, name="same farm", job_types=("verify",))
    deliver(worker, clock=clock)
    assert dispatch.claim_task(w(sibling)) is None  # its own account's check: never
    outsider, _ = make_worker(make_user("other@example.com"), job_types=("verify",))
    assert dispatch.claim_task(w(outsider)).type == JobType.VERIFY


def test_a_job_task_does_not_count_verification_tasks(vctx, clock):
    job_id, _ = scene_job(tasks=1)
    worker, _ = make_worker(make_user("a@example.com"), job_types=("render",))
    deliver(worker, clock=clock)
    job = db.session.get(Job, job_id)
    assert job.status.value == "completed"  # its check is still queued, the job is done
    assert jobs.task_counts(job)["total"] == 1
    assert [t["verification"] for t in jobs.serialize_job(job)["tasks"]] == ["pending"]


# -- result checks at complete -----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["random_bytes", "wrong_size", "jpeg_for_png", "extra_file", "missing_frame",
                                  "renamed"])
def test_complete_refuses_results_that_break_a_rule(vctx, clock, case):
    job_id, (task_id,) = scene_job(tasks=1)
    cheat, _ = make_worker(make_user("cheat@example.com"), job_types=("render",))
    dispatch.claim_task(w(cheat))
    good = png(picture(1))
    jpeg = io.BytesIO()
    picture(1).save(jpeg, "JPEG")
    outputs = {
        "random_bytes": lambda: [upload(task_id, "frame_0001.png", bytes(range(256)) * 40)],
        "wrong_size": lambda: [upload(task_id, "frame_0001.png", png(picture(1, size=(63, 36))))],
        "jpeg_for_png": lambda: [upload(task_id, "frame_0001.png", jpeg.getvalue())],
        "extra_file": lambda: [upload(task_id, "frame_0001.png", good),
                               upload(task_id, "evil.html", b"<script>1</script>")],
        "missing_frame": lambda: [upload(task_id, "frame_0002.png", good)],
        "renamed": lambda: [upload(task_id, "x.svg", b"<svg/>")],
    }[case]()
    clock.advance(seconds=30)
    with pytest.raises(ServiceError) as exc:
        dispatch.complete_task(w(cheat), task_id, outputs, 30)
    assert exc.value.code == "invalid_output" and 400 <= exc.value.status < 500
    assert any(o["name"] in exc.value.message for o in outputs) or "frame_0001.png" in exc.value.message
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.QUEUED and task.outputs == []  # nothing reaches the creator
    assert db.session.execute(db.select(LedgerEntry)).scalars().all() == []  # nobody paid
    failed = db.session.execute(db.select(TaskEvent).where(
        TaskEvent.task_id == task_id, TaskEvent.kind == TaskEventKind.FAILED)).scalars().all()
    assert [e.worker_id for e in failed] == [cheat]  # a failed attempt of this worker
    assert dispatch.claim_task(w(cheat)) is None  # never this task again


# -- verdicts ----------------------------------------------------------------------------------------

def test_an_honest_result_moves_from_pending_to_available(vctx, clock):
    scene_job(tasks=2)
    worker, _ = make_worker(make_user("honest@example.com"), job_types=("render",), bid="0.60")
    verifier, _ = make_worker(make_user("checker@example.com"), job_types=("verify",), bid="0.60")
    task = deliver(worker, seconds=600, clock=clock)  # 0.60 USD/h x 10 min = 0.10
    assert ledger.earnings_split(worker) == {"total": 100_000, "pending": 100_000, "available": 0}
    assert run_check(verifier, delivered_image(task), clock).state == VerificationState.PASSED
    assert ledger.earnings_split(worker) == {"total": 100_000, "pending": 0, "available": 100_000}
    body = worker_service.serialize(w(worker))
    assert (body["earnings"], body["earnings_pending"], body["earnings_available"]) == \
        ("0.100000", "0.000000", "0.100000")
    assert body["record"] == {"checked": 1, "passed": 1, "failed": 0, "check_rate": 1.0}
    # The verifier is paid by the network: its reward settles later and is never the creator's cost.
    assert ledger.earnings_split(verifier)["pending"] == 833  # 0.60 x 5 s
    assert ledger.job_cost_micros(task.job_id) == 100_000


def test_an_unsampled_result_settles_after_the_delay(vctx, clock):
    job_id, _ = scene_job(tasks=1, engine="BLENDER_EEVEE")  # EEVEE crops can't be re-rendered: not sampled
    task_id = db.session.get(Job, job_id).tasks[0].id
    db.session.get(Task, task_id).params = dict(db.session.get(Task, task_id).params, engine="BLENDER_EEVEE")
    db.session.commit()
    worker, _ = make_worker(make_user("eevee@example.com"), job_types=("render",), bid="0.60")
    task = deliver(worker, seconds=600, clock=clock)
    assert verification.states_of([task.id])[task.id] == "none"
    assert ledger.earnings_split(worker)["pending"] == 100_000
    clock.advance(seconds=SETTLE)
    assert ledger.earnings_split(worker) == {"total": 100_000, "pending": 0, "available": 100_000}


def test_a_fake_frame_is_caught_by_a_second_opinion_and_costs_the_cheater_everything(vctx, clock):
    job_id, _ = scene_job(tasks=2)
    cheat, _ = make_worker(make_user("cheat@example.com"), job_types=("render",), bid="0.60")
    first, _ = make_worker(make_user("a@example.com"), job_types=("render", "verify"), bid="0.60")
    second, _ = make_worker(make_user("b@example.com"), job_types=("verify",), bid="0.60")
    fake = deliver(cheat, seconds=600, image=Image.new("RGB", FRAME), clock=clock)  # black, right size
    other = deliver(cheat, seconds=600, image=picture(99), clock=clock)  # "another scene"
    truth = picture(12345)  # what the scene really renders to (the honest verifiers' crops come from it)
    assert ledger.earnings_split(cheat)["pending"] == 200_000
    disputed = run_check(first, truth, clock)  # the black frame's check
    assert disputed.state == VerificationState.PENDING and "second opinion" in disputed.reason
    assert w(cheat).suspended_at is None  # one verifier's word is not enough
    assert run_check(second, truth, clock).state == VerificationState.PENDING  # the other frame's, disputed too
    verdict = run_check(second, truth, clock)  # the black frame's second opinion: no match either
    assert (verdict.round, verdict.state) == (2, VerificationState.FAILED)
    cheater = w(cheat)
    assert worker_service.status_of(cheater) == WorkerStatus.SUSPENDED and "does not match" in cheater.suspended_reason
    assert ledger.worker_earnings(cheat) == 0 == cheater.earnings_micros  # both results taken back
    reversals = db.session.execute(db.select(LedgerEntry).where(
        LedgerEntry.worker_id == cheat, LedgerEntry.kind == LedgerKind.REVERSAL)).scalars().all()
    assert sorted(r.amount_micros for r in reversals) == [-100_000, -100_000]
    for task_id in (fake.id, other.id):
        task = db.session.get(Task, task_id)
        assert task.status == TaskStatus.QUEUED and task.outputs == []  # back in the queue, nothing shown
    assert ledger.job_cost_micros(job_id) == 0  # the creator pays nothing for them
    assert dispatch.claim_task(w(cheat)) is None  # suspended: no more work
    # An honest worker finishes the job; its results count.
    redo = deliver(first, seconds=60, clock=clock)
    assert redo.id in (fake.id, other.id) and redo.status == TaskStatus.COMPLETED


def test_a_lying_verifier_is_overruled_and_suspended(vctx, clock):
    scene_job(tasks=1)
    honest, _ = make_worker(make_user("honest@example.com"), job_types=("render",), bid="0.60")
    liar, _ = make_worker(make_user("liar@example.com"), job_types=("verify",), bid="0.60")
    fair, _ = make_worker(make_user("fair@example.com"), job_types=("verify",), bid="0.60")
    task = deliver(honest, seconds=600, clock=clock)
    assert run_check(liar, Image.new("RGB", FRAME, (255, 0, 255)), clock).state == VerificationState.PENDING
    assert run_check(fair, delivered_image(task), clock).state == VerificationState.PASSED
    assert w(honest).suspended_at is None
    assert ledger.earnings_split(honest) == {"total": 100_000, "pending": 0, "available": 100_000}
    assert w(liar).suspended_at is not None and ledger.worker_earnings(liar) == 0
    assert verification.record_of(w(honest)) == {"checked": 1, "passed": 1, "failed": 0, "check_rate": 1.0}


def test_a_dispute_nobody_takes_up_is_decided_by_the_first_verdict(vctx, clock):
    scene_job(tasks=1)
    cheat, _ = make_worker(make_user("cheat@example.com"), job_types=("render",), bid="0.60")
    checker, _ = make_worker(make_user("checker@example.com"), job_types=("verify",), bid="0.60")
    deliver(cheat, seconds=600, image=Image.new("RGB", FRAME), clock=clock)
    run_check(checker, picture(5), clock)
    assert dispatch.claim_task(w(checker)) is None  # the second opinion needs a third account
    clock.advance(seconds=599)
    assert dispatch.decide_stale_disputes() == 0
    clock.advance(seconds=2)
    assert dispatch.decide_stale_disputes() == 1
    assert w(cheat).suspended_at is not None and ledger.worker_earnings(cheat) == 0


def test_unreferenced_blobs_are_collected_after_their_grace_period(vctx, clock):
    from webapp.models import StoredFile
    from webapp.services import outputs
    _, (task_id,) = make_job(tasks=1)  # its input blob is referenced
    kept = upload(task_id, "frame_0001.png", png(picture(1)))["sha256"]
    junk = storage.put_bytes(b"an upload nobody declared").sha256
    db.session.commit()
    assert outputs.collect_unreferenced_blobs() == 0  # too young: it may be an upload on its way
    clock.advance(seconds=vctx.config["BLOB_GRACE_SECONDS"] + 1)
    assert outputs.collect_unreferenced_blobs() == 1
    assert not storage.path_for(junk).exists() and db.session.get(StoredFile, junk) is None
    assert storage.path_for(kept).exists()
    assert all(storage.path_for(row.sha256).exists() for row in db.session.execute(db.select(StoredFile)).scalars())
