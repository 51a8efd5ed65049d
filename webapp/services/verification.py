"""Verified work: which results get a spot check, the verification tasks that do it, and the verdicts.

Every result is checked cheaply at `complete` (services/result_checks.py: exactly the expected files,
each a whole image of the job's format at the scene's size). On top of that a sample of render
results is *replicated*: a verification task (type `verify`) asks a worker of a **different provider
account** to re-render a few small random crops of one of the task's frames with the same scene,
seed and settings, and the portal compares them with the same windows of the delivered frame
(thresholds and their calibration in result_checks). The verifier never sees the delivered frame.

The sampling policy, BOINC's adaptive replication made per worker:
- a worker's first CHECK_FIRST_TASKS completed tasks are always checked;
- after that the chance of a check is 1/n, n = the worker's consecutive passed checks, never below
  CHECK_FLOOR (5%);
- one failed check resets n to 0 (checked every time again) — and suspends the worker.

A verifier can lie too (garbage crops to get an honest rival suspended), so one verifier's "no
match" is not a verdict: it asks a **second opinion** from a third account (neither the checked
provider nor the first verifier) on the same crops. The second verifier decides: a match clears the
result and suspends the first verifier (its check reward reversed); a mismatch fails the result.
A dispute no third account takes up within VERIFY_DISPUTE_SECONDS is decided by the first
verdict (a small network may have only two providers); the money stays pending until then.

Money follows verification (services/ledger.py): a sampled result's reward is held (pending) until
its check passes; an unsampled one settles after VERIFY_SETTLE_SECONDS. A failed check reverses the
reward (the creator is billed nothing for it), requeues the task for another worker, counts as a
failure of that worker and suspends it; every other reward of that worker still pending is
reversed and its task requeued too, because a worker caught once can't be trusted on results
nobody checked yet. Verification tasks are paid like any task (a `check_reward`, the network's
cost, never the creator's).

What a check costs: crops of CROP_FRACTION of a frame each, CROPS_PER_CHECK of them, on the checked
share of tasks; bench/verify_overhead.py measures it with real renders at this policy, and
bench/verify_calibration.py the thresholds.
"""

import dataclasses
import math
import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app

from ..extensions import db
from ..models import (Job, JobInput, JobType, Task, TaskOutput, TaskStatus, Verification, VerificationState,
                      Worker)
from tray_client.runners.verify import TILE_NAME, crop_name

from . import result_checks, storage

CHECK_FIRST_TASKS = 5
CHECK_FLOOR = 0.05
CROPS_PER_CHECK = 2
CROP_FRACTION = 1 / 16  # of the frame's area, per crop
VERIFY_PRIORITY = 100  # above any job's priority (-10..10): a result waits for its check, money too
CHECKABLE_ENGINES = ("CYCLES",)  # see tray_client/runners/verify.py ENGINES for why
TILE_SIZE = 64  # input px a side of an upscale check's tile (plus result_checks.TILE_MARGIN around it)
# Real-ESRGAN on the CPU is bit-identical from run to run; Lanczos is too, but a plain bicubic resize
# passes its tile check half the time (bench/verify_calibration.py): checking it proves little.
UNCHECKED_MODELS = ("lanczos",)
REGION_NAME = "region.png"  # the padded window of the input an upscale check upscales again

_system_random = random.SystemRandom()


def settle_delay() -> timedelta:
    return timedelta(seconds=int(current_app.config["VERIFY_SETTLE_SECONDS"]))


def _rng() -> random.Random:
    """Tests seed the sampling through config (one seeded sequence per app); production draws from the OS."""
    seed = current_app.config.get("VERIFY_SEED")
    if seed is None:
        return _system_random
    return current_app.extensions.setdefault("pictor_verify_rng", random.Random(seed))


# -- the policy ------------------------------------------------------------------------------------

def check_probability(completed_before: int, streak: int) -> float:
    """The chance that a worker's next result is checked, from its history.

    `completed_before`: its job tasks completed before this one; `streak`: its consecutive passed
    checks since its last failed one (all of them if none failed).
    """
    if completed_before < CHECK_FIRST_TASKS or streak <= 0:
        return 1.0
    return max(CHECK_FLOOR, 1.0 / streak)


# check_probability reads no further: a count stops there, so a worker's millionth task costs its first's.
STREAK_THAT_MATTERS = math.ceil(1 / CHECK_FLOOR)


def _count_up_to(limit: int, column, *conditions) -> int:
    """How many rows (of `column`'s table) match, counting no further than `limit`."""
    found = db.select(column).where(*conditions).limit(limit).subquery()
    return db.session.execute(db.select(db.func.count()).select_from(found)).scalar_one()


