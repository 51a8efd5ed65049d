"""Queue status: why a job's queued tasks are not being taken, told with the dispatcher's own rules.

A queued job with nothing running waits for one of four reasons, checked in the order a worker would
be turned away by `dispatch.claim_task`: no online worker offers the job's type (or those that do have
failed it too often: `dispatch.blocklisted`), the job asks for a GPU none of them has, every one of
them prices a bench-hour above the job's maximum (`market.worker_price_micros`), or all that remain are
busy on every device slot that could take it (`dispatch.reported_slots`, `slot_takes_gpu_tasks`). Online is `workers.status_expr`'s online or busy;
demo workers (no app behind them) and workers paused from the portal take nothing, so they don't count.

A page of jobs costs a fixed handful of queries whatever its length or the network's size: the online
workers and their busy slots once, the page's task counts once, and the page's failure
history once; everything else is arithmetic over those rows.
"""

import bisect
import enum
import json
import math
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import aliased

from .. import money
from ..clock import utcnow
from ..extensions import db
from ..models import Job, JobStatus, JobType, Task, TaskEvent, TaskEventKind, TaskStatus, Worker, WorkerStatus
from . import dispatch, market, workers

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
ONLINE = (WorkerStatus.ONLINE.value, WorkerStatus.BUSY.value)
WORK_WORDS = {JobType.RENDER: "rendering", JobType.UPSCALE: "upscaling"}
CENT = money.MICROS // 100


class WaitingReason(str, enum.Enum):
    NO_CAPABLE_WORKER = "no_capable_worker"
    PRICE_TOO_LOW = "price_too_low"
    GPU_REQUIRED = "gpu_required"
    ALL_BUSY = "all_busy"


@dataclass(frozen=True)
class Waiting:
    reason: WaitingReason
    message: str
    workers: int = 0  # how many online workers the reason is about
    price_needed_micros: int | None = None  # price_too_low: the maximum that reaches the cheapest of them

    @property
    def summary(self) -> str:
        """The reason in one short line, for the jobs list (the message says the rest)."""
        if self.reason == WaitingReason.PRICE_TOO_LOW:
            return (f"Waiting: your maximum is too low — {money.usd_exact(self.price_needed_micros)} reaches "
                    f"{_plural(self.workers, 'online worker')}")
        if self.reason == WaitingReason.GPU_REQUIRED:
            return "Waiting: needs a GPU, no online worker offering it has one"
        if self.reason == WaitingReason.ALL_BUSY:
            return "Waiting: the one capable worker is busy" if self.workers == 1 else \
                f"Waiting: all {self.workers} capable workers are busy"
        if self.workers:  # the capable ones are turned away by the job's failure history
            return "Waiting: the capable workers failed its tasks before"
        first = self.message.split(":")[0]
        return f"Waiting: {first[:1].lower()}{first[1:]}"

    def to_json(self) -> dict:
        return {"reason": self.reason.value, "message": self.message}


@dataclass
class Assessment:
    """What the network can do for one job now: why it waits (None: it doesn't), and the online
    workers that could take its tasks (busy or not), for projections."""
    waiting: Waiting | None = None
    able: list["OnlineWorker"] = field(default_factory=list)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class OnlineWorker:
    """What the dispatcher's predicates and the market read of a worker (they take it as a Worker)."""
    id: int
    owner_id: int
    capabilities: dict
    bid_micros: int | None
    bench_score: int | None


@dataclass(frozen=True)
class _Offer:
    """One online worker as a job sees it: its price per bench-hour and whether a slot of it is free for an
    any-device task, and for a GPU-only one."""
    worker: OnlineWorker
    price: int
    free_any: bool
    free_gpu: bool


