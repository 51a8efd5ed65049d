"""What the desktop UI shows and does, in plain Python: a ViewModel fed by engine events and portal
answers, and a Controller that runs every slow action (network, subprocess) off the UI thread.

No toolkit imports: the Tk window and the tray only read the ViewModel and call the Controller, so
tests drive both with a real engine against a real portal."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from ..api import PortalClient, PortalError, PortalUnreachable
from ..config import WorkerConfig
from ..untrusted import printable
from ..engine import MESSAGE_STARTING, MESSAGE_STOPPED, MESSAGE_UNREACHABLE, BenchmarkPhase, EngineState, State
from . import system

log = logging.getLogger(__name__)

# The portal's rules (webapp/services/market.py), repeated so that a typo is caught before a round trip.
MAX_BID = Decimal(100)
UNBENCHED_SCORE = 1000  # the portal prices a worker without a Bench Score as the reference machine
# The portal's words (webapp/money.py BENCH_HOUR_TEXT; a test holds the two equal).
BENCH_HOUR_TEXT = ("A bench-hour is an hour of a reference machine's work; a worker with Bench Score 2000 "
                   "does two bench-hours per hour.")
WALLET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")
COIN_RE = re.compile(r"^[A-Za-z0-9]{1,16}$")
POOL_RE = re.compile(r"^([a-z][a-z0-9+.-]{0,31}://)?[A-Za-z0-9.-]{1,200}:\d{1,5}(/[^\s]*)?$")

STATE_TITLES = {State.IDLE: "Idle", State.BUSY: "Computing", State.PAUSED: "Paused",
                State.ERROR: "Needs attention", State.OFFLINE: "Offline"}
JOB_TYPE_NAMES = {"render": "3D rendering", "upscale": "AI upscaling", "benchmark": "Bench Score run"}


class InvalidInput(ValueError):
    """A value the provider typed that cannot be used; str() says how to fix it."""


@dataclass(frozen=True)
class Notification:
    title: str
    message: str


# --- formatting and validation (pure) ------------------------------------------------------------

def money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def usd(value: Any, suffix: str = "") -> str:
    """'0.500000' -> '$0.50'; small amounts keep their digits: '0.000417' -> '$0.000417'."""
    amount = money(value)
    if amount is None:
        return "—"
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        text = f"{amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"
        # A rate like 0.0125 would round to 0.01: keep up to four decimals when they matter.
        if abs(amount) < 1 and amount != amount.quantize(Decimal("0.01")):
            text = f"{amount.quantize(Decimal('0.0001'), ROUND_HALF_UP).normalize():f}"
    else:
        text = f"{amount.quantize(Decimal('0.000001'), ROUND_HALF_UP).normalize():f}"
    return f"${text}{suffix}"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def hashrate_text(hashes_per_second: float) -> str:
    for unit, size in (("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if hashes_per_second >= size:
            return f"{hashes_per_second / size:.2f} {unit}"
    return f"{hashes_per_second:.0f} H/s"


def parse_bid(text: str) -> Decimal:
    """'0.45', ' $0.45 ' or '0,45' -> Decimal('0.45'); InvalidInput says what is wrong."""
    cleaned = (text or "").strip().lstrip("$").strip().replace(",", ".")
    if not cleaned:
        raise InvalidInput("Type your bid in USD per hour, e.g. 0.45 (or use the network average).")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidInput(f"{text.strip()!r} is not a number: type e.g. 0.45") from None
    if not amount.is_finite():
        raise InvalidInput("Type a plain amount, e.g. 0.45")
    if amount.as_tuple().exponent < -6:
        raise InvalidInput("Use at most 6 decimals, e.g. 0.45")
    if not 0 < amount <= MAX_BID:
        raise InvalidInput(f"The bid must be more than 0 and at most {MAX_BID} USD per hour.")
    return amount


def measured_text(own: int | None, portal: int | None) -> str:
    """What the app's own benchmark found, beside the portal's score, which is the one that prices."""
    if portal:
        return f"This machine measured {own}; your Bench Score, from the portal's own timed run, is {portal}."
    return (f"This machine measured {own}. Your Bench Score comes from a run the portal times and "
            "checks itself: it runs before your first task.")


def price_per_bench_hour(bid: Decimal, bench_score: int | None) -> Decimal:
    """bid / (score / 1000), rounded to whole micro-USD half up exactly as the portal does."""
    score = bench_score if bench_score and bench_score > 0 else UNBENCHED_SCORE
    micros = int((bid * 1_000_000).to_integral_value(ROUND_HALF_UP))
    return Decimal((2 * micros * 1000 + score) // (2 * score)) / 1_000_000


def bid_comparison(bid: Decimal | None, average: Decimal | None) -> str:
    if bid is None or average is None or average <= 0:
        return ""
    if bid == average:
        return "equal to the network average"
    percent = abs(bid - average) / average * 100
    amount = f"{percent:.0f}%" if percent >= 1 else "slightly"
    if bid < average:
        return f"{amount} below the network average: more jobs come your way"
    return f"{amount} above the network average: fewer jobs, more per hour"


def validate_wallet(text: str) -> str | None:
    value = (text or "").strip()
    if not value:
        return None
    if not WALLET_RE.match(value):
        raise InvalidInput("A wallet address is letters and digits (plus : . _ -), up to 128 characters.")
    return value


def validate_mining(pool: str, coin: str, wallet: str, extra: str, enabled: bool) -> dict[str, Any]:
    """The mining_config the portal accepts; InvalidInput names the field to fix."""
    pool, coin, wallet, extra = (v.strip() for v in (pool or "", coin or "", wallet or "", extra or ""))
    if pool and (len(pool) > 255 or not POOL_RE.match(pool)):
        raise InvalidInput("Mining pool: use host:port, e.g. stratum+tcp://pool.example.com:4444")
    if coin and not COIN_RE.match(coin):
        raise InvalidInput("Mining coin: a ticker of up to 16 letters or digits, e.g. ETC")
    if wallet and not WALLET_RE.match(wallet):
        raise InvalidInput("Wallet address: letters and digits (plus : . _ -), up to 128 characters.")
    if len(extra) > 500 or any(ord(ch) < 32 or ord(ch) == 127 for ch in extra):
        raise InvalidInput("Extra config: one line of text, up to 500 characters.")
    if enabled and not (pool and coin and wallet):
        raise InvalidInput("To turn mining on, fill in the pool, the coin and the wallet address.")
    return {"pool": pool, "coin": coin.upper(), "wallet": wallet, "extra": extra, "enabled": bool(enabled)}


# The Mining tab's miner programs (tray_client/mining/settings.py MINERS), in the provider's words.
MINER_NAMES = {"trex": "T-Rex", "lolminer": "lolMiner", "custom": "Custom command"}
MINER_CHOICES = tuple(MINER_NAMES.values())


def validate_miner(choice: str, path: str, has_argv: bool) -> tuple[str | None, str | None]:
    """(miner, program file) for the local mining section; ("", "") leaves mining without a program.
    A custom command's arguments are written in worker.json (docs/MINING.md), not here."""
    import os
    choice, path = (choice or "").strip(), (path or "").strip()
    if not choice and not path:
        return None, None
    miner = next((key for key, name in MINER_NAMES.items() if name == choice), None)
    if miner is None:
        raise InvalidInput("Miner program: choose T-Rex, lolMiner or Custom command.")
    if miner == "custom":
        if not has_argv:
            raise InvalidInput("Custom command: write its \"argv\" in the mining section of worker.json "
                               "(docs/MINING.md), then choose it here.")
        return miner, path or None
    if len(path) > 4096 or not os.path.isfile(path):
        raise InvalidInput(f"Miner program: choose the {choice} program file (e.g. /opt/{miner}/{miner}"
                           f" or {miner}.exe); {path or 'none'} is not a file.")
    return miner, path