def _streak(worker_id: int) -> int:
    """Its passed checks since its last failed one, up to STREAK_THAT_MATTERS."""
    last_failed = db.session.execute(
        db.select(db.func.max(Verification.id)).where(
            Verification.worker_id == worker_id, Verification.state == VerificationState.FAILED)).scalar()
    conditions = [Verification.worker_id == worker_id, Verification.state == VerificationState.PASSED]
    if last_failed is not None:
        conditions.append(Verification.id > last_failed)
    return _count_up_to(STREAK_THAT_MATTERS, Verification.id, *conditions)


def _completed_before(worker_id: int, task_id: int) -> int:
    """Its job tasks completed before this one, up to CHECK_FIRST_TASKS."""
    return _count_up_to(CHECK_FIRST_TASKS, Task.id, Task.worker_id == worker_id, Task.status == TaskStatus.COMPLETED,
                        Task.type != JobType.VERIFY, Task.id != task_id)


def record_of(worker: Worker) -> dict:
    """The provider's record on this worker: checks decided, passed, failed, and its current check rate."""
    rows = dict(db.session.execute(
        db.select(Verification.state, db.func.count()).where(Verification.worker_id == worker.id)
        .group_by(Verification.state)).all())
    passed, failed = rows.get(VerificationState.PASSED, 0), rows.get(VerificationState.FAILED, 0)
    completed = db.session.execute(db.select(db.func.count(Task.id)).where(
        Task.worker_id == worker.id, Task.status == TaskStatus.COMPLETED, Task.type != JobType.VERIFY)).scalar_one()
    rate = check_probability(completed, _streak(worker.id))
    return {"checked": passed + failed, "passed": passed, "failed": failed, "check_rate": round(rate, 4)}


# -- issuing checks --------------------------------------------------------------------------------

def _scene(job: Job) -> dict | None:
    return (job.spec or {}).get("scene")


def _format(task: Task) -> str:
    """The image format a render-like task delivers (a Bench Score run: always PNG)."""
    return task.params.get("format", "PNG")


def is_checkable(task: Task) -> bool:
    """Whether a re-run of a sample can match this task's result: a render's crops (Cycles, a scene read
    from the file, no creator render region, no compositor or sequencer), a Bench Score run's crops, or an
    upscale's tile."""
    if task.type == JobType.BENCHMARK:
        return True
    if task.type == JobType.UPSCALE:
        return task.params.get("model") not in UNCHECKED_MODELS
    scene = _scene(task.job)
    return (task.type == JobType.RENDER and scene is not None and scene.get("spot_checkable", False)
            and task.params.get("engine") in CHECKABLE_ENGINES)


def maybe_check(task: Task, worker: Worker, now: datetime) -> datetime | None:
    """Decide at `complete` whether this result is spot-checked. Returns when its reward becomes
    available: None (held for the check just issued) or now + the settling delay."""
    if not is_checkable(task):
        return now + settle_delay()
    # A Bench Score run prices every task after it: it is checked every time.
    chance = 1.0 if task.type == JobType.BENCHMARK else check_probability(
        _completed_before(worker.id, task.id), _streak(worker.id))
    rng = _rng()
    if rng.random() >= chance:
        return now + settle_delay()
    issue_check(task, worker, now, rng)
    return None


def _queue_check_task(beside: Task, params: dict, inputs: list[str], now: datetime) -> Task:
    """A queued verification task in the job of `beside`, ahead of any job's work, open to any device and
    price (the network pays for it)."""
    check = Task(job_id=beside.job_id, seq=beside.seq, type=JobType.VERIFY, params=params, input_names=inputs,
                 status=TaskStatus.QUEUED, priority=VERIFY_PRIORITY, device="any", max_price_micros=None,
                 created_at=now)
    db.session.add(check)
    db.session.flush()
    return check


def issue_check(task: Task, worker: Worker, now: datetime, rng: random.Random) -> Verification:
    """Queue a verification task: CROPS_PER_CHECK random crops of one random frame of a render, or one
    random tile of an upscale's input."""
    if task.type == JobType.UPSCALE:
        return _issue_tile_check(task, worker, now, rng)
    width, height = _frame_size(task)
    crops = [c.border for c in result_checks.choose_crops(width, height, rng, count=CROPS_PER_CHECK,
                                                          fraction=CROP_FRACTION)]
    if task.type == JobType.BENCHMARK:
        params = {"kind": "benchmark", "seed": task.params["seed"], "scene_version": task.params["scene_version"],
                  "crops": crops}
        inputs = []
    else:
        params = {"kind": "render", "blend": task.params["blend"], "frame": rng.choice(task.params["frames"]),
                  "engine": task.params["engine"], "samples": task.params["samples"],
                  "resolution_percent": task.params["resolution_percent"], "format": task.params["format"],
                  "device": "any", "crops": crops}
        inputs = [task.params["blend"]]
    check = _queue_check_task(task, params, inputs, now)
    verification = Verification(task_id=task.id, attempt=task.attempts, worker_id=worker.id,
                                provider_id=worker.owner_id, verify_task_id=check.id, created_at=now)
    db.session.add(verification)
    return verification