def _online_workers(now: datetime) -> list[tuple[OnlineWorker, set, str]]:
    """(worker, its busy slots, its capabilities' JSON text) for every worker that can claim now, in two
    queries. The text lets _Network decode and judge each distinct hello once, not once per worker."""
    online = (db.select(Worker.id, Worker.owner_id, db.cast(Worker.capabilities, db.Text), Worker.bid_micros,
                        Worker.bench_score)
              .where(Worker.deleted_at.is_(None), Worker.demo.is_(False), Worker.paused_at.is_(None),
                     Worker.suspended_at.is_(None), workers.status_expr(now).in_(ONLINE)))
    rows = db.session.execute(online).all()
    busy: dict[int, set] = {}
    for worker_id, slot in db.session.execute(
            db.select(Task.worker_id, Task.slot).where(Task.status == TaskStatus.RUNNING,
                                                       Task.worker_id.in_(online.with_only_columns(Worker.id)))):
        busy.setdefault(worker_id, set()).add(slot)
    decoded: dict[str, dict] = {}
    found = []
    for worker_id, owner_id, text, bid, score in rows:
        text = text or "{}"
        if text not in decoded:
            value = json.loads(text)
            decoded[text] = value if isinstance(value, dict) else {}
        found.append((OnlineWorker(worker_id, owner_id, decoded[text], bid, score), busy.get(worker_id, set()), text))
    return found


def _has_free_slot(worker, busy: set, gpu_only: bool) -> bool:
    """A slot the claim would use for this job: not running a task, and one that takes GPU-only tasks if the
    job is (dispatch.slot_takes_gpu_tasks). A running task without a slot fills one too."""
    slots = dispatch.reported_slots(worker)
    free = [s for s in slots if s not in busy]
    if len(busy) >= len(slots) or not free:
        return False
    return any(dispatch.slot_takes_gpu_tasks(worker, s) for s in free) if gpu_only else True


class _Network:
    """The online workers sorted by price per (job type, GPU-only) they can take: each worker's
    predicates are asked once per page, and each job of the page is a lookup and a bisection."""

    def __init__(self, online: list[tuple[OnlineWorker, set, str]], now: datetime):
        average = market.average_bid_micros(now)
        self.offers: dict[tuple[JobType, bool], list[_Offer]] = {}
        judged: dict[tuple, tuple] = {}  # one judgement per distinct hello, price and busy slots
        for worker, busy, text in online:
            key = (text, worker.bid_micros, worker.bench_score, frozenset(busy))
            if key not in judged:
                judged[key] = (market.worker_price_micros(worker, now, average), _has_free_slot(worker, busy, False),
                               _has_free_slot(worker, busy, True), dispatch.claim_types(worker),
                               dispatch.has_gpu(worker))
            price, free_any, free_gpu, types, gpu = judged[key]
            offer = _Offer(worker, price, free_any, free_gpu)
            for job_type in types:
                self.offers.setdefault((job_type, False), []).append(offer)
                if gpu:
                    self.offers.setdefault((job_type, True), []).append(offer)
        for offers in self.offers.values():
            offers.sort(key=lambda o: o.price)
        self.prices = {key: [o.price for o in offers] for key, offers in self.offers.items()}


def _task_counts(job_ids: list[int]) -> dict[int, dict[TaskStatus, int]]:
    counts = {job_id: {} for job_id in job_ids}
    for job_id, status, n in db.session.execute(
            db.select(Task.job_id, Task.status, db.func.count())
            .where(Task.job_id.in_(job_ids), Task.type != JobType.VERIFY,
                   Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]))
            .group_by(Task.job_id, Task.status)):
        counts[job_id][status] = n
    return counts


def _turned_away(job_ids: list[int]) -> dict[int, set[int]]:
    """job id -> the workers the claim refuses its tasks for their failure history: blocklisted on the job
    (the worker's own failures or its account's), or every queued task of the job is one it failed.
    Only accounts with a failure on these jobs are looked at, so the query stays small."""
    if not job_ids:
        return {}
    pairs = (db.select(TaskEvent.job_id.label("job_id"), Worker.id.label("worker_id"),
                       Worker.owner_id.label("owner_id"))
             .join(Worker, Worker.owner_id == TaskEvent.provider_id)
             .where(TaskEvent.job_id.in_(job_ids), TaskEvent.kind == TaskEventKind.FAILED,
                    Worker.deleted_at.is_(None))
             .distinct().subquery())
    queued, failed = aliased(Task), aliased(TaskEvent)
    open_task = db.select(queued.id).where(
        queued.job_id == pairs.c.job_id, queued.status == TaskStatus.QUEUED, queued.type != JobType.VERIFY,
        ~db.select(failed.id).where(failed.task_id == queued.id, failed.worker_id == pairs.c.worker_id,
                                    failed.kind == TaskEventKind.FAILED).exists()).exists()
    rows = db.session.execute(db.select(
        pairs.c.job_id, pairs.c.worker_id, dispatch.blocklisted(pairs.c.worker_id, pairs.c.owner_id, pairs.c.job_id),
        open_task)).all()
    away: dict[int, set[int]] = {}
    for job_id, worker_id, blocked, has_open in rows:
        if blocked or not has_open:
            away.setdefault(job_id, set()).add(worker_id)
    return away


