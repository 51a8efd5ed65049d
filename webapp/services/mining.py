"""Mining reports within reason: which periods a worker mined, as far as the portal can believe it,
and the portal's own estimate of what they earned.

The app reports each period it mined: coin, pool, the hashrate its miner measured, the period's
length in seconds, and the shares. The portal never takes the app's word for money or for time:

- a report is accepted only while mining is enabled for that worker, and only for a coin in the
  operator's rate table (`pictor-portal mining-rates`, MiningRate);
- the period ends when the report arrives, by the portal's clock, and may not begin before mining
  was enabled nor before the end of the worker's previous report: periods never overlap, so together
  they never exceed wall time (up to OVERLAP_TOLERANCE_SECONDS of overlap, the network's jitter
  between two reports, is trimmed off rather than refused);
- the hashrate counted is at most the rate table's `max_mh_per_gpu` × the NVIDIA GPUs the worker
  reported (the app finds them with GPUtil); none reported, nothing mined;
- earnings = counted MH/s × days × the coin's micro-USD per MH/s per day, rounded down. They are an
  estimate (the pool pays the miner's wallet, not the portal), booked as a MINING ledger row apart
  from task earnings and shown as "estimated" wherever it appears.
"""

import math
from datetime import datetime, timedelta

from .. import money
from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import MiningRate, MiningReport, Worker
from . import Conflict, ServiceError, ledger
from .market import COIN_RE

MAX_PERIOD_SECONDS = 24 * 3600  # the app reports every few minutes; a day is a generous ceiling
OVERLAP_TOLERANCE_SECONDS = 60
MAX_HASHRATE = 1e18  # a number check only: the GPU cap is what binds
MAX_SHARES = 10**9
MAX_RATE_MICROS = 1000 * money.MICROS  # per MH/s per day: far above any coin's
MAX_MH_PER_GPU = 1e7


def _bad(message: str) -> ServiceError:
    return ServiceError("invalid_mining_report", message)