def _issue_tile_check(task: Task, worker: Worker, now: datetime, rng: random.Random) -> Verification:
    source = db.session.execute(db.select(JobInput).where(
        JobInput.job_id == task.job_id, JobInput.name == task.params["image"])).scalar_one()
    width, height = result_checks.image_size(storage.path_for(source.sha256))
    tile = result_checks.choose_tile(width, height, rng, task.params["scale"], size=TILE_SIZE)
    with tempfile.TemporaryDirectory() as folder:
        cut = result_checks.cut_tile(storage.path_for(source.sha256), tile, Path(folder) / "tile.png")
        stored = storage.put_bytes(cut.read_bytes())
    db.session.flush()
    params = {"kind": "upscale", "image": REGION_NAME, "scale": task.params["scale"], "model": task.params["model"]}
    check = _queue_check_task(task, params, [REGION_NAME], now)
    verification = Verification(task_id=task.id, attempt=task.attempts, worker_id=worker.id,
                                provider_id=worker.owner_id, verify_task_id=check.id, created_at=now,
                                sample={"tile": dataclasses.asdict(tile)}, input_sha256=stored.sha256)
    db.session.add(verification)
    return verification


# -- judging a verification task's result ----------------------------------------------------------

def dispute_wait() -> timedelta:
    return timedelta(seconds=int(current_app.config["VERIFY_DISPUTE_SECONDS"]))


def ask_second_opinion(first: Verification, now: datetime) -> Verification:
    """A first "no match": keep the result pending and queue the same crops for a third account."""
    first.state, first.reason = VerificationState.PENDING, f"Disputed, a second opinion is asked: {first.reason}"[:500]
    original = first.verify_task
    check = _queue_check_task(original, dict(original.params), list(original.input_names or []), now)
    second = Verification(task_id=first.task_id, attempt=first.attempt, worker_id=first.worker_id,
                          provider_id=first.provider_id, verify_task_id=check.id,
                          other_provider_id=original.worker.owner_id, round=2, created_at=now)
    db.session.add(second)
    return second


def first_round(second: Verification) -> Verification:
    return db.session.execute(db.select(Verification).where(
        Verification.task_id == second.task_id, Verification.attempt == second.attempt,
        Verification.round == 1)).scalar_one()


def open_checks(task: Task) -> list[Verification]:
    """The checks of the task's current result still waiting for a verdict."""
    return list(db.session.execute(db.select(Verification).where(
        Verification.task_id == task.id, Verification.attempt == task.attempts,
        Verification.state == VerificationState.PENDING)).scalars())


def stale_disputes(now: datetime) -> list[Verification]:
    """Second opinions nobody delivered in time (still pending after VERIFY_DISPUTE_SECONDS)."""
    return list(db.session.execute(db.select(Verification).where(
        Verification.round == 2, Verification.state == VerificationState.PENDING,
        Verification.created_at < now - dispute_wait())).scalars())


def verification_of(verify_task: Task) -> Verification:
    return db.session.execute(
        db.select(Verification).where(Verification.verify_task_id == verify_task.id)).scalar_one()


def expected_outputs(verify_task: Task) -> list[str]:
    """The files a verification task delivers (named as the Worker App's verify runner names them)."""
    if verify_task.params["kind"] == "upscale":
        return [TILE_NAME]
    return [crop_name(i, verify_task.params.get("format", "PNG")) for i in range(len(verify_task.params["crops"]))]


def _tile(check: Verification) -> result_checks.Tile:
    return result_checks.Tile(**check.sample["tile"])


def check_verifier_outputs(verify_task: Task, declared: list[dict]) -> None:
    """The verifier's own result must be exactly its crops (or tile), each a whole image at the size it
    was asked for (InvalidOutput otherwise, like any task's result)."""
    result_checks.check_output_names([d["name"] for d in declared], expected_outputs(verify_task))
    if verify_task.params["kind"] == "upscale":
        result_checks.check_output_file(storage.path_for(declared[0]["sha256"]), fmt="PNG",
                                        expected_size=_tile(verification_of(verify_task)).tile_size, name=TILE_NAME)
        return
    checked = db.session.get(Task, verification_of(verify_task).task_id)
    width, height = _frame_size(checked)
    fmt = "OPEN_EXR" if verify_task.params.get("format") == "OPEN_EXR" else "PNG"
    for item, border in zip(sorted(declared, key=lambda d: d["name"]), verify_task.params["crops"]):
        crop = result_checks.crop_from_border(border, width, height)
        result_checks.check_output_file(storage.path_for(item["sha256"]), fmt=fmt, expected_size=crop.size,
                                        name=item["name"])