def portal_message(exc: BaseException) -> str:
    if isinstance(exc, PortalError):
        return exc.message
    if isinstance(exc, PortalUnreachable):
        return f"{exc}. Check your connection; nothing was changed."
    return str(exc) or exc.__class__.__name__


# --- the view model ------------------------------------------------------------------------------

class ViewModel:
    """Everything the window and the tray show. Mutated only on the UI thread (Controller.drain)."""

    def __init__(self, server_url: str | None = None, worker_id: int | None = None):
        self.version = 0  # bumped on every change the window should redraw
        self.form_version = 0  # bumped when values from the portal should replace what the entries hold
        self.snapshot = EngineState(server_url=server_url, worker_id=worker_id)  # until the first event
        self.snapshot_at = time.monotonic()
        self.settings: dict[str, Any] = {}
        self.settings_error: str | None = None
        self.hardware: dict[str, Any] = {}
        self.feedback: dict[str, tuple[str, str]] = {}  # section -> ("ok"|"error"|"busy", text)
        self.bench_requested = False
        self.stopping = False
        self.needs_pairing = False  # the portal refused the token: offer to pair again
        self.paused_by_idle = False
        self.prefs: dict[str, Any] = {"idle_only": False, "idle_minutes": 5}
        self.autostart = False
        self.autostart_available, self.autostart_reason = True, ""
        self.idle_available, self.idle_reason = False, "Checking how to measure idle time…"
        self.mining_state = None  # tray_client.mining.MiningState, from the supervisor
        self._last_task_id: int | None = None  # the task a "completed" notification is about

    def changed(self) -> None:
        self.version += 1

    # --- inputs -----------------------------------------------------------------------------

    def apply_event(self, event: dict[str, Any]) -> list[Notification]:
        """Take one engine event; returns the notifications it deserves (a finished task...)."""
        snap = event.get("state")
        if not isinstance(snap, EngineState):
            return []
        before = self.snapshot
        notes: list[Notification] = []
        if before.task_id is not None:
            self._last_task_id = before.task_id
        if snap.tasks_completed > before.tasks_completed:
            task, reward = self._last_task_id, snap.last_reward
            notes.append(Notification("Task completed", f"Task {task} done: you earned {usd(reward)}"
                                      if reward else f"Task {task} done"))
        if snap.tasks_failed > before.tasks_failed:
            notes.append(Notification("Task failed", snap.last_error or "A task failed."))
        bench = snap.benchmark
        if bench.active:
            self.bench_requested = False  # the engine has it: its own field says how it goes from here
        elif bench in (BenchmarkPhase.DONE, BenchmarkPhase.FAILED) and before.benchmark.active:
            self.bench_requested = False
            self.feedback["bench"] = ("ok", measured_text(snap.bench_score_reported, snap.bench_score)) \
                if bench == BenchmarkPhase.DONE \
                else ("error", f"The benchmark failed: {snap.benchmark_error or 'see the log file'}")
        for key in ("bid", "average_bid", "bench_score"):
            value = getattr(snap, key)
            if value is not None and self.settings.get(key) != value:
                self.settings[key] = value
        self.snapshot = snap
        self.snapshot_at = time.monotonic()
        self.changed()
        return notes

    def apply_settings(self, answer: dict[str, Any], reset_forms: bool = True) -> None:
        """The portal's GET/PUT /worker/settings answer."""
        if not isinstance(answer, dict):
            return
        self.settings = dict(answer)
        self.settings_error = None
        if reset_forms:
            self.form_version += 1
        self.changed()

    def apply_hardware(self, report: dict[str, Any]) -> None:
        self.hardware = dict(report or {})
        self.changed()

    # --- derived: header and Computing tab ----------------------------------------------------

    @property
    def state(self) -> State:
        state = self.snapshot.state
        # The engine ranks "offline" above "error", but a refused token or a second copy of the app
        # is something to fix, not to wait out.
        if state == State.OFFLINE and self.snapshot.error:
            return State.ERROR
        return state

    @property
    def paused(self) -> bool:
        return self.snapshot.paused

    @property
    def busy(self) -> bool:
        return self.snapshot.task_id is not None

    @property
    def progress(self) -> float:
        return float(self.snapshot.progress or 0.0) if self.busy else 0.0

    @property
    def server_url(self) -> str | None:
        return self.snapshot.server_url

    @property
    def worker_id(self) -> int | None:
        return self.snapshot.worker_id

    @property
    def worker_label(self) -> str | None:
        """The worker's name as the portal has it (renamed there, shown here), else its number."""
        name = self.settings.get("name") if isinstance(self.settings, dict) else None
        if isinstance(name, str) and name.strip():
            return printable(name.strip(), 80)
        return f"#{self.worker_id}" if self.worker_id is not None else None

    def dashboard_url(self) -> str | None:
        if not self.server_url or self.worker_id is None:
            return None
        return f"{self.server_url}/workers/{self.worker_id}"

    def headline(self) -> tuple[str, str]:
        """(what is happening, what to do about it) for the header and the Computing tab."""
        s = self.snapshot
        state = self.state
        if self.stopping:
            return ("Stopping…", "Handing the current task back to the network and saying goodbye." if self.busy
                    else "Saying goodbye to the portal.")
        if state == State.BUSY:
            running = [slot.task_id for slot in s.slots if slot.task_id is not None]
            title = f"Computing task {s.task_id}" if len(running) < 2 else \
                f"Computing {len(running)} tasks ({', '.join(map(str, running))}) on {len(running)} devices"
            if self.paused:
                return title, "Paused: this task finishes, then no new tasks are taken until you resume."
            return title, "Earning while this task runs. Pause to stop taking new tasks; this one finishes."
        if state == State.PAUSED:
            if self.paused_by_idle:
                minutes = self.prefs.get("idle_minutes", 5)
                return ("Paused while you use this computer",
                        f"Work resumes after {minutes} min without keyboard or mouse input "
                        "(Settings → Work only when idle).")
            return "Paused", "No new tasks are taken. Press Resume to start earning again."
        if state == State.ERROR:
            text = str(s.error or "Something went wrong: see the log file.")
            if not s.online and s.message.startswith(MESSAGE_UNREACHABLE):
                text += f". Also, the portal at {self.server_url} cannot be reached: the app keeps retrying."
            return "Needs attention", text
        if state == State.OFFLINE:
            message = s.message
            if message in (MESSAGE_STARTING, "") or s.benchmark == BenchmarkPhase.RUNNING:
                return "Connecting…", f"Checking this computer and connecting to {self.server_url}."
            if message == MESSAGE_STOPPED:
                return "Stopped", "The worker has stopped; start the app again to earn."
            queued = s.outbox_pending
            keep = (f" {queued} finished update(s) wait on disk and are sent when it is back." if queued
                    else " Finished work is kept and sent when it is back.")
            return ("Offline", f"Cannot reach the portal at {self.server_url}. Check your internet connection;"
                               f" the app keeps retrying.{keep}")
        if s.benchmark == BenchmarkPhase.RUNNING:
            return "Running the benchmark", "Measuring this computer's speed: tasks resume in a minute."
        text = ("Connected. Tasks start automatically when the network has some; "
                "a lower bid (Settings) attracts more jobs.")
        if s.note:
            text += f" Note: {s.note}."
        return "Waiting for work", text

    def computing_rows(self, now: float | None = None) -> list[tuple[str, str]]:
        s = self.snapshot
        busy = self.busy
        dash = "—"
        job_type = dash
        if busy:
            job_type = JOB_TYPE_NAMES.get(s.job_type, s.job_type or dash)
            if s.software:
                job_type += f" ({s.software})"
        return [
            ("Wallet Address", self.paid_to_text),
            ("Job ID", str(s.job_id) if busy and s.job_id is not None else dash),
            ("Job Type", job_type),
            ("Task ID", str(s.task_id) if busy else dash),
            ("Duration", duration_text(self.duration_s(now)) if busy else dash),
            ("ETA", self.eta_text() if busy else dash),
            ("Reward Estimated", self.reward_text() if busy else dash),
        ]

    def slot_rows(self) -> list[tuple[str, str, str, str]]:
        """The Computing tab's Devices table: (device, state, task, progress) for every slot shared."""
        rows = []
        for slot in self.snapshot.slots:
            device = f"{slot.id} · {slot.name}" if slot.name else slot.id
            if slot.task_id is None:
                rows.append((device, "Idle", "—", f"{slot.completed} done" if slot.completed else "—"))
                continue
            job = JOB_TYPE_NAMES.get(slot.job_type, slot.job_type or "task")
            progress = f"{slot.progress:.0%}" + (f" · ETA {duration_text(slot.eta_s)}" if slot.eta_s else "")
            rows.append((device, "Computing", f"Task {slot.task_id} · {job}", progress))
        return rows

    def device_choices(self, selection: list[str] | None) -> list[tuple[str, str, bool]]:
        """The Settings tab's devices: (id, label, shared) for each device found; `selection` is the
        `devices` setting (None: every GPU, the CPU only without one)."""
        found = self.snapshot.devices_found
        has_gpu = any(d.id != "cpu" for d in found)
        shared = set(selection) if selection else {d.id for d in found if (d.id != "cpu") == has_gpu}
        return [(d.id, f"{d.id} · {d.name}" if d.name else d.id, d.id in shared) for d in found]

    def reward_text(self) -> str:
        """The portal's estimate (from the job's finished tasks), else bid x (time so far + ETA)."""
        if self.snapshot.reward_estimate:
            return f"{usd(self.snapshot.reward_estimate)} (from this job's finished tasks)"
        eta, spent, bid = self.snapshot.eta_s, self.duration_s(), self.bid
        if eta is None or spent is None or bid is None:
            return "Estimating… (your bid x the compute time)"
        hours = Decimal(str(round(spent + max(0.0, float(eta)), 1))) / 3600
        return f"about {usd(bid * hours)} (your bid {usd(bid, '/h')} x the expected compute time)"

    def progress_text(self) -> str:
        if not self.busy:
            return "No task running"
        text = f"{self.progress:.0%}"
        detail = self.snapshot.progress_message
        return f"{text} · {detail}" if detail else text

    def duration_s(self, now: float | None = None) -> float | None:
        started = self.snapshot.started_at
        if not self.busy or not started:
            return None
        return max(0.0, (now or time.time()) - float(started))

    def eta_text(self) -> str:
        eta = self.snapshot.eta_s
        if eta is None:
            return "estimating…"
        # Count down between progress events, which can be tens of seconds apart for a slow tile.
        left = max(0.0, float(eta) - (time.monotonic() - self.snapshot_at))
        return "almost done" if left < 1 else f"about {duration_text(left)}"

    def session_text(self) -> str:
        s = self.snapshot
        done, failed = s.tasks_completed, s.tasks_failed
        parts = [f"This session: {done} task{'s' if done != 1 else ''} done"]
        if failed:
            parts.append(f"{failed} failed")
        parts.append(f"{usd(s.earned_session or '0')} earned")
        if s.outbox_pending:
            parts.append(f"{s.outbox_pending} update(s) queued")
        return " · ".join(parts)

    @property
    def wallet_address(self) -> str | None:
        return self.settings.get("wallet_address")

    @property
    def paid_to_text(self) -> str:
        """The wallet payouts actually go to and where it comes from (the portal says: payouts are per
        account, to the account's wallet); a worker's own wallet is kept for its mining."""
        if not self.settings:
            return "— (not loaded from the portal yet)"
        paid_to = self.settings.get("payout_wallet")
        own = self.wallet_address
        if paid_to:
            text = f"{paid_to} (your account's wallet, set on the portal)"
            return text + (f"; this worker's own {own} is for mining" if own and own != paid_to else "")
        if own:
            return own  # a portal without account wallets (or one not set yet): the worker's own
        return "Not set: add one on the portal's Account page to be paid"

    # --- derived: Settings tab -----------------------------------------------------------------

    @property
    def average_bid(self) -> Decimal | None:
        return money(self.settings.get("average_bid"))

    @property
    def bid(self) -> Decimal | None:
        return money(self.settings.get("bid"))

    @property
    def custom_bid(self) -> str | None:
        return self.settings.get("custom_bid")

    @property
    def bench_score(self) -> int | None:
        score = self.settings.get("bench_score")
        return score if isinstance(score, int) else None

    def bid_preview(self, text: str | None = None) -> tuple[str, str]:
        """("error"|"busy", price per bench-hour and how it compares) for the bid typed, or for the
        current bid when the entry is empty."""
        typed = text is not None and text.strip() != ""
        if typed:
            try:
                bid = parse_bid(text)
            except InvalidInput as exc:
                return "error", str(exc)
        else:
            if not self.settings:
                return "busy", "" if self.settings_error else "Loading your bid from the portal…"
            bid = self.bid
            if bid is None:
                return "busy", ""
        price = price_per_bench_hour(bid, self.bench_score)
        basis = "" if self.bench_score else " (as Bench Score 1000 until you run the benchmark)"
        comparison = bid_comparison(bid, self.average_bid)
        prefix = "" if typed or self.custom_bid is not None else "You bid the network average: "
        # The bid as $/hour with the resulting $/bench-hour beside it, as the portal shows it.
        text = f"{prefix}{usd(bid)}/hour = {usd(price)} per bench-hour{basis}"
        return "busy", text + (f"; {comparison}" if comparison else "") + f". {BENCH_HOUR_TEXT}"

    def earning_text(self) -> tuple[str, str]:
        estimate = self.settings.get("estimated_earning_per_hour")
        if isinstance(estimate, dict):
            return usd(estimate.get("amount"), " / hour"), str(estimate.get("explanation") or "")
        if self.snapshot.estimated_earning_per_hour:
            return usd(self.snapshot.estimated_earning_per_hour, " / hour"), ""
        return "—", self.settings_error or "Loading the estimate from the portal…"

    def bench_text(self) -> tuple[str, str]:
        """(score, status) for "Your Bench Score"."""
        score = str(self.bench_score) if self.bench_score else "Not measured yet"
        if self.bench_running:
            if self.snapshot.benchmark == BenchmarkPhase.RUNNING:
                return score, "Running the benchmark: rendering a fixed scene…"
            if self.busy:
                return score, "Queued: the benchmark runs when the current task is done."
            return score, "Starting the benchmark…"
        kind_text = self.feedback.get("bench")
        if kind_text:
            return score, kind_text[1]
        if not self.bench_score:
            return score, "Run the benchmark so jobs can price your speed (takes about a minute)."
        return score, "1000 = as fast as the reference machine; higher is faster."

    @property
    def bench_running(self) -> bool:
        """Asked for (by the button, or by the engine on a first start) and not finished yet."""
        return self.bench_requested or self.snapshot.benchmark.active

    def renderer_rows(self) -> list[tuple[str, str]]:
        renderers = self.hardware.get("renderers") if self.hardware else None
        if renderers is None:
            return [("Blender", "Looking…"), ("Real-ESRGAN", "Looking…")]
        blender = renderers.get("blender")
        esrgan = renderers.get("realesrgan")
        return [
            ("Blender", f"{blender.get('version')} at {blender.get('path')}" if blender
             else "Not found: install Blender or choose blender(.exe) below"),
            ("Real-ESRGAN", f"{esrgan.get('version')} (built in)" if esrgan
             else "Not installed: AI upscaling jobs are not offered to this worker"),
        ]

    # --- derived: Mining tab -------------------------------------------------------------------

    @property
    def mining_config(self) -> dict[str, Any]:
        config = self.settings.get("mining_config")
        return config if isinstance(config, dict) else {"pool": "", "coin": "", "wallet": "", "extra": "",
                                                         "enabled": False}

    def mining_availability(self) -> tuple[bool, str]:
        """(available, why not): mining needs an NVIDIA GPU (the GPU probe only lists NVIDIA ones)."""
        if not self.hardware:
            return False, "Checking this computer's GPUs…"
        gpus = self.hardware.get("gpus") or []
        if gpus:
            names = ", ".join(str(g.get("name") or "GPU") for g in gpus)
            return True, f"Mining would use: {names}"
        note = self.hardware.get("gpu_note") or "no NVIDIA GPU found"
        return False, (f"Mining needs an NVIDIA GPU, and this computer has none ({note}). "
                       "Rendering and upscaling still earn on the CPU.")

    def mining_estimate_text(self) -> str:
        """Today and 7 days as the portal estimated them, and how; the portal's own words when it gives
        them, else "estimated by the portal"."""
        config = self.mining_config
        if not self.mining_availability()[0]:
            return "Not available on this computer (no NVIDIA GPU)"
        m = self.mining_state
        estimate = self.settings.get("mining_estimate")
        today = week = how = None
        if isinstance(estimate, dict):
            today, week, how = estimate.get("today"), estimate.get("last_7_days"), estimate.get("explanation")
        if m is not None and m.estimate_today is not None:  # the supervisor's fresher copy
            today, week, how = m.estimate_today, m.estimate_week, m.estimate_explanation or how
        if today is None:
            if not config.get("enabled"):
                return "— (mining is off)"
            return "No estimate yet: it appears once the miner has reported a hashrate."
        how = printable(how, 300) if isinstance(how, str) and how else "Estimated by the portal."
        return f"Today {usd(today)} · last 7 days {usd(week)} (estimates). {how}"

    def mining_live(self) -> tuple[str, str, list[tuple[str, str]]]:
        """(status title, what it means, rows) for the live part of the Mining tab."""
        m = self.mining_state
        if m is None:
            return "Miner not running", ("Mining runs beside the worker once it is set up: the mining section "
                                         "of the config file names the miner (README, Mining)."), []
        from ..mining import MinerStatus
        titles = {MinerStatus.OFF: "Off", MinerStatus.UNAVAILABLE: "Not set up",
                  MinerStatus.WAITING_IDLE: "Waiting for idle", MinerStatus.PAUSED_COMPUTE: "Paused for a compute task",
                  MinerStatus.STARTING: "Starting", MinerStatus.RUNNING: "Mining",
                  MinerStatus.RESTARTING: "Restarting", MinerStatus.STOPPED: "Stopped"}
        dash = "—"
        mining = m.status.mining
        shares = dash
        if mining and m.accepted is not None:
            shares = f"{m.accepted} accepted" + (f", {m.rejected} rejected" if m.rejected is not None else "")
        uptime = duration_text(time.time() - m.started_at) if mining and m.started_at else dash
        reports = f"{m.reports_sent} sent this session" + (f", {m.pending_reports} waiting" if m.pending_reports
                                                           else "")
        rows = [("Hashrate", hashrate_text(m.hashrate) if mining and m.hashrate is not None else dash),
                ("Shares", shares),
                ("GPU temperature", f"{m.temperature:.0f} °C" if mining and m.temperature is not None else dash),
                ("Power", f"{m.power:.0f} W" if mining and m.power is not None else dash),
                ("Uptime", uptime),
                ("Reports", reports)]
        return f"{titles.get(m.status, str(m.status))}{f' ({m.coin})' if mining and m.coin else ''}", m.reason, rows

    def mining_log_text(self) -> str:
        m = self.mining_state
        return "\n".join(m.log_tail[-40:]) if m is not None and m.log_tail else "(no miner output yet)"


