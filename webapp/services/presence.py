"""Presence: what a worker says about itself (hello, heartbeats, speed) and the online intervals behind uptime.

A heartbeat extends the worker's latest PresenceInterval when that interval ended less than
OFFLINE_AFTER_SECONDS ago, and opens a new one otherwise; so an interval is closed simply by going
stale, and uptime is computed from intervals, never from a counter that could drift.
"""

import logging
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import JobType, PresenceInterval, Worker, WorkerState
from . import ServiceError, benchmarks, geo
from .write_behind import WriteBehind

MESSAGE_MAX = 500
COMPLIANCE_STATUSES = ("pass", "warn", "fail")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,31}$")
MAX_SPEED_MBPS = 1_000_000.0
log = logging.getLogger(__name__)


def _offline_after() -> timedelta:
    return timedelta(seconds=int(current_app.config["OFFLINE_AFTER_SECONDS"]))


@dataclass(frozen=True)
class Intervals:
    heartbeat_seconds: int
    poll_seconds: int


def advised_intervals(online: int | None = None) -> Intervals:
    """How often this network's workers should heartbeat, and ask for work while idle.

    Each interval is stretched so that `online` workers send about HEARTBEATS_PER_SECOND heartbeats and
    IDLE_CLAIMS_PER_SECOND idle claims in all: a small network asks every POLL_SECONDS, so a new job
    starts within about a second; on a large one some worker asks every few milliseconds anyway, so
    each may ask rarely. Heartbeats stay at least three to an OFFLINE_AFTER_SECONDS window.
    """
    config = current_app.config
    online = network_size() if online is None else online
    heartbeat_max = max(int(config["HEARTBEAT_SECONDS"]), int(config["OFFLINE_AFTER_SECONDS"]) // 3)
    heartbeat = min(max(math.ceil(online / config["HEARTBEATS_PER_SECOND"]), int(config["HEARTBEAT_SECONDS"])),
                    heartbeat_max)
    poll = min(max(math.ceil(online / config["IDLE_CLAIMS_PER_SECOND"]), int(config["POLL_SECONDS"])),
               int(config["POLL_MAX_SECONDS"]))
    return Intervals(heartbeat, poll)


NETWORK_SIZE_TTL_S = 30.0  # the network grows in minutes; counting it on every claim would cost more than it tells


def network_size(now: datetime | None = None) -> int:
    """Workers online now, counted at most every NETWORK_SIZE_TTL_S per portal process."""
    cache = current_app.extensions.setdefault("pictor_network_size", {})
    clock = time.monotonic()
    if cache.get("until", 0) > clock:
        return cache["online"]
    now = now or utcnow()
    # A connection of its own without the write lock: the session may be between transactions of a POST.
    with db.engine.connect().execution_options(sqlite_immediate=False) as conn:
        online = conn.execute(db.select(db.func.count(Worker.id)).where(
            Worker.last_heartbeat_at >= now - _offline_after(), Worker.deleted_at.is_(None))).scalar_one()
    cache.update(online=online, until=clock + NETWORK_SIZE_TTL_S)
    return online


def _bad(message: str) -> ServiceError:
    return ServiceError("invalid_report", message)


def parse_state(value) -> WorkerState:
    try:
        return WorkerState(value)
    except ValueError:
        raise ServiceError("invalid_state", "'state' must be one of: "
                           + ", ".join(s.value for s in WorkerState) + ".") from None


def parse_message(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad("'message' must be a string.")
    return value.strip()[:MESSAGE_MAX] or None


@dataclass
class Seen:
    """A worker's heartbeats since its row was last written: when first and last seen, and what it said last."""
    first: datetime
    last: datetime
    state: WorkerState
    message: str | None


# The statements that write heartbeats, built once with bind parameters (p_*) and run as executemany:
# the worker's row; its latest interval extended when still open at the first heartbeat; or else a new
# interval from the first heartbeat to the last.
_workers = Worker.__table__.c
_WORKER_SEEN = (db.update(Worker.__table__).where(_workers.id == db.bindparam("p_worker"))
                .values(state=db.bindparam("p_state"), state_message=db.bindparam("p_message"),
                        last_heartbeat_at=db.bindparam("p_last")))
# A batch (another portal process's may be older than a heartbeat written at once) never overwrites a newer one.
_WORKER_SEEN_IF_NEWER = _WORKER_SEEN.where(db.or_(_workers.last_heartbeat_at.is_(None),
                                                  _workers.last_heartbeat_at <= db.bindparam("p_last")))
_intervals = PresenceInterval.__table__.c
_latest = (db.select(_intervals.id).where(_intervals.worker_id == db.bindparam("p_worker"))
           .order_by(_intervals.ended_at.desc()).limit(1).scalar_subquery())
_EXTEND_LATEST = (db.update(PresenceInterval.__table__)
                  .where(_intervals.id == _latest, _intervals.ended_at >= db.bindparam("p_open_since"))
                  .values(ended_at=db.case((_intervals.ended_at < db.bindparam("p_last"), db.bindparam("p_last")),
                                           else_=_intervals.ended_at)))
_OPEN_UNLESS_OPEN = db.insert(PresenceInterval.__table__).from_select(
    ["worker_id", "started_at", "ended_at"],
    db.select(db.bindparam("p_worker", type_=db.Integer), db.bindparam("p_first", type_=_intervals.started_at.type),
              db.bindparam("p_last", type_=_intervals.ended_at.type))
    .where(~db.exists().where(_intervals.worker_id == db.bindparam("p_worker"),
                              _intervals.ended_at >= db.bindparam("p_open_since"))))


def write_heartbeats(seen: dict[int, Seen], worker_rows: bool = True, newer_only: bool = False) -> None:
    """Write heartbeats into the session's transaction, which the caller has begun for writing and commits:
    three statements whatever the number of workers. Worker ids in order, so that two portal processes
    writing at once lock PostgreSQL's rows in the same order. newer_only: a worker row whose last heartbeat
    is later keeps its state (the intervals take the heartbeat all the same)."""
    if not seen:
        return
    offline_after = _offline_after()
    rows = [{"p_worker": worker_id, "p_first": s.first, "p_last": s.last, "p_state": s.state, "p_message": s.message,
             "p_open_since": s.first - offline_after} for worker_id, s in sorted(seen.items())]
    connection = db.session.connection()
    if worker_rows:
        connection.execute(_WORKER_SEEN_IF_NEWER if newer_only else _WORKER_SEEN, rows)
    connection.execute(_EXTEND_LATEST, rows)
    connection.execute(_OPEN_UNLESS_OPEN, rows)


def record_heartbeat(worker: Worker, state: WorkerState | str, message: str | None = None,
                     now: datetime | None = None, commit: bool = True) -> None:
    """The app is alive and in `state`, written now. Any state counts as online time: paused or not, it is connected.

    With commit=False the caller owns the transaction (and must have begun it for writing).
    """
    now = now or utcnow()
    state = parse_state(state)
    message = parse_message(message)
    if commit:
        begin_write_transaction(db.session)
        write_heartbeats({worker.id: Seen(now, now, state, message)})
        db.session.commit()
        return
    worker.state = state
    worker.state_message = message
    worker.last_heartbeat_at = now
    write_heartbeats({worker.id: Seen(now, now, state, message)}, worker_rows=False)


def heartbeat(worker_id: int, state: WorkerState | str, message: str | None = None, now: datetime | None = None,
              known=None) -> None:
    """The worker API's hottest call, without a statement of its own: the heartbeat joins this portal
    process's HeartbeatBatch, written with the others within HEARTBEAT_BATCH_SECONDS. One that changes
    what `known` (the worker's row: state, state_message) says is written at once, since pages, alerts
    and the provider's fleet show it; most heartbeats repeat the last."""
    now = now or utcnow()
    seen = Seen(now, now, parse_state(state), parse_message(message))
    batch = HeartbeatBatch.of(current_app._get_current_object())
    if known is not None and (known.state, known.state_message) != (seen.state, seen.message):
        batch.write_now(worker_id, seen)
    else:
        batch.add(worker_id, seen)


class HeartbeatBatch(WriteBehind):
    """This portal process's heartbeats not yet written, kept per worker and written together.

    10,000 workers heartbeat hundreds of times a second; each taking SQLite's one write lock (or a
    PostgreSQL commit) was most of what a heartbeat cost. Written together every
    HEARTBEAT_BATCH_SECONDS by a thread of the process, they cost three statements a batch. What a crash
    loses is at most that many seconds of online time, which the next heartbeat does not pay for:
    uptime is counted from intervals, so it is under-counted, never over. 0 writes each one at once.
    """
    SETTING = "HEARTBEAT_BATCH_SECONDS"
    WHAT = "heartbeats"

    def merge(self, before: Seen, seen: Seen) -> Seen:
        latest = seen if seen.last >= before.last else before
        return Seen(min(before.first, seen.first), latest.last, latest.state, latest.message)

    def write(self, seen: dict[int, Seen]) -> None:
        write_heartbeats(seen, newer_only=True)


def close_stale_intervals(now: datetime | None = None) -> int:
    """The periodic presence sweep: tidy the last day's intervals and return how many it merged away.

    Intervals close by going stale, so there is nothing to stamp; but two heartbeats racing past a
    stale interval can each open a new one, and this merges such neighbours (gap <= the offline
    threshold) so uptime and "online since" read one continuous stretch.
    """
    now = now or utcnow()
    gap = _offline_after()
    begin_write_transaction(db.session)
    rows = db.session.execute(
        db.select(PresenceInterval).where(PresenceInterval.ended_at >= now - timedelta(days=1))
        .order_by(PresenceInterval.worker_id, PresenceInterval.started_at, PresenceInterval.id)
    ).scalars().all()
    merged = 0
    keep = None
    for interval in rows:
        if keep is not None and keep.worker_id == interval.worker_id and interval.started_at <= keep.ended_at + gap:
            keep.ended_at = max(keep.ended_at, interval.ended_at)
            db.session.delete(interval)
            merged += 1
        else:
            keep = interval
    db.session.commit()
    return merged


def current_uptime_seconds(worker: Worker, now: datetime | None = None) -> int:
    """Continuous online time of the worker's open interval; 0 when it is offline."""
    return current_uptimes([worker.id], now)[worker.id]


def current_uptimes(worker_ids: list[int], now: datetime | None = None) -> dict[int, int]:
    """current_uptime_seconds() for a page of workers, in one query."""
    now = now or utcnow()
    result = dict.fromkeys(worker_ids, 0)
    if not worker_ids:
        return result
    latest_end = {}
    for worker_id, started, ended in db.session.execute(
            db.select(PresenceInterval.worker_id, PresenceInterval.started_at, PresenceInterval.ended_at)
            .where(PresenceInterval.worker_id.in_(worker_ids), PresenceInterval.ended_at >= now - _offline_after())):
        if ended > latest_end.get(worker_id, ended - timedelta(microseconds=1)):  # the open one: latest end
            latest_end[worker_id] = ended
            result[worker_id] = max(0, int((now - started).total_seconds()))
    return result


UPTIME_WINDOW_DAYS = 30


def uptime_window(created_at: datetime | None, now: datetime | None = None, days: int = UPTIME_WINDOW_DAYS) -> str:
    """What uptime_percent's share is of, in words: a worker younger than the window is measured since
    it was created, and saying "over the last 30 days" of a 5-minute-old worker would be wrong."""
    now = now or utcnow()
    if created_at is not None and created_at > now - timedelta(days=days):
        return "since it was created"
    return f"over the last {days} days"


def uptime_percent(worker_ids: list[int], now: datetime | None = None, days: int = UPTIME_WINDOW_DAYS) -> dict[int, float]:
    """Online share of the last `days` days per worker (of its lifetime if younger), in one query.

    Intervals are clipped to the window and overlaps merged; an interval that is still open counts up
    to now. Workers without intervals get 0.0.
    """
    now = now or utcnow()
    result = {worker_id: 0.0 for worker_id in worker_ids}
    if not worker_ids:
        return result
    window_start = now - timedelta(days=days)
    fresh_after = now - _offline_after()
    rows = db.session.execute(
        db.select(PresenceInterval.worker_id, PresenceInterval.started_at, PresenceInterval.ended_at,
                  Worker.created_at)
        .join(Worker, Worker.id == PresenceInterval.worker_id)
        .where(PresenceInterval.worker_id.in_(worker_ids), PresenceInterval.ended_at >= window_start,
               PresenceInterval.started_at <= now)
        .order_by(PresenceInterval.worker_id, PresenceInterval.started_at)
    ).all()
    spans = defaultdict(list)
    starts = {}
    for worker_id, started, ended, created in rows:
        start = max(window_start, created) if created else window_start
        starts[worker_id] = start
        if ended >= fresh_after:
            ended = now
        started, ended = max(started, start), min(ended, now)
        if ended > started:
            spans[worker_id].append((started, ended))
    for worker_id, intervals in spans.items():
        online = 0.0
        current_start, current_end = intervals[0]
        for started, ended in intervals[1:]:
            if started <= current_end:
                current_end = max(current_end, ended)
            else:
                online += (current_end - current_start).total_seconds()
                current_start, current_end = started, ended
        online += (current_end - current_start).total_seconds()
        window = (now - starts[worker_id]).total_seconds()
        result[worker_id] = round(min(100.0, 100.0 * online / window), 2) if window > 0 else 0.0
    return result


# -- hello: the hardware report ---------------------------------------------------------------------

def _string(report: dict, key: str, limit: int) -> str | None:
    value = report.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string.")
    return value.strip()[:limit] or None


def _scalar_map(value, where: str, max_keys: int = 24) -> dict:
    """A flat object of short keys and scalar values (what GPUs and renderers are described with)."""
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object.")
    if len(value) > max_keys:
        raise _bad(f"{where} has more than {max_keys} fields.")
    clean = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 32:
            raise _bad(f"{where} has a field name that is empty or longer than 32 characters.")
        if isinstance(item, str):
            item = item[:256]
        elif isinstance(item, float) and not math.isfinite(item):
            item = None
        elif item is not None and not isinstance(item, (bool, int, float)):
            raise _bad(f"{where}.{key} must be a string, number, boolean or null.")
        clean[key] = item
    return clean


def parse_gpus(value) -> list[dict]:
    if not isinstance(value, list) or len(value) > 16:
        raise _bad("'gpus' must be a list of at most 16 objects.")
    gpus = []
    for i, gpu in enumerate(value):
        gpu = _scalar_map(gpu, f"gpus[{i}]")
        if not isinstance(gpu.get("name"), str) or not gpu["name"].strip():
            raise _bad(f"gpus[{i}] needs a 'name'.")
        gpus.append(gpu)
    return gpus


def parse_renderers(value) -> dict:
    if not isinstance(value, dict) or len(value) > 16:
        raise _bad("'renderers' must be an object of at most 16 renderers.")
    return {str(name)[:32]: _scalar_map(info, f"renderers.{name}") for name, info in value.items()}


def parse_capabilities(value) -> dict:
    """{"job_types": [...], "gpu": bool, "devices": [...]}; job types this portal doesn't know are dropped."""
    if not isinstance(value, dict):
        raise _bad("'capabilities' must be an object with job_types, gpu and devices.")
    job_types = value.get("job_types", [])
    devices = value.get("devices", [])
    gpu = value.get("gpu", False)
    if not isinstance(job_types, list) or not all(isinstance(t, str) for t in job_types):
        raise _bad("'capabilities.job_types' must be a list of strings.")
    if not isinstance(devices, list) or len(devices) > 32 or not all(isinstance(d, str) for d in devices):
        raise _bad("'capabilities.devices' must be a list of at most 32 strings.")
    if not isinstance(gpu, bool):
        raise _bad("'capabilities.gpu' must be true or false.")
    known = {t.value for t in JobType}
    return {"job_types": sorted({t for t in job_types if t in known}), "gpu": gpu,
            "devices": [d[:32] for d in devices]}


SLOT_ID_RE = re.compile(r"^(gpu(1[0-5]|[0-9])|cpu)$")  # the app's names: gpu0 ... gpu15, cpu
MAX_SLOTS = 16
# A GPU slot's kind is its Cycles backend (or plain "gpu"); stored upper-case, as Blender spells them.
SLOT_KINDS = ("CUDA", "OPTIX", "HIP", "ONEAPI", "METAL", "GPU", "CPU")


def parse_slots(value) -> list[dict]:
    """[{"id", "kind", "name", "memory_mb"}]: the devices a worker runs tasks on, one task each at a time.
    The cpu slot is always of kind CPU and a gpu slot never is: the claim keeps GPU-only tasks off it."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SLOTS:
        raise _bad(f"'slots' must be a list of 1 to {MAX_SLOTS} devices.")
    slots, seen = [], set()
    for i, slot in enumerate(value):
        if not isinstance(slot, dict) or not isinstance(slot.get("id"), str) or not SLOT_ID_RE.match(slot["id"]):
            raise _bad(f"slots[{i}].id must be one of gpu0 ... gpu15 or cpu.")
        if slot["id"] in seen:
            raise _bad(f"slots[{i}].id {slot['id']!r} is listed twice.")
        seen.add(slot["id"])
        kind, memory, name = slot.get("kind", "gpu"), slot.get("memory_mb"), slot.get("name")
        kind = kind.upper() if isinstance(kind, str) else kind
        if kind not in SLOT_KINDS or (kind == "CPU") != (slot["id"] == "cpu"):
            raise _bad(f"slots[{i}].kind must be CPU for the cpu slot and one of "
                       f"{', '.join(SLOT_KINDS[:-1])} for a GPU.")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or not 0 <= memory < 2**31):
            raise _bad(f"slots[{i}].memory_mb must be a whole number of megabytes.")
        if name is not None and not isinstance(name, str):
            raise _bad(f"slots[{i}].name must be a string.")
        slots.append({"id": slot["id"], "kind": kind, "name": (name or "")[:128], "memory_mb": memory})
    return slots


def parse_compliance(value) -> list[dict]:
    if not isinstance(value, list) or len(value) > 50:
        raise _bad("'compliance' must be a list of at most 50 checks.")
    checks = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"compliance[{i}] must be an object {{check, status, reason}}.")
        check, status, reason = item.get("check"), item.get("status"), item.get("reason", "")
        if not isinstance(check, str) or not check.strip():
            raise _bad(f"compliance[{i}].check must be a non-empty string.")
        if status not in COMPLIANCE_STATUSES:
            raise _bad(f"compliance[{i}].status must be one of: pass, warn, fail.")
        if reason is not None and not isinstance(reason, str):
            raise _bad(f"compliance[{i}].reason must be a string.")
        checks.append({"check": check.strip()[:64], "status": status, "reason": (reason or "").strip()[:300]})
    return checks


def parse_hello(report: dict) -> dict:
    """Validate a hello report into Worker column values; fields left out stay as they were."""
    fields = {}
    for key, limit in (("os", 128), ("hostname", 128), ("cpu", 128)):
        if key in report:
            fields[key] = _string(report, key, limit)
    if "app_version" in report:
        version = _string(report, "app_version", 32)
        if version is not None and not VERSION_RE.match(version):
            raise _bad("'app_version' must look like 1.2.3.")
        fields["app_version"] = version
    if "ram_mb" in report:
        ram = report["ram_mb"]
        if ram is not None and (isinstance(ram, bool) or not isinstance(ram, int) or not 0 <= ram <= 2**31 - 1):
            raise _bad("'ram_mb' must be a whole number of megabytes.")
        fields["ram_mb"] = ram
    if "gpus" in report:
        fields["gpus"] = parse_gpus(report["gpus"])
        fields["gpu_name"] = fields["gpus"][0]["name"].strip()[:128] if fields["gpus"] else None
    if "renderers" in report:
        fields["renderers"] = parse_renderers(report["renderers"])
    if "capabilities" in report:
        fields["capabilities"] = parse_capabilities(report["capabilities"])
    if "slots" in report:
        fields["slots"] = parse_slots(report["slots"])
    if "compliance" in report:
        fields["compliance"] = parse_compliance(report["compliance"])
    return fields


def record_hello(worker: Worker, report: dict, ip: str | None, now: datetime | None = None) -> Worker:
    """Store what the app reports about its machine, where it connects from, and count it as a heartbeat."""
    now = now or utcnow()
    fields = parse_hello(report)
    state = parse_state(report.get("state") or WorkerState.IDLE.value)
    message = parse_message(report.get("message"))
    country = geo.country_for_ip(ip)
    worker_id = worker.id
    begin_write_transaction(db.session)
    worker = db.session.get(Worker, worker_id)
    slots = fields.pop("slots", None)
    for name, value in fields.items():
        setattr(worker, name, value)
    if slots is not None:  # kept with the capabilities: dispatch reads both on every claim
        worker.capabilities = {**(worker.capabilities or {}), "slots": slots}
    worker.ip_address = (ip or "")[:64] or None
    worker.country = country
    record_heartbeat(worker, state, message, now, commit=False)
    benchmarks.schedule(worker, now)  # a worker without a portal-measured Bench Score gets a run
    db.session.commit()
    return worker


def record_speed(worker: Worker, download_mbps, upload_mbps, now: datetime | None = None) -> None:
    """The app's speed test against the portal, in megabits per second."""
    for name, value in (("download_mbps", download_mbps), ("upload_mbps", upload_mbps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= MAX_SPEED_MBPS:
            raise ServiceError("invalid_speed", f"'{name}' must be a number of Mbit/s from 0 to {MAX_SPEED_MBPS:,.0f}.")
    worker_id = worker.id
    begin_write_transaction(db.session)
    worker = db.session.get(Worker, worker_id)
    worker.download_mbps = float(download_mbps)
    worker.upload_mbps = float(upload_mbps)
    worker.speed_measured_at = now or utcnow()
    db.session.commit()
