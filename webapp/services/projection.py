"""Projection: what a job will cost in all and when it will finish, from work the portal measured.

Once tasks of the job have completed, the figures are the job's own: the cost is `jobs.cost_summary`'s
estimate (the mean billed task times the tasks left, plus the spend), and the finish time is the work
left — the completed tasks' median compute time, in bench-seconds per frame (seconds x Bench Score /
1000, the unit prices are in) — divided by the speed of the workers on it now. Before any has
completed, a range: the network's completed tasks of the last week that resemble the job (same type
and engine or model), per unit of work (frames x samples x pixels for a render), their quartiles
applied to this job's settings. Durations are the portal's own observation of each task, never a
worker's claim. A budget bounds the cost: a job that would spend more pauses at its budget, so no
finish time is promised for it.
"""

import statistics
from datetime import datetime, timedelta
from decimal import Decimal

from .. import money
from ..clock import utcnow
from ..extensions import db
from ..models import Job, JobStatus, JobType, Task, TaskStatus
from . import market, queue_status

NETWORK_WINDOW = timedelta(days=7)
NETWORK_SAMPLE = 500
MIN_SIMILAR = 3  # fewer similar tasks than this make no range worth showing
DEFAULT_PIXELS = 1920 * 1080  # a scene whose resolution the portal could not read
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


def _units(params: dict) -> int:
    return market._units(params or {})  # frames in a task: the same count billing bounds use


def _work_weight(spec: dict, params: dict) -> float:
    """How much work one unit (a frame, an image) of a task is, relative to others of its kind: for a
    Cycles render samples x pixels, for other renders pixels, for an upscale the scale squared."""
    spec, params = spec or {}, params or {}
    if "frames" in params:
        settings = (spec.get("scene") or {}).get("settings") or {}
        width, height = settings.get("resolution_x"), settings.get("resolution_y")
        base = width * height if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0 \
            else DEFAULT_PIXELS
        pixels = base * (int(params.get("resolution_percent") or 100) / 100) ** 2
        samples = int(params.get("samples") or 1) if params.get("engine") == "CYCLES" else 1
        return max(1.0, pixels * samples)
    return float(int(params.get("scale") or 1) ** 2)


def _similar(reference: dict, params: dict) -> bool:
    """Whether a task's work is like `reference`'s (a task of the job): the same engine, or model and scale."""
    keys = ("engine",) if "frames" in reference else ("model", "scale")
    return ("frames" in reference) == ("frames" in params) and all(params.get(k) == reference.get(k) for k in keys)


def _bench_seconds(seconds: float, bench_score: int | None) -> float:
    return float(seconds) * (bench_score or market.UNBENCHED_SCORE) / 1000


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _cost_of(bench_seconds: float, price_micros: int) -> int:
    return int(Decimal(repr(bench_seconds)) / 3600 * price_micros)


def _active_tasks(job: Job) -> list[tuple[TaskStatus, dict, float, int | None]]:
    return [tuple(row) for row in db.session.execute(
        db.select(Task.status, Task.params, Task.progress, Task.bench_score)
        .where(Task.job_id == job.id, Task.type != JobType.VERIFY,
               Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING])))]


def _speed(running: list, able: list) -> float:
    """Bench-seconds per second: the workers on the job now (one per running task), else the online
    workers that could take it, as many as it has tasks left."""
    if running:
        return sum((score or market.UNBENCHED_SCORE) / 1000 for _, _, _, score in running)
    return sum((w.bench_score or market.UNBENCHED_SCORE) / 1000 for w in able)


def _empty(explanation: str, basis: str | None = None) -> dict:
    return {"basis": basis, "cost_micros": None, "cost_low_micros": None, "cost_high_micros": None,
            "finish_at": None, "finish_low": None, "finish_high": None, "over_budget": False,
            "explanation": explanation}


def _budgeted(result: dict, job: Job) -> dict:
    """Keep every projected cost within the job's budget; a job that would pass it pauses there."""
    if job.budget_micros is None:
        return result
    over = [result[key] for key in ("cost_micros", "cost_high_micros") if result[key] is not None]
    if over and max(over) > job.budget_micros:
        result["over_budget"] = True
        result["explanation"] += (f" That is more than its budget of {money.usd(job.budget_micros)}: it pauses when "
                                  "its spend reaches the budget, so no finish time is promised — raise the budget "
                                  "to let it finish.")
        result["finish_at"] = result["finish_low"] = result["finish_high"] = None
    for key in ("cost_micros", "cost_low_micros", "cost_high_micros"):
        if result[key] is not None:
            result[key] = min(result[key], job.budget_micros)
    return result