def _classify(job: Job, network: _Network, away: set[int]) -> Assessment:
    """`away`: the workers the job's failure history turns away (_turned_away)."""
    work = WORK_WORDS.get(job.type, job.type.value)
    typed = network.offers.get((job.type, False), [])
    if not typed:
        return Assessment(Waiting(WaitingReason.NO_CAPABLE_WORKER,
                                  f"No online worker offers {work} right now: the job starts when one connects."))
    gpu_only = job.device == "gpu"
    key = (job.type, gpu_only)
    gpu_ok = network.offers.get(key, [])
    if not gpu_ok:
        return Assessment(Waiting(
            WaitingReason.GPU_REQUIRED,
            f"This job asks for a GPU, and none of the {_plural(len(typed), 'online worker')} offering {work} has "
            "one right now: it starts when a GPU worker connects (submit it again with Device “any” to reach "
            "them).", len(typed)))
    # The claim's price rule (dispatch._claim_statement): a maximum at or over the worker's price, NULL: any.
    reach = len(gpu_ok) if job.max_price_micros is None else bisect.bisect_right(network.prices[key], job.max_price_micros)
    if not reach:
        needed = math.ceil(gpu_ok[0].price / CENT) * CENT  # the cheapest, in cents that really reach it
        return Assessment(Waiting(
            WaitingReason.PRICE_TOO_LOW,
            f"{_plural(len(gpu_ok), 'online worker')} could run this, but "
            f"{'its price is' if len(gpu_ok) == 1 else 'their price is'} above your maximum of "
            f"{money.usd_exact(job.max_price_micros)} per bench-hour — raise it to {money.usd_exact(needed)} "
            f"to reach {'it' if len(gpu_ok) == 1 else 'them'}.", len(gpu_ok), needed))
    able = [o for o in gpu_ok[:reach] if o.worker.id not in away] if away else gpu_ok[:reach]
    if not able:
        return Assessment(Waiting(
            WaitingReason.NO_CAPABLE_WORKER,
            f"The {_plural(reach, 'online worker')} that could run this failed its tasks before and won't "
            "be given them again: the job starts when another worker connects.", reach))
    workers_able = [o.worker for o in able]
    if not any(o.free_gpu if gpu_only else o.free_any for o in able):
        return Assessment(Waiting(
            WaitingReason.ALL_BUSY,
            ("The one online worker that could run this is busy with another task"
             if len(able) == 1 else f"All {len(able)} online workers that could run this are busy with other tasks")
            + ": yours start as soon as one is free (higher-priority and older jobs go first).", len(able)),
            workers_able)
    return Assessment(None, workers_able)


def assess_jobs(jobs: list[Job], now: datetime | None = None) -> dict[int, Assessment]:
    """An Assessment per job; its waiting is None unless the job is queued or running with tasks queued,
    none running, not paused at its budget (the page says that itself) and not demo data."""
    now = now or utcnow()
    result = {job.id: Assessment() for job in jobs}
    candidates = [job for job in jobs if job.status in ACTIVE and not job.demo]
    if not candidates:
        return result
    network = _Network(_online_workers(now), now)
    counts = _task_counts([job.id for job in candidates])
    turned_away = _turned_away([job.id for job in candidates])
    for job in candidates:
        assessment = _classify(job, network, turned_away.get(job.id, set()))
        job_counts = counts[job.id]
        if job_counts.get(TaskStatus.RUNNING) or not job_counts.get(TaskStatus.QUEUED) or job.paused_at:
            assessment.waiting = None
        result[job.id] = assessment
    return result


def waiting_for_jobs(jobs: list[Job], now: datetime | None = None) -> dict[int, Waiting | None]:
    """Why each job waits (None where it doesn't), for a page of jobs."""
    return {job_id: a.waiting for job_id, a in assess_jobs(jobs, now).items()}


def waiting_json(waiting: Waiting | None) -> dict | None:
    return None if waiting is None else waiting.to_json()