# --- the controller ------------------------------------------------------------------------------

class Controller:
    """The UI's actions. Quick ones (pause) run in place; slow ones run on short-lived daemon threads
    and come back through drain(), which the UI calls on its own thread (Tk's after())."""

    SETTINGS_REFRESH_S = 60.0
    IDLE_CHECK_S = 10.0

    def __init__(self, engine, cfg: WorkerConfig, vm: ViewModel | None = None,
                 client: PortalClient | None = None,
                 idle_probe: tuple[Callable[[], float] | None, str] | None = None):
        self.engine = engine
        self.cfg = cfg
        self.vm = vm or ViewModel(cfg.server_url, cfg.worker_id)
        # Its own session: the engine's is busy with long downloads and uploads.
        self.client = client or PortalClient(cfg.server_url, cfg.token, timeout=(5.0, 15.0), attempts=2)
        self._results: queue.Queue[tuple[Callable[..., None], Any, BaseException | None]] = queue.Queue()
        self.mining = None  # the miner's supervisor (tray_client.mining), when the app started one
        self._running: set[str] = set()
        self._hardware_seen: dict[str, Any] | None = None
        self._next_settings = 0.0
        self._idle_probe, reason = idle_probe if idle_probe is not None else system.idle_probe()
        self.vm.idle_available = self._idle_probe is not None
        self.vm.idle_reason = reason
        self._next_idle = 0.0
        self.vm.autostart_available, self.vm.autostart_reason = system.autostart_supported()
        self.vm.autostart = system.autostart_enabled()
        self._load_prefs()

    def replace_engine(self, engine, cfg: WorkerConfig) -> None:
        """After pairing again: a fresh engine and credentials, same window."""
        self.engine, self.cfg = engine, cfg
        self.client = PortalClient(cfg.server_url, cfg.token, timeout=(5.0, 15.0), attempts=2)
        self._hardware_seen = None
        self._next_settings = 0.0
        self.vm.needs_pairing = False
        self.vm.changed()

    # --- the pump ------------------------------------------------------------------------------

    def drain(self, max_events: int = 500) -> list[Notification]:
        """Apply what happened since the last call; returns notifications to show. UI thread only."""
        notes: list[Notification] = []
        for _ in range(max_events):
            try:
                event = self.engine.events.get_nowait()
            except queue.Empty:
                break
            before = self.vm.snapshot
            notes += self.vm.apply_event(event)
            after = self.vm.snapshot
            # A finished task or a new Bench Score moves the earning estimate: ask again soon.
            # Back online, a finished task or a new Bench Score: the Settings numbers may have moved.
            if (after.tasks_completed != before.tasks_completed or after.bench_score != before.bench_score
                    or (after.online and not before.online)):
                self._next_settings = 0.0
        mining = self.mining.snapshot() if self.mining is not None else None
        if mining is not self.vm.mining_state:
            self.vm.mining_state = mining
            self.vm.changed()
        hardware = getattr(self.engine, "hardware", None)
        if hardware and hardware is not self._hardware_seen:
            self._hardware_seen = hardware
            self.vm.apply_hardware(hardware)
        while True:
            try:
                callback, result, error = self._results.get_nowait()
            except queue.Empty:
                break
            try:
                callback(result, error)
            except Exception:  # a UI bug must not stop the pump
                log.exception("UI callback failed")
            self.vm.changed()
        now = time.monotonic()
        if now >= self._next_settings and not self.vm.stopping:
            self._next_settings = now + self.SETTINGS_REFRESH_S
            self.refresh_settings()
        if now >= self._next_idle and not self.vm.stopping:
            self._next_idle = now + self.IDLE_CHECK_S
            self._check_idle()
        return notes

    def _background(self, key: str, work: Callable[[], Any],
                    done: Callable[[Any, BaseException | None], None]) -> bool:
        """Run work() on a daemon thread, then done(result, error) on the UI thread; one per key."""
        if key in self._running:
            return False
        self._running.add(key)

        def finished(result, error):
            self._running.discard(key)
            done(result, error)

        def target():
            try:
                result, error = work(), None
            except BaseException as exc:  # handed to the UI thread, which shows it
                result, error = None, exc
            self._results.put((finished, result, error))

        threading.Thread(target=target, name=f"pictor-ui-{key}", daemon=True).start()
        return True

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Tests: drain until no background action is left."""
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
            self.drain()
        self.drain()

    # --- actions ---------------------------------------------------------------------------------

    def toggle_pause(self) -> None:
        if self.vm.paused:
            self.resume()
        else:
            self.pause()

    def pause(self) -> None:
        self.vm.paused_by_idle = False  # the provider's own pause: the idle rule leaves it alone
        self.engine.pause()

    def resume(self) -> None:
        self.vm.paused_by_idle = False
        self.engine.resume()

    def refresh_settings(self) -> None:
        def done(answer, error):
            if error is not None:
                if not self.vm.settings:
                    reason = str(error).split(": ", 1)[-1] if isinstance(error, PortalUnreachable) \
                        else portal_message(error)
                    self.vm.settings_error = f"Not loaded yet: the portal did not answer ({reason}); retrying."
                return
            # Keep what the provider is typing; only the first answer fills the entries.
            self.vm.apply_settings(answer, reset_forms=self.vm.form_version == 0)
        self._background("settings", self.client.settings, done)

    def set_bid(self, text: str | None) -> str | None:
        """Save a custom bid (None: bid the network average). Returns an error to show at once, or None."""
        try:
            bid = str(parse_bid(text)) if text is not None else None
        except InvalidInput as exc:
            self.vm.feedback["bid"] = ("error", str(exc))
            self.vm.changed()
            return str(exc)
        self.vm.feedback["bid"] = ("busy", "Saving…")
        self.vm.changed()

        def done(answer, error):
            if error is not None:
                self.vm.feedback["bid"] = ("error", f"Not saved: {portal_message(error)}")
                return
            self.vm.apply_settings(answer)
            self.vm.feedback["bid"] = ("ok", f"Saved and synced to the portal: you bid {usd(bid, ' / hour')}."
                                       if bid is not None else "Saved: you now bid the network average.")
        started = self._background("bid", lambda: self.engine.set_bid(bid), done)
        if not started:
            self.vm.feedback["bid"] = ("busy", "Still saving the previous bid…")
        return None

    def save_wallet(self, text: str) -> str | None:
        try:
            wallet = validate_wallet(text)
        except InvalidInput as exc:
            self.vm.feedback["wallet"] = ("error", str(exc))
            self.vm.changed()
            return str(exc)
        return self._save_settings("wallet", {"wallet_address": wallet},
                                   "Saved." if wallet else "Removed: add a wallet address to be paid.")

    def mining_program(self) -> tuple[str, str]:
        """(the miner's name, its program file) from the local mining section, for the Mining tab."""
        from ..mining.settings import load_settings, section
        settings = load_settings(section(self.cfg))
        return MINER_NAMES.get(settings.miner or "", ""), settings.path or ""

    def save_mining(self, pool: str, coin: str, wallet: str, extra: str, enabled: bool,
                    miner: str | None = None, miner_path: str | None = None) -> str | None:
        from dataclasses import replace
        from ..mining.settings import load_settings, save_section, section
        available, reason = self.vm.mining_availability()
        local = load_settings(section(self.cfg))
        try:
            if enabled and not available:
                raise InvalidInput(reason)
            config = validate_mining(pool, coin, wallet, extra, enabled)
            if miner is not None or miner_path is not None:
                kind, path = validate_miner(miner or "", miner_path or "", bool(local.argv))
                if (kind, path) != (local.miner, local.path):
                    local = replace(local, miner=kind, path=path)
                    save_section(self.cfg, local)  # on this computer only: never sent to the portal
                    if self.mining is not None:
                        self.mining.update_settings(local)
        except (InvalidInput, OSError) as exc:
            message = str(exc) if isinstance(exc, InvalidInput) else f"Not saved: {exc}"
            self.vm.feedback["mining"] = ("error", message)
            self.vm.changed()
            return message
        result = self._save_settings("mining", {"mining_config": config},
                                     "Saved and synced to the portal." + (" Mining is on." if enabled else ""))
        if self.mining is not None:
            self.mining.refresh()  # the supervisor reads the saved config from the portal now
        return result

    def retry_mining(self) -> None:
        """"Try again" after the miner was stopped for crashing."""
        if self.mining is not None:
            self.mining.retry()

    def _save_settings(self, section: str, changes: dict[str, Any], success: str) -> None:
        self.vm.feedback[section] = ("busy", "Saving…")
        self.vm.changed()

        def done(answer, error):
            if error is not None:
                self.vm.feedback[section] = ("error", f"Not saved: {portal_message(error)}")
                return
            self.vm.apply_settings(answer)
            self.vm.feedback[section] = ("ok", success)
        self._background(section, lambda: self.client.update_settings(changes), done)
        return None

    def run_benchmark(self) -> None:
        self.vm.bench_requested = True
        self.vm.feedback.pop("bench", None)
        self.vm.changed()
        self.engine.request_benchmark()

    def set_blender_path(self, text: str) -> None:
        """Use the Blender at text (a file or its folder); empty: find it automatically again."""
        from ..runners.blender import blender_version, find_blender
        wanted = (text or "").strip() or None
        self.vm.feedback["renderer"] = ("busy", "Checking Blender…")
        self.vm.changed()

        def work():
            path = find_blender(wanted)
            if path is None:
                raise InvalidInput(f"No Blender at {wanted}: choose blender.exe (or its folder)." if wanted
                                   else "No Blender found automatically: install it or choose its file.")
            version = blender_version(path)
            if version is None:
                raise InvalidInput(f"{path} did not run as Blender (blender --version failed).")
            return path, version

        def done(result, error):
            if error is not None:
                self.vm.feedback["renderer"] = ("error", str(error))
                return
            path, version = result
            try:
                # Saves it, probes again and tells the portal (off this thread): render jobs come now.
                self.engine.set_blender_path(str(path) if wanted else None)
            except OSError as exc:
                self.vm.feedback["renderer"] = ("error", f"Not saved: {exc}")
                return
            # Shown at once; the engine's new hardware report replaces it when its probe is done.
            renderers = dict(self.vm.hardware.get("renderers") or {})
            renderers["blender"] = {"path": str(path), "version": version}
            self.vm.hardware = {**self.vm.hardware, "renderers": renderers}
            self.vm.feedback["renderer"] = ("ok", f"Using Blender {version}, and the portal is told.")
        self._background("renderer", work, done)

    def set_devices(self, chosen: list[str]) -> str | None:
        """Share these devices (slot ids) from the next start; an error message when none is chosen."""
        if not chosen:
            self.vm.feedback["devices"] = ("error", "Choose at least one device to share.")
            self.vm.changed()
            return self.vm.feedback["devices"][1]
        self.cfg.settings["devices"] = list(dict.fromkeys(chosen))
        try:
            self.cfg.save()
        except OSError as exc:
            self.vm.feedback["devices"] = ("error", f"Not saved: {exc}")
        else:
            self.vm.feedback["devices"] = ("ok", "Saved: Pictor Worker uses these devices from its next start "
                                                 "(one task at a time on each).")
        self.vm.changed()
        return None if self.vm.feedback["devices"][0] == "ok" else self.vm.feedback["devices"][1]

    def set_autostart(self, enabled: bool) -> None:
        try:
            system.set_autostart(enabled, system.launch_command(
                self.cfg.path if self.cfg.path != _default_config_path() else None,
                self.cfg.data_dir if self.cfg.data_dir_explicit else None))
            self.vm.autostart = system.autostart_enabled()
            self.vm.feedback["system"] = ("ok", "Pictor Worker starts when you sign in." if enabled
                                          else "Pictor Worker no longer starts when you sign in.")
        except OSError as exc:
            self.vm.autostart = system.autostart_enabled()
            self.vm.feedback["system"] = ("error", f"Could not change it: {exc}")
        self.vm.changed()

    def set_idle_only(self, enabled: bool, minutes: Any) -> str | None:
        try:
            minutes = int(str(minutes).strip())
            if not 1 <= minutes <= 240:
                raise ValueError
        except ValueError:
            self.vm.feedback["system"] = ("error", "Idle minutes: a whole number from 1 to 240.")
            self.vm.changed()
            return "invalid minutes"
        if enabled and not self.vm.idle_available:
            self.vm.feedback["system"] = ("error", self.vm.idle_reason)
            self.vm.changed()
            return self.vm.idle_reason
        self.vm.prefs.update(idle_only=bool(enabled), idle_minutes=minutes)
        self._save_prefs()
        self.vm.feedback["system"] = ("ok", f"Works only after {minutes} min without input." if enabled
                                      else "Works whenever the app runs.")
        self._next_idle = 0.0
        self.vm.changed()
        return None

    def _check_idle(self) -> None:
        enabled = bool(self.vm.prefs.get("idle_only")) and self._idle_probe is not None
        if not enabled and not self.vm.paused_by_idle:
            return
        probe = self._idle_probe

        def done(idle_seconds, error):
            if error is not None:
                log.warning("idle time unavailable: %s", error)
                idle_seconds = None
            self.apply_idle(idle_seconds)
        if enabled:
            self._background("idle", probe, done)
        else:
            self.apply_idle(None)

    def apply_idle(self, idle_seconds: float | None) -> None:
        """Pause or resume by the "work only when idle" rule, given seconds since the last input."""
        decision = system.idle_decision(bool(self.vm.prefs.get("idle_only")), idle_seconds,
                                        float(self.vm.prefs.get("idle_minutes", 5)) * 60,
                                        self.vm.paused, self.vm.paused_by_idle)
        if decision == "pause":
            self.engine.pause()
            self.vm.paused_by_idle = True
        elif decision == "resume":
            self.vm.paused_by_idle = False
            self.engine.resume()

    def stop(self, done: Callable[[], None], timeout: float = 60.0) -> None:
        """Stop the engine (a running task is handed back), then done() on the UI thread."""
        self.vm.stopping = True
        self.vm.changed()

        def work():
            if self.mining is not None:
                self.mining.stop()
            self.engine.stop(hand_back=True)
            self.engine.join(timeout)
        self._background("stop", work, lambda _r, _e: done())

    # --- preferences kept by the UI (the config file's "ui" section) ----------------------------

    def _load_prefs(self) -> None:
        doc = self.cfg.ui
        if isinstance(doc.get("idle_only"), bool):
            self.vm.prefs["idle_only"] = doc["idle_only"] and self.vm.idle_available
        if isinstance(doc.get("idle_minutes"), int) and 1 <= doc["idle_minutes"] <= 240:
            self.vm.prefs["idle_minutes"] = doc["idle_minutes"]

    def _save_prefs(self) -> None:
        self.cfg.ui.update(self.vm.prefs)
        try:
            self.cfg.save()
        except OSError as exc:
            log.warning("cannot save %s: %s", self.cfg.path, exc)


def _default_config_path() -> Path:
    from ..config import default_config_path
    return default_config_path()