def _from_the_job(job: Job, now: datetime, costs: dict, done: list, active: list) -> dict:
    per_unit = sorted(_bench_seconds(s, score) / _units(params) for s, score, params in done)
    median = statistics.median(per_unit)
    running = [row for row in active if row[0] == TaskStatus.RUNNING]
    def left(row) -> float:  # bench-seconds of work a task still has
        done_share = min(1.0, row[2] or 0.0) if row[0] == TaskStatus.RUNNING else 0.0
        return _units(row[1]) * median * (1 - done_share)
    unit = "frame" if job.type == JobType.RENDER else "image"
    result = _empty(f"From this job's {len(done)} completed task(s): {median:,.0f} bench-seconds per {unit} "
                    "(median) at what they cost.", "job")
    result["cost_micros"] = costs["estimate_micros"]
    speed = _speed(running, [])
    if not active:
        result["finish_at"] = now
    elif speed > 0:
        # The work left over the speed on it, but never sooner than its longest running task can end.
        longest = max((left(row) / ((row[3] or market.UNBENCHED_SCORE) / 1000) for row in running), default=0.0)
        result["finish_at"] = now + timedelta(seconds=max(sum(left(row) for row in active) / speed, longest))
        result["explanation"] += f" The finish assumes the {len(running)} worker slot(s) on it now keep their pace."
    else:
        result["explanation"] += " No worker is on it right now, so there is no finish time until one takes it."
    return _budgeted(result, job)


def _from_the_network(job: Job, now: datetime, active: list, able: list) -> dict:
    rows = db.session.execute(
        db.select(Task.compute_seconds, Task.bench_score, Task.params, Job.spec)
        .join(Job, Job.id == Task.job_id)
        .where(Task.type == job.type, Task.status == TaskStatus.COMPLETED, Task.compute_seconds > 0,
               Task.finished_at >= now - NETWORK_WINDOW, Task.job_id != job.id, Job.demo.is_(False))
        .order_by(Task.finished_at.desc()).limit(NETWORK_SAMPLE)).all()
    reference = active[0][1] if active else {}
    per_weight = [_bench_seconds(s, score) / _units(params) / _work_weight(spec, params)
                  for s, score, params, spec in rows if _similar(reference, params or {})]
    if len(per_weight) < MIN_SIMILAR:
        return _empty("No estimate yet: the network has completed too few similar tasks this week to go by. "
                      "The first completed task of this job gives one.")
    low, mid, high = _quartiles(sorted(per_weight))
    work = sum(_units(params) * _work_weight(job.spec, params) for _, params, _, _ in active)
    result = _empty(f"A range until the first task completes, from {len(per_weight)} similar task(s) the network "
                    "completed this week, scaled to this job's settings.", "network")
    average = market.average_bid_micros(now)
    prices = sorted(market.worker_price_micros(w, now, average) for w in able)
    cap = job.max_price_micros if job.max_price_micros is not None else max(prices or [average])
    cheapest, typical = (prices[0], prices[len(prices) // 2]) if prices else (min(cap, average), min(cap, average))
    result["cost_low_micros"] = _cost_of(work * low, min(cap, cheapest))
    result["cost_micros"] = _cost_of(work * mid, min(cap, typical))
    result["cost_high_micros"] = _cost_of(work * high, cap)
    running = [row for row in active if row[0] == TaskStatus.RUNNING]
    fastest = sorted(able, key=lambda w: -(w.bench_score or market.UNBENCHED_SCORE))[:max(1, len(active))]
    speed = _speed(running, fastest)
    if speed > 0:
        result["finish_low"] = now + timedelta(seconds=work * low / speed)
        result["finish_at"] = now + timedelta(seconds=work * mid / speed)
        result["finish_high"] = now + timedelta(seconds=work * high / speed)
    else:
        result["explanation"] += " No online worker can take it now, so there is no finish time yet."
    return _budgeted(result, job)


def project(job: Job, costs: dict, now: datetime | None = None,
            assessment: "queue_status.Assessment | None" = None) -> dict:
    """The job's projection (see the module docstring); `costs` is jobs.cost_summary(job). Money in
    micro-USD, times as UTC datetimes (pages show them in the viewer's zone)."""
    now = now or utcnow()
    if job.status in FINISHED:
        result = _empty("The job has ended: what it cost and when it finished.", "final")
        result["cost_micros"], result["finish_at"] = costs["spent_micros"], job.finished_at
        return result
    done = db.session.execute(
        db.select(Task.compute_seconds, Task.bench_score, Task.params)
        .where(Task.job_id == job.id, Task.type != JobType.VERIFY, Task.status == TaskStatus.COMPLETED,
               Task.compute_seconds > 0)).all()
    active = _active_tasks(job)
    if done and costs["estimate_micros"] is not None:
        return _from_the_job(job, now, costs, done, active)
    if assessment is None:
        assessment = queue_status.assess_jobs([job], now)[job.id]
    return _from_the_network(job, now, active, assessment.able)


def to_json(result: dict) -> dict:
    """The Job JSON's `projection`: money as decimal strings, times in ISO 8601 (UTC)."""
    def usd(key):
        return None if result[key] is None else money.fmt(result[key])
    return {"basis": result["basis"], "cost": usd("cost_micros"), "cost_low": usd("cost_low_micros"),
            "cost_high": usd("cost_high_micros"), "finish_at": _iso(result["finish_at"]),
            "finish_low": _iso(result["finish_low"]), "finish_high": _iso(result["finish_high"]),
            "over_budget": result["over_budget"], "explanation": result["explanation"]}