def _frame_size(task: Task) -> tuple[int, int]:
    return result_checks.expected_render_size(
        result_checks.RenderSettings(**_scene(task.job)["settings"]), task.params.get("resolution_percent", 100))


def judge(verify_task: Task, declared: list[dict], now: datetime) -> Verification:
    """Compare the verifier's crops with the delivered frame and record the verdict (the caller acts
    on a failed one). A check whose task was requeued meanwhile decides nothing."""
    verification = verification_of(verify_task)
    checked = db.session.get(Task, verification.task_id)
    verification.decided_at = now
    if checked.status != TaskStatus.COMPLETED or checked.attempts != verification.attempt:
        verification.state, verification.reason = VerificationState.NONE, "the result was replaced before its check"
        return verification
    if verify_task.params["kind"] == "upscale":
        return _judge_tile(verification, checked, declared[0])
    frame_name = result_checks.render_output_names([verify_task.params.get("frame", 1)], _format(checked))[0]
    delivered = db.session.execute(db.select(TaskOutput).where(
        TaskOutput.task_id == checked.id, TaskOutput.name == frame_name)).scalar_one()
    width, height = _frame_size(checked)
    scores, holds = [], True
    for item, border in zip(sorted(declared, key=lambda d: d["name"]), verify_task.params["crops"]):
        crop = result_checks.crop_from_border(border, width, height)
        try:
            score = result_checks.compare_crop(storage.path_for(delivered.sha256), storage.path_for(item["sha256"]),
                                               crop)
        except result_checks.InvalidOutput:
            holds = False
            scores.append({"psnr": None, "ssim": None})
            continue
        scores.append({"psnr": round(score.psnr, 2), "ssim": round(score.ssim, 4)})
        holds = holds and result_checks.crop_holds(score, _format(checked))
    verification.scores = scores
    if holds:
        verification.state = VerificationState.PASSED
    else:
        verification.state = VerificationState.FAILED
        verification.reason = (f"Frame {verify_task.params.get('frame', 1)} of task {checked.id} does not match a re-render "
                               f"by another provider (crop scores {scores}).")[:500]
    return verification


def _judge_tile(verification: Verification, checked: Task, tile_output: dict) -> Verification:
    name = result_checks.upscale_output_names(checked.params["image"], checked.params["scale"])[0]
    delivered = db.session.execute(db.select(TaskOutput).where(
        TaskOutput.task_id == checked.id, TaskOutput.name == name)).scalar_one()
    try:
        score = result_checks.compare_tile(storage.path_for(delivered.sha256), storage.path_for(tile_output["sha256"]),
                                           _tile(verification))
        holds = result_checks.tile_holds(score)
        verification.scores = [{"psnr": round(score.psnr, 2), "ssim": round(score.ssim, 4)}]
    except result_checks.InvalidOutput:
        holds, verification.scores = False, [{"psnr": None, "ssim": None}]
    verification.state = VerificationState.PASSED if holds else VerificationState.FAILED
    if not holds:
        verification.reason = (f"The upscale of {checked.params['image']} (task {checked.id}) does not match a "
                               f"re-run of one tile by another provider (scores {verification.scores}).")[:500]
    return verification


# -- what creators see -----------------------------------------------------------------------------

def states_of(task_ids: list[int]) -> dict[int, str]:
    """Each task's verification state for its current attempt: none, pending, passed or failed."""
    if not task_ids:
        return {}
    out = {task_id: VerificationState.NONE.value for task_id in task_ids}
    rows = db.session.execute(
        db.select(Verification.task_id, Verification.attempt, Verification.state, Task.attempts)
        .join(Task, Task.id == Verification.task_id).where(Verification.task_id.in_(task_ids))
        .order_by(Verification.id)).all()
    for task_id, attempt, state, current in rows:  # oldest first: the latest that applies wins
        if attempt == current or state == VerificationState.FAILED:
            out[task_id] = state.value
    return out


def scene_of_blend(path) -> dict | None:
    """What submission stores about the scene (job.spec["scene"]); None when the file can't be read."""
    try:
        settings = result_checks.read_render_settings(path)
    except result_checks.UnreadableBlend:
        return None
    fields = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    fields["border"] = list(fields["border"])
    return {"settings": fields, "spot_checkable": settings.spot_checkable}
