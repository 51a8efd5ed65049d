"""The market: bids, bench scores, price per bench-hour, and what a worker can expect to earn.

The average bid (what workers without a custom bid charge, and what a job's default maximum price is
derived from) must not be movable by one provider. It is computed once per UTC day by
`compute_market_day` (a periodic job): the median over provider *accounts* of each account's median
custom bid, counting only workers whose work was verified in the last 24 hours (a task reward that
stands: not reversed, from a worker that is not suspended) — so a thousand throwaway workers of one
account are one voice, and workers that never delivered have none. The result may move at most
DAILY_MOVE (25%) from the previous day's average, so even a majority can only walk it slowly; with no
history it starts from DEFAULT_BID.

Bench Score = 1000 x (reference time / this worker's time) on the fixed benchmark scene, so a worker
as fast as the reference machine scores 1000. Price per bench-hour = bid / (bench score / 1000): what
an hour of reference-machine work costs on this worker. A job's maximum price per bench-hour decides
which workers are offered its tasks, which is why a lower bid attracts more jobs.
"""

import functools
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import BigInteger
from sqlalchemy.orm import aliased

from .. import money
from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import LedgerEntry, LedgerKind, MarketDay, PresenceInterval, Task, TaskStatus, Worker
from . import ServiceError

UNBENCHED_SCORE = 1000  # a worker that never ran the benchmark is priced as the reference machine
MAX_BID_MICROS = 100 * money.MICROS  # USD 100 per hour
MAX_BENCH_SCORE = 10_000_000
NETWORK_WINDOW = timedelta(hours=24)
PRICE_MARGIN = (5, 4)  # a job's default max price = average bid x 1.25, so ordinary workers qualify

WALLET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")
COIN_RE = re.compile(r"^[A-Za-z0-9]{1,16}$")
POOL_RE = re.compile(r"^([a-z][a-z0-9+.-]{0,31}://)?[A-Za-z0-9.-]{1,200}:\d{1,5}(/[^\s]*)?$")
MINING_KEYS = ("pool", "coin", "wallet", "extra", "enabled")
MINING_DEFAULTS = {"pool": "", "coin": "", "wallet": "", "extra": "", "enabled": False}


DAILY_MOVE = (4, 5)  # a day's average stays within 4/5 .. 5/4 of the day before
DEFAULT_MAX_PRICE_CAP = (4, 1)  # a job's default max price is at most 4 x DEFAULT_BID per bench-hour


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle] + 1) // 2


def _default_bid() -> int:
    return money.to_micros(current_app.config["DEFAULT_BID"])


def average_bid_micros(now: datetime | None = None) -> int:
    """The network's average bid: the latest daily figure up to `now`'s day, or DEFAULT_BID before the first."""
    day = (now or utcnow()).strftime("%Y-%m-%d")
    value = db.session.execute(_AVERAGE_BID, {"day": day}).scalar()
    return int(value) if value is not None else _default_bid()


# Built once: every claim by a worker without a custom bid asks it.
_AVERAGE_BID = (db.select(MarketDay.average_bid_micros).where(MarketDay.day <= db.bindparam("day"))
                .order_by(MarketDay.day.desc()).limit(1))


def verified_bids_by_account(now: datetime) -> dict[int, list[int]]:
    """owner id -> the custom bids of its workers with verified work in the last 24 hours."""
    reversal = aliased(LedgerEntry)
    verified = db.select(LedgerEntry.worker_id).where(
        LedgerEntry.kind == LedgerKind.TASK_REWARD, LedgerEntry.created_at >= now - NETWORK_WINDOW,
        ~db.select(reversal.id).where(reversal.reverses_id == LedgerEntry.id).exists())
    rows = db.session.execute(db.select(Worker.owner_id, Worker.bid_micros).where(
        Worker.id.in_(verified), Worker.bid_micros.is_not(None), Worker.deleted_at.is_(None),
        Worker.suspended_at.is_(None))).all()
    accounts: dict[int, list[int]] = {}
    for owner_id, bid in rows:
        accounts.setdefault(owner_id, []).append(int(bid))
    return accounts