def _count(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SHARES:
        raise _bad(f"'{name}' must be a whole number from 0 to {MAX_SHARES}.")
    return value


def parse_report(data: dict) -> dict:
    """{coin, pool, hashrate (H/s), period_seconds, shares_accepted?, shares_rejected?}, checked.
    An `earnings` field, which older apps sent, is ignored: the portal computes them."""
    if not isinstance(data, dict):
        raise _bad("Send a JSON object with coin, pool, hashrate and period_seconds.")
    coin, pool = data.get("coin"), data.get("pool")
    if not isinstance(coin, str) or not COIN_RE.match(coin.strip()):
        raise _bad("'coin' must be a coin ticker of up to 16 letters or digits, e.g. \"ETC\".")
    if not isinstance(pool, str) or not pool.strip() or len(pool) > 255 or any(ord(c) < 32 for c in pool):
        raise _bad("'pool' must be the pool address, up to 255 characters.")
    hashrate, period = data.get("hashrate"), data.get("period_seconds")
    if isinstance(hashrate, bool) or not isinstance(hashrate, (int, float)) or not math.isfinite(hashrate) \
            or not 0 <= hashrate < MAX_HASHRATE:
        raise _bad("'hashrate' must be a number of hashes per second.")
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= MAX_PERIOD_SECONDS:
        raise _bad(f"'period_seconds' must be a whole number from 1 to {MAX_PERIOD_SECONDS}.")
    return {"coin": coin.strip().upper(), "pool": pool.strip(), "hashrate": float(hashrate),
            "period_seconds": period, "shares_accepted": _count(data, "shares_accepted"),
            "shares_rejected": _count(data, "shares_rejected")}


def counted_period(worker: Worker, period_seconds: int, now: datetime) -> tuple[datetime, int]:
    """(start, seconds) of the period a report arriving now may count, or a Conflict saying why none."""
    start = now - timedelta(seconds=period_seconds)
    # Unknown (enabled some other way than the settings): nothing before now is believed.
    floors = [(worker.mining_enabled_at or now, "mining was enabled for this worker")]
    previous = db.session.execute(db.select(db.func.max(MiningReport.reported_at))
                                  .where(MiningReport.worker_id == worker.id)).scalar_one()
    floors.append((previous, "the worker's previous mining report ended"))
    for floor, what in floors:
        if floor is not None and start < floor:
            if (floor - start).total_seconds() > OVERLAP_TOLERANCE_SECONDS:
                raise Conflict("overlapping_period",
                               f"This report's {period_seconds} s would begin before {what} "
                               f"({floor.isoformat()}): report only time mined since then.")
            start = floor
    seconds = int((now - start).total_seconds())
    if seconds < 1:
        raise Conflict("overlapping_period", "This period was reported already.")
    return start, seconds


def estimate_micros(hashrate: float, seconds: int, rate: MiningRate) -> int:
    """Micro-USD for `hashrate` H/s over `seconds` at the coin's rate, rounded down."""
    return int(hashrate / 1e6 * seconds / 86400 * rate.micros_per_mh_day)


def report(worker: Worker, data: dict, now: datetime | None = None) -> MiningReport:
    """Accept one mining report of the worker within the rules above and book its estimate; commits."""
    now = now or utcnow()
    fields = parse_report(data)
    worker_id = worker.id
    begin_write_transaction(db.session)
    try:
        worker = db.session.execute(db.select(Worker).where(Worker.id == worker_id).with_for_update()
                                    .execution_options(populate_existing=True)).scalar_one()
        if not (worker.mining_config or {}).get("enabled"):
            raise Conflict("mining_disabled", "Mining is not enabled for this worker: enable it in Settings "
                                              "before reporting.")
        rate = db.session.get(MiningRate, fields["coin"])
        if rate is None:
            raise Conflict("unknown_coin", f"The portal has no rate for {fields['coin']}: its operator sets "
                                           "which coins count (pictor-portal mining-rates).")
        gpus = len(worker.gpus or [])
        if gpus == 0:
            raise Conflict("no_gpu", "This worker reported no NVIDIA GPU: mining needs one.")
        start, seconds = counted_period(worker, fields["period_seconds"], now)
        counted = min(fields["hashrate"], rate.max_mh_per_gpu * 1e6 * gpus)
        row = MiningReport(worker_id=worker.id, coin=fields["coin"], pool=fields["pool"], hashrate=counted,
                           hashrate_reported=fields["hashrate"], period_seconds=seconds, period_start=start,
                           reported_at=now, earnings_micros=estimate_micros(counted, seconds, rate),
                           shares_accepted=fields["shares_accepted"], shares_rejected=fields["shares_rejected"])
        db.session.add(row)
        ledger.book_mining(worker, row)
        db.session.commit()
        return row
    except Exception:
        db.session.rollback()
        raise


def estimate_summary(worker: Worker, now: datetime | None = None) -> dict:
    """What the app's Mining tab shows: the portal's estimate for today (UTC) and the last 7 days, and
    how it was made. Sums of this worker's booked reports, so the tab and the charts agree."""
    now = now or utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def since(start: datetime) -> int:
        return int(db.session.execute(db.select(db.func.coalesce(db.func.sum(MiningReport.earnings_micros), 0))
                                      .where(MiningReport.worker_id == worker.id,
                                             MiningReport.reported_at >= start)).scalar_one())
    coin = (worker.mining_config or {}).get("coin")
    rate = db.session.get(MiningRate, coin.upper()) if isinstance(coin, str) and coin else None
    how = ("Estimated by the portal: the hashrate your miner measured (capped per GPU) x the time it mined "
           "x the operator's rate")
    how += (f" for {rate.coin} ({money.fmt(rate.micros_per_mh_day)} USD per MH/s per day)." if rate
            else "; the portal has no rate for this coin yet, so nothing is counted.")
    how += " The pool pays your wallet directly; this is not a task earning."
    return {"today": money.fmt(since(today)), "last_7_days": money.fmt(since(now - timedelta(days=7))),
            "explanation": how, "estimate": True}


def serialize(row: MiningReport) -> dict:
    return {"coin": row.coin, "pool": row.pool, "hashrate": row.hashrate, "hashrate_reported": row.hashrate_reported,
            "period_start": row.period_start.isoformat() if row.period_start else None,
            "period_end": row.reported_at.isoformat(), "period_seconds": row.period_seconds,
            "shares_accepted": row.shares_accepted, "shares_rejected": row.shares_rejected,
            "earnings": money.fmt(row.earnings_micros), "estimate": True}


# -- the operator's rate table ---------------------------------------------------------------------

def set_rate(coin: str, usd_per_mh_day: str, max_mh_per_gpu: float, now: datetime | None = None) -> MiningRate:
    """Add or change a coin's rate (USD per MH/s per day, a decimal string) and per-GPU hashrate cap."""
    if not isinstance(coin, str) or not COIN_RE.match(coin.strip()):
        raise ServiceError("invalid_rate", "The coin must be a ticker of up to 16 letters or digits, e.g. ETC.")
    try:
        micros = money.to_micros(usd_per_mh_day)
    except (ValueError, TypeError):
        raise ServiceError("invalid_rate", f"{usd_per_mh_day!r} is not a decimal amount in USD.") from None
    if not 0 <= micros <= MAX_RATE_MICROS:
        raise ServiceError("invalid_rate", "The rate must be from 0 to 1000 USD per MH/s per day.")
    if isinstance(max_mh_per_gpu, bool) or not isinstance(max_mh_per_gpu, (int, float)) \
            or not math.isfinite(max_mh_per_gpu) or not 0 < max_mh_per_gpu <= MAX_MH_PER_GPU:
        raise ServiceError("invalid_rate", "The per-GPU cap must be a number of MH/s above 0.")
    begin_write_transaction(db.session)
    rate = db.session.get(MiningRate, coin.strip().upper())
    if rate is None:
        rate = MiningRate(coin=coin.strip().upper())
        db.session.add(rate)
    rate.micros_per_mh_day, rate.max_mh_per_gpu, rate.updated_at = micros, float(max_mh_per_gpu), now or utcnow()
    db.session.commit()
    return rate


def remove_rate(coin: str) -> bool:
    begin_write_transaction(db.session)
    gone = db.session.execute(db.delete(MiningRate).where(MiningRate.coin == coin.strip().upper())).rowcount
    db.session.commit()
    return bool(gone)


def rates() -> list[MiningRate]:
    return list(db.session.execute(db.select(MiningRate).order_by(MiningRate.coin)).scalars())