def compute_market_day(now: datetime | None = None) -> int:
    """Compute (once) today's average bid from verified bids, one voice per account, within DAILY_MOVE of
    the previous day's; returns it. Run by the scheduler; safe to call again (the first row of a day stays)."""
    now = now or utcnow()
    day = now.strftime("%Y-%m-%d")
    begin_write_transaction(db.session)
    existing = db.session.get(MarketDay, day)
    if existing is not None:
        db.session.commit()
        return existing.average_bid_micros
    previous = db.session.execute(db.select(MarketDay.average_bid_micros).where(MarketDay.day < day)
                                  .order_by(MarketDay.day.desc()).limit(1)).scalar()
    anchor = int(previous) if previous is not None else _default_bid()
    accounts = verified_bids_by_account(now)
    raw = _median([_median(bids) for bids in accounts.values()]) if accounts else None
    low, high = DAILY_MOVE
    average = anchor if raw is None else min(max(raw, anchor * low // high), anchor * high // low)
    db.session.add(MarketDay(day=day, average_bid_micros=average, raw_bid_micros=raw, accounts=len(accounts),
                             computed_at=now))
    db.session.commit()
    return average


def effective_bid_micros(worker: Worker, now: datetime | None = None, average: int | None = None) -> int:
    """The worker's custom bid, or the network average when it has none (pass `average` if known)."""
    if worker.bid_micros is not None:
        return worker.bid_micros
    return average if average is not None else average_bid_micros(now)


def price_per_bench_hour_micros(bid_micros: int, bench_score: int | None) -> int | None:
    """bid / (bench score / 1000), rounded half up; None when the score is unknown or not positive.

    Dispatch prices an unbenchmarked worker with UNBENCHED_SCORE; pages show None as "run the benchmark".
    """
    if bench_score is None or bench_score <= 0:
        return None
    return (2 * bid_micros * 1000 + bench_score) // (2 * bench_score)


def default_max_price_micros(now: datetime | None = None) -> int:
    """A job's default maximum price per bench-hour: a margin over the network's average bid (at bench
    score 1000, price per bench-hour == bid), capped at DEFAULT_MAX_PRICE_CAP x DEFAULT_BID."""
    num, den = PRICE_MARGIN
    cap_num, cap_den = DEFAULT_MAX_PRICE_CAP
    return min(average_bid_micros(now) * num // den, _default_bid() * cap_num // cap_den)


def worker_price_micros(worker: Worker, now: datetime | None = None, average: int | None = None) -> int:
    """The worker's price per bench-hour, the one dispatch compares with a job's maximum (an unbenched
    worker is priced as the reference machine)."""
    return price_per_bench_hour_micros(effective_bid_micros(worker, now, average),
                                       worker.bench_score or UNBENCHED_SCORE)


# Billable time the worker can't stretch: a task bills at most what its job's verified peers suggest it
# should take on this worker (their bench-seconds per frame, scaled by this worker's score), times a
# tolerance for frames and machines that differ, and never more than a hard cap.
BILLABLE_TOLERANCE = 2.0
MIN_PEERS = 3
HARD_CAP_SECONDS = 24 * 3600
PEER_SAMPLE = 200


def _units(params: dict) -> int:
    """How much work a task is, in frames (an upscale or a check is one unit)."""
    return max(1, len(params.get("frames") or [1]))


def _frames_sql(dialect: str):
    """SQL for the length of a task's params.frames (NULL when it has none): _units without decoding params."""
    if dialect == "postgresql":
        return db.func.json_array_length(Task.params.op("->")("frames"))
    return db.func.json_array_length(Task.params, "$.frames")


@functools.cache
def _peers_statement(dialect: str):
    """The job's latest verified peers of a task (built once: every complete asks it)."""
    reversal = aliased(LedgerEntry)
    standing = db.select(LedgerEntry.id).where(
        LedgerEntry.task_id == Task.id, LedgerEntry.attempt == Task.attempts, LedgerEntry.kind == LedgerKind.TASK_REWARD,
        ~db.select(reversal.id).where(reversal.reverses_id == LedgerEntry.id).exists())
    return (db.select(Task.compute_seconds, Task.bench_score, _frames_sql(dialect)).where(
        Task.job_id == db.bindparam("job_id"), Task.type == db.bindparam("type"), Task.status == TaskStatus.COMPLETED,
        Task.id != db.bindparam("task_id"), Task.worker_id != db.bindparam("worker_id"),
        Task.compute_seconds.is_not(None), standing.exists())
        .order_by(Task.finished_at.desc()).limit(PEER_SAMPLE))


def billable_seconds_bound(task: Task) -> float:
    """The most compute seconds `task` may bill (see BILLABLE_TOLERANCE)."""
    # 0 for a task not yet stored, or one without a worker: no row has that id (a NULL would match nothing).
    peers = db.session.execute(_peers_statement(db.session.get_bind().dialect.name), {
        "job_id": task.job_id, "type": task.type, "task_id": task.id or 0, "worker_id": task.worker_id or 0}).all()
    if len(peers) < MIN_PEERS:
        return float(HARD_CAP_SECONDS)
    per_unit = sorted(seconds * (score or UNBENCHED_SCORE) / 1000 / max(1, frames or 1) for seconds, score, frames in peers)
    median = per_unit[len(per_unit) // 2]
    expected = median * _units(task.params) * 1000 / (task.bench_score or UNBENCHED_SCORE)
    return min(float(HARD_CAP_SECONDS), expected * BILLABLE_TOLERANCE)


def bench_hours(seconds: float, bench_score: int | None) -> Decimal:
    """Compute time as hours of the reference machine's work: hours x score / 1000."""
    return Decimal(repr(float(seconds))) / 3600 * Decimal(bench_score or UNBENCHED_SCORE) / 1000


def price_cap_micros(task: Task, seconds: float) -> int:
    """The creator's promise: a task never bills more than its max price per bench-hour x the bench-hours
    its work represents (no cap for the network's own work, which has no max price)."""
    if task.max_price_micros is None:
        return 2**62
    return int(Decimal(task.max_price_micros) * bench_hours(seconds, task.bench_score))


def estimated_earning_per_hour(worker: Worker, now: datetime | None = None) -> dict:
    """bid x expected utilisation, the utilisation measured over the last 24 hours on the workers whose
    price per bench-hour is at or under this worker's: their computed time over their online time."""
    now = now or utcnow()
    since = now - NETWORK_WINDOW
    average = average_bid_micros(now)
    bid = effective_bid_micros(worker, now, average)
    price = worker_price_micros(worker, now, average)
    # BIGINT literals: $100/h x a score overflows PostgreSQL's 32-bit integer.
    peer_price_ok = (db.func.coalesce(Worker.bid_micros, db.literal(average, BigInteger)) * 1000
                     <= db.literal(price, BigInteger) * db.func.coalesce(Worker.bench_score, UNBENCHED_SCORE))
    peers = db.select(Worker.id).where(Worker.deleted_at.is_(None), Worker.last_heartbeat_at >= since,
                                       peer_price_ok)
    peer_count = db.session.execute(db.select(db.func.count()).select_from(peers.subquery())).scalar_one()
    busy = float(db.session.execute(
        db.select(db.func.coalesce(db.func.sum(Task.compute_seconds), 0.0)).where(
            Task.status == TaskStatus.COMPLETED, Task.finished_at >= since, Task.worker_id.in_(peers))
    ).scalar_one() or 0.0)
    online = 0.0
    for started, ended in db.session.execute(
            db.select(PresenceInterval.started_at, PresenceInterval.ended_at).where(
                PresenceInterval.worker_id.in_(peers), PresenceInterval.ended_at >= since)):
        online += max(0.0, (min(ended, now) - max(started, since)).total_seconds())
    utilisation = min(1.0, busy / online) if online > 0 else 0.0
    # Utilisation is a ratio of durations, not money; the product is rounded once, to whole micro-USD.
    micros = int(Decimal(bid) * Decimal(str(round(utilisation, 6))))
    if online > 0:
        explanation = (f"Your bid {money.usd(bid)}/h x {utilisation:.0%} expected utilisation: in the last "
                       f"24 h, the {peer_count} worker(s) at or under your price per bench-hour "
                       f"({money.usd(price, 3)}) computed {busy / 3600:.1f} h of {online / 3600:.1f} h online.")
    else:
        explanation = (f"Your bid {money.usd(bid)}/h x 0% expected utilisation: no worker at or under your "
                       f"price per bench-hour ({money.usd(price, 3)}) was online in the last 24 h to measure "
                       "demand from. A lower bid or a higher Bench Score lowers your price.")
    return {"micros": micros, "utilisation": round(utilisation, 4), "explanation": explanation}


# -- settings the app syncs (Settings tab) ---------------------------------------------------------

def parse_bid(value) -> int | None:
    """A bid from the app or a form: a decimal string in USD per hour, 0 < bid <= 100; None clears it."""
    if value is None:
        return None
    if isinstance(value, (float, bool)) or not isinstance(value, (str, int)):
        raise ServiceError("invalid_bid", "Send the bid as a decimal string in USD per hour, e.g. \"0.45\".")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ServiceError("invalid_bid", f"{value!r} is not a number: send e.g. \"0.45\".") from None
    if not amount.is_finite() or amount.as_tuple().exponent < -6:
        raise ServiceError("invalid_bid", "Use a plain amount with at most 6 decimals, e.g. \"0.45\".")
    micros = money.to_micros(amount)
    if not 0 < micros <= MAX_BID_MICROS:
        raise ServiceError("invalid_bid", "The bid must be more than 0 and at most 100 USD per hour.")
    return micros


def _text(value, field: str, limit: int, pattern: re.Pattern | None = None) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ServiceError("invalid_settings", f"'{field}' must be a string.")
    value = value.strip()
    if len(value) > limit:
        raise ServiceError("invalid_settings", f"'{field}' is longer than {limit} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ServiceError("invalid_settings", f"'{field}' must be one line of printable text.")
    if value and pattern is not None and not pattern.match(value):
        raise ServiceError("invalid_settings", f"'{field}' is not in the expected format.")
    return value


def parse_wallet(value) -> str | None:
    return _text(value, "wallet_address", 128, WALLET_RE) or None


def parse_mining_config(value, current: dict | None = None) -> dict:
    """{pool, coin, wallet, extra, enabled}; keys left out keep their current value."""
    if not isinstance(value, dict):
        raise ServiceError("invalid_settings", "'mining_config' must be an object with pool, coin, wallet, "
                                               "extra and enabled.")
    unknown = sorted(set(value) - set(MINING_KEYS))
    if unknown:
        raise ServiceError("invalid_settings", f"Unknown mining_config field(s): {', '.join(unknown)}.")
    config = dict(MINING_DEFAULTS)
    config.update({k: v for k, v in (current or {}).items() if k in MINING_KEYS})
    if "pool" in value:
        config["pool"] = _text(value["pool"], "mining_config.pool", 255, POOL_RE)
    if "coin" in value:
        config["coin"] = _text(value["coin"], "mining_config.coin", 16, COIN_RE).upper()
    if "wallet" in value:
        config["wallet"] = _text(value["wallet"], "mining_config.wallet", 128, WALLET_RE)
    if "extra" in value:
        config["extra"] = _text(value["extra"], "mining_config.extra", 500)
    if "enabled" in value:
        if not isinstance(value["enabled"], bool):
            raise ServiceError("invalid_settings", "'mining_config.enabled' must be true or false.")
        config["enabled"] = value["enabled"]
    if config["enabled"] and not (config["pool"] and config["coin"] and config["wallet"]):
        raise ServiceError("invalid_settings", "To enable mining, set the pool, the coin and the wallet.")
    return config


SETTINGS_KEYS = ("bid", "wallet_address", "mining_config")


def update_settings(worker: Worker, data: dict) -> None:
    """Apply {bid, wallet_address, mining_config} (any subset); all are validated before any is stored."""
    unknown = sorted(set(data) - set(SETTINGS_KEYS))
    if unknown:
        raise ServiceError("invalid_settings", f"Unknown setting(s): {', '.join(unknown)}; "
                                               f"send any of {', '.join(SETTINGS_KEYS)}.")
    changes = {}
    if "bid" in data:
        changes["bid_micros"] = parse_bid(data["bid"])
    if "wallet_address" in data:
        changes["wallet_address"] = parse_wallet(data["wallet_address"])
    if "mining_config" in data:
        changes["mining_config"] = parse_mining_config(data["mining_config"], worker.mining_config)
    worker_id = worker.id
    begin_write_transaction(db.session)
    worker = db.session.get(Worker, worker_id)
    if "mining_config" in changes:
        # Mining reports may cover no time before mining was switched on (services/mining.py).
        was_on, on = bool((worker.mining_config or {}).get("enabled")), changes["mining_config"]["enabled"]
        if on and not was_on:
            changes["mining_enabled_at"] = utcnow()
        elif not on:
            changes["mining_enabled_at"] = None
    for name, value in changes.items():
        setattr(worker, name, value)
    db.session.commit()


def settings_of(worker: Worker, now: datetime | None = None) -> dict:
    """The Settings tab's numbers, money as decimal strings."""
    now = now or utcnow()
    average = average_bid_micros(now)
    bid = effective_bid_micros(worker, now, average)
    estimate = estimated_earning_per_hour(worker, now)
    # Shown only once the worker has a score: "run the benchmark" says more than a reference-machine guess.
    price = worker_price_micros(worker, now, average) if worker.bench_score else None
    return {
        "name": worker.name,  # the app's window shows it (renamed on the portal, seen at the next poll)
        "bid": money.fmt(bid),
        "custom_bid": money.fmt(worker.bid_micros) if worker.bid_micros is not None else None,
        "average_bid": money.fmt(average),
        "bench_score": worker.bench_score,
        "bench_score_reported": worker.bench_score_reported,
        "price_per_bench_hour": money.fmt(price) if price is not None else None,
        "wallet_address": worker.wallet_address,
        "mining_config": {**MINING_DEFAULTS, **{k: v for k, v in (worker.mining_config or {}).items()
                                                 if k in MINING_KEYS}},
        "estimated_earning_per_hour": {"amount": money.fmt(estimate["micros"]),
                                       "utilisation": estimate["utilisation"],
                                       "explanation": estimate["explanation"]},
        "mining_estimate": _mining_estimate(worker, now),
    }


def _mining_estimate(worker: Worker, now: datetime) -> dict:
    from . import mining  # mining imports this module's COIN_RE
    return mining.estimate_summary(worker, now)


def record_benchmark(worker: Worker, score, details=None, now: datetime | None = None) -> int:
    """Store the Bench Score the app measured itself (int 1..10,000,000) and how: shown as "reported",
    never used for price or eligibility (the portal measures its own, services/benchmarks.py)."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= MAX_BENCH_SCORE:
        raise ServiceError("invalid_benchmark", f"'score' must be a whole number from 1 to {MAX_BENCH_SCORE:,}.")
    details = {} if details is None else details
    if not isinstance(details, dict):
        raise ServiceError("invalid_benchmark", "'details' must be an object.")
    try:
        encoded = json.dumps(details, allow_nan=False)
    except (TypeError, ValueError):
        raise ServiceError("invalid_benchmark", "'details' must be plain JSON (no NaN or Infinity).") from None
    if len(encoded) > 8192:
        raise ServiceError("invalid_benchmark", "'details' is larger than 8 KB.")
    worker_id = worker.id
    begin_write_transaction(db.session)
    worker = db.session.get(Worker, worker_id)
    worker.bench_score_reported = score
    # "portal" is the portal's own measurement (benchmarks.record_score): never the app's to write.
    worker.bench_details = {**{k: v for k, v in details.items() if k != "portal"},
                            **({"portal": worker.bench_details["portal"]}
                               if "portal" in (worker.bench_details or {}) else {})}
    db.session.commit()
    return score

