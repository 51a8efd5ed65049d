"""The miner's supervisor: runs the provider's miner only while mining is on, the GPU is NVIDIA, no
compute task holds that GPU and (with "only when idle") nobody uses the computer; restarts a crashing
miner with back-off and gives up after repeated crashes; measures what it mined and reports it.

Compute first: the engine calls compute_started(device) when a task is claimed for a GPU (None: the
task may use every GPU) and compute_ended(device) after it. compute_started stops a miner holding that
GPU, whole process tree, before it returns (at most about 2 x STOP_GRACE_S), so a task never waits
more than 5 s for its GPU; the miner comes back on the GPUs left free, and on all of them after the
task. Only what the miner's stats API measured between two readings counts as mined time."""

from __future__ import annotations

import codecs
import collections
import contextlib
import enum
import logging
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from ..api import PortalClient, PortalError, PortalUnreachable
from ..runners.base import kill_tree, minimal_env
from ..untrusted import printable
from .adapters import MinerAdapter, MinerConfigError, MinerStats, MiningJob, StatsError, build_adapter, \
    check_value, fetch_stats, split_extra
from .reports import Period, ReportQueue
from .settings import MiningSettings, load_settings, section

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.5  # SIGTERM, then SIGKILL after this: a compute task gets its GPU within ~3.5 s
POLL_S = 2.0  # stats readings; also how often the conditions are looked at again
SETTINGS_REFRESH_S = 60.0  # the portal's mining_config and estimate
IDLE_CHECK_S = 5.0
BACKOFF_S = (5.0, 120.0)  # first and longest wait before restarting a crashed miner
MAX_CRASHES = 5  # in a row: then the miner stays stopped, with the reason shown
STABLE_S = 300.0  # a run this long resets the crash count
LOG_TAIL_LINES = 200
LOG_LINE_CHARS = 400
FLUSH_RETRY_S = 30.0


class MinerStatus(enum.StrEnum):
    OFF = "off"  # mining is not enabled (portal mining_config)
    UNAVAILABLE = "unavailable"  # no NVIDIA GPU, or no miner set up, or a setting to fix
    WAITING_IDLE = "waiting_idle"  # "only when idle" and someone uses the computer
    PAUSED_COMPUTE = "paused_compute"  # a compute task holds the GPU(s)
    STARTING = "starting"  # the miner runs, its stats API has not answered yet
    RUNNING = "running"
    RESTARTING = "restarting"  # it exited: back-off before the next start
    STOPPED = "stopped"  # it crashed too often: stopped until "Try again" or a settings change

    @property
    def mining(self) -> bool:
        return self in (MinerStatus.STARTING, MinerStatus.RUNNING)


@dataclass(frozen=True)
class MiningState:
    """Everything the Mining tab and the headless log show, as one immutable value."""

    status: MinerStatus = MinerStatus.OFF
    reason: str = "Mining is off."
    miner: str | None = None
    coin: str | None = None
    pool: str | None = None
    devices: tuple[int, ...] = ()
    pid: int | None = None
    started_at: float | None = None  # epoch seconds, this run of the miner
    hashrate: float | None = None  # H/s
    accepted: int | None = None
    rejected: int | None = None
    temperature: float | None = None
    power: float | None = None
    crashes: int = 0
    log_tail: tuple[str, ...] = ()
    reports_sent: int = 0
    last_report: str = ""
    pending_reports: int = 0
    estimate_today: str | None = None  # USD decimal strings, the portal's
    estimate_week: str | None = None
    estimate_explanation: str | None = None
    last_stop_s: float | None = None  # how long the last stop for a compute task took


class _Run:
    """One start of the miner process."""

    def __init__(self, proc: subprocess.Popen, devices: tuple[int, ...] | None, tail: collections.deque):
        self.proc = proc
        self.devices = devices
        self.started = time.monotonic()
        self.started_at = time.time()
        self.tail = tail
        self.stopping = False
        self.reader: threading.Thread | None = None
        self.adapter: MinerAdapter | None = None
        self.job: MiningJob | None = None

    def holds(self, device: int | None) -> bool:
        return device is None or self.devices is None or device in self.devices


class _OpenPeriod:
    def __init__(self, at: float, stats: MinerStats):
        self.start = self.last = at
        self.integral = 0.0  # H/s x seconds
        self.base = (stats.accepted, stats.rejected)
        self.now = (stats.accepted, stats.rejected)

    def add(self, at: float, stats: MinerStats) -> None:
        self.integral += stats.hashrate * max(0.0, at - self.last)
        self.last = at
        self.now = (stats.accepted, stats.rejected)

    @property
    def seconds(self) -> float:
        return self.last - self.start


def _delta(now: int | None, base: int | None) -> int | None:
    return now - base if now is not None and base is not None and now >= base else None


def _money_text(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    return value if amount.is_finite() and amount >= 0 else None


def _read_lines(stream, tail: collections.deque) -> None:
    """Keep the miner's last lines (bounded, control characters escaped); split on bare \\r too."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # miners colour their console
    with contextlib.suppress(OSError, ValueError):
        while chunk := os.read(stream.fileno(), 65536):
            pending += decoder.decode(chunk)
            *complete, pending = re.split(r"[\r\n]", pending)
            if len(pending) > 4 * LOG_LINE_CHARS:
                complete.append(pending)
                pending = ""
            for line in complete:
                line = ansi.sub("", line).strip()
                if line:
                    tail.append(printable(line, LOG_LINE_CHARS))
    if pending.strip():
        tail.append(printable(ansi.sub("", pending).strip(), LOG_LINE_CHARS))


class MiningSupervisor:
    """Start it with start(); the engine calls compute_started/compute_ended; a UI reads snapshot()."""

    def __init__(self, client: PortalClient, settings: MiningSettings, data_dir: Path, *,
                 gpus: Callable[[], list[dict[str, Any]] | None],
                 idle_probe: Callable[[], float] | None = None, idle_reason: str = "",
                 worker_name: str = "pictor", poll_s: float = POLL_S,
                 settings_refresh_s: float = SETTINGS_REFRESH_S, report_seconds: float | None = None,
                 backoff: tuple[float, float] = BACKOFF_S, max_crashes: int = MAX_CRASHES,
                 stable_s: float = STABLE_S, stop_grace: float = STOP_GRACE_S,
                 idle_check_s: float = IDLE_CHECK_S, resume_delay_s: float | None = None):
        self.client = client
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.gpus = gpus
        self.idle_probe = idle_probe
        self.idle_reason = idle_reason or "idle time cannot be measured on this computer"
        self.worker_name = re.sub(r"[^A-Za-z0-9_-]", "", worker_name)[:32] or "pictor"
        self.poll_s = poll_s
        self.settings_refresh_s = settings_refresh_s
        self.report_seconds = report_seconds or settings.report_seconds
        self.backoff = backoff
        self.max_crashes = max_crashes
        self.stable_s = stable_s
        self.stop_grace = stop_grace
        self.idle_check_s = idle_check_s
        # After a task the miner waits this long before it starts again: tasks often come back to back,
        # and a miner started for a moment only builds its DAG and stops again.
        self.resume_delay_s = settings.resume_seconds if resume_delay_s is None else resume_delay_s
        self._resume_at = 0.0
        self.queue = ReportQueue(self.data_dir / "mining-reports.sqlite3")
        self.mining_config: dict[str, Any] = {}
        self._state = MiningState(miner=settings.miner, pending_reports=len(self.queue))
        self._lock = threading.RLock()  # the process, the busy devices and the state
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy: collections.Counter = collections.Counter()  # device (None: all) -> tasks (hook)
        self._observed: set[int | None] = set()  # the same, as the engine's state shows it
        self._run: _Run | None = None
        self._period: _OpenPeriod | None = None
        self._crashes = 0
        self._restart_at = 0.0
        self._gave_up: str | None = None
        self._next_settings = 0.0
        self._next_idle = 0.0
        self._idle_s: float | None = None
        self._next_flush = 0.0
        self._config_seen: tuple | None = None
        # (monotonic, what): starts, stops and crashes, for the log and the tests.
        self.events: collections.deque[tuple[float, str]] = collections.deque(maxlen=1000)

    # --- the engine's hook -------------------------------------------------------------------

    def compute_started(self, device: int | None = None) -> float:
        """A compute task now holds GPU `device` (None: every GPU). Returns once the miner is off it;
        the seconds that took."""
        began = time.monotonic()
        with self._lock:
            self._busy[device] += 1
            run = self._run
            if run is not None and run.holds(device):
                self._stop_run("paused for a compute task")
            took = time.monotonic() - began
            self._set(last_stop_s=round(took, 3) if run is not None else self._state.last_stop_s)
            self._decide_now()
        self._wake.set()
        return took

    def compute_ended(self, device: int | None = None) -> None:
        with self._lock:
            if self._busy[device] > 0:
                self._busy[device] -= 1
            if self._busy[device] <= 0:
                del self._busy[device]
            self._resume_at = time.monotonic() + self.resume_delay_s
        self._wake.set()

    def device_hook(self, event: str, device: Any, task_id: int | None = None) -> None:
        """The engine's per-slot hook: ("started" | "ended", devices.Device, task id). A CPU slot beside
        GPUs is pinned away from them (CUDA_VISIBLE_DEVICES=""), so only a GPU slot stops the miner."""
        index = getattr(device, "index", None)
        if index is None:
            return
        if event == "started":
            self.compute_started(index)
        elif event == "ended":
            self.compute_ended(index)

    def _busy_devices(self) -> set[int | None]:
        return set(self._busy) | self._observed

    def observe(self, engine, every_s: float = 0.2) -> threading.Thread:
        """Watch the engine's state too: a task it runs holds the GPU of its slot ("gpuN"), or every GPU
        for an engine without slots. This covers any path that reaches a task without the hook; a task
        seen here is off the miner's GPU within every_s + the stop's ~4 s."""
        def watch():
            while not self._stop.wait(every_s):
                try:
                    self._observed_now(_engine_busy(engine.snapshot()))
                except Exception:
                    log.exception("mining: watching the engine")
        thread = threading.Thread(target=watch, name="pictor-mining-watch", daemon=True)
        thread.start()
        return thread

    def _observed_now(self, busy: set[int | None]) -> None:
        if busy == self._observed:
            return
        with self._lock:
            added, removed = busy - self._observed, self._observed - busy
            self._observed = set(busy)
            if removed:
                self._resume_at = time.monotonic() + self.resume_delay_s
            run = self._run
            if run is not None and any(run.holds(d) for d in added):
                began = time.monotonic()
                self._stop_run("paused for a compute task")
                self._set(last_stop_s=round(time.monotonic() - began, 3))
            self._decide_now()
        self._wake.set()

    # --- controls ------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._loop, name="pictor-mining", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the miner and the supervisor; the period mined so far is reported if the portal answers."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            if self._run is not None:
                self._stop_run("the worker app stopped")
        self._flush(force=True)
        self.queue.close()

    def retry(self) -> None:
        """"Try again" after the miner was given up on."""
        with self._lock:
            self._gave_up, self._crashes, self._restart_at = None, 0, 0.0
        self._wake.set()

    def refresh(self) -> None:
        """Read the portal's mining settings again now (after the Mining tab saved them)."""
        self._next_settings = 0.0
        self._wake.set()

    def update_settings(self, settings: MiningSettings) -> None:
        with self._lock:
            self.settings = settings
            self.report_seconds = settings.report_seconds
            self.resume_delay_s = settings.resume_seconds
        self.retry()

    def snapshot(self) -> MiningState:
        return self._state

    def _set(self, **changes: Any) -> None:
        with self._lock:
            before, self._state = self._state, replace(self._state, **changes)
        if self._state.status != before.status:  # the headless log says each change once
            log.info("mining: %s: %s", self._state.status, self._state.reason)

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # a bug here must not leave a miner running unwatched
                log.exception("mining supervisor")
                with self._lock:
                    if self._run is not None:
                        self._stop_run("internal error")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_settings:
            self._next_settings = now + self.settings_refresh_s
            self._refresh_settings()
        if self.settings.idle_only and self.idle_probe is not None and now >= self._next_idle:
            self._next_idle = now + self.idle_check_s
            try:
                self._idle_s = float(self.idle_probe())
            except Exception as exc:  # an idle probe that fails counts as "not idle": compute stays safe
                log.warning("idle time unavailable: %s", exc)
                self._idle_s = None
        with self._lock:
            self._decide_now()
            run = self._run
        if run is not None and not run.stopping:
            self._read_stats(run)
        self._flush()

    def _refresh_settings(self) -> None:
        try:
            answer = self.client.settings()
        except (PortalUnreachable, PortalError) as exc:
            log.info("mining: settings not refreshed: %s", exc)
            return
        if not isinstance(answer, dict):
            return
        config = answer.get("mining_config")
        if isinstance(config, dict):
            self.mining_config = {k: config.get(k) for k in ("pool", "coin", "wallet", "extra", "enabled")}
        estimate = answer.get("mining_estimate")
        if isinstance(estimate, dict):
            explanation = estimate.get("explanation")
            self._set(estimate_today=_money_text(estimate.get("today")),
                      estimate_week=_money_text(estimate.get("last_7_days")),
                      estimate_explanation=printable(explanation, 300) if isinstance(explanation, str) else None)
        name = answer.get("name")
        if isinstance(name, str) and name.strip():
            self.worker_name = re.sub(r"[^A-Za-z0-9_-]", "", name)[:32] or self.worker_name

    def _job(self) -> tuple[MinerAdapter, str, MiningJob] | str:
        """What to run, or why nothing can (a sentence for the tab)."""
        c, s = self.mining_config, self.settings
        try:
            adapter = build_adapter(s.miner, s.argv, s.stats)
            extra = adapter.check_extra(split_extra(c.get("extra") or ""))
        except MinerConfigError as exc:
            return str(exc)
        executable = s.argv[0] if s.miner == "custom" else s.path
        if not executable:
            return f"Set the {adapter.label} program's file (\"path\" in the mining section of the config file)."
        if not os.path.isfile(executable):
            return f"The miner program {executable} does not exist: install {adapter.label} or fix \"path\"."
        pool, coin, wallet = (str(c.get(k) or "") for k in ("pool", "coin", "wallet"))
        if not (pool and coin and wallet):
            return "Fill in the pool, the coin and the wallet address."
        try:  # the portal's answer is untrusted: nothing in it may become an option
            for name, value in (("pool", pool), ("coin", coin), ("wallet", wallet)):
                check_value(name, value)
        except MinerConfigError as exc:
            return str(exc)
        try:
            algorithm = adapter.algorithm_for(coin, s.algorithm)
        except MinerConfigError as exc:
            return str(exc)
        job = MiningJob(pool=pool, coin=coin, wallet=wallet, worker=self.worker_name, algorithm=algorithm,
                        api_port=s.api_port or adapter.default_api_port, extra=tuple(extra))
        return adapter, executable, job

    def _decide_now(self) -> None:
        """Under the lock: stop what must not run, start what should, and say why."""
        c = self.mining_config
        if not c.get("enabled"):
            return self._hold(MinerStatus.OFF, "Mining is off: turn it on in the Mining tab.")
        gpus = self.gpus()
        if gpus is None:  # the hardware probe has not answered yet
            return self._hold(MinerStatus.UNAVAILABLE, "Checking this computer's GPUs…")
        if not gpus:
            return self._hold(MinerStatus.UNAVAILABLE, "Mining needs an NVIDIA GPU, and none was found.")
        job = self._job()
        if isinstance(job, str):
            return self._hold(MinerStatus.UNAVAILABLE, job)
        adapter, executable, job = job
        key = (adapter.key, executable, job)
        if self._config_seen is not None and key != self._config_seen and self._gave_up:
            self._gave_up, self._crashes = None, 0  # a changed setup deserves a fresh start
        self._config_seen = key
        busy = self._busy_devices()
        if None in busy:
            return self._hold(MinerStatus.PAUSED_COMPUTE, "Paused: a compute task is using the GPU. "
                                                          "Mining resumes when it ends.")
        free = tuple(i for i in range(len(gpus)) if i not in busy)
        if not free:
            return self._hold(MinerStatus.PAUSED_COMPUTE, "Paused: compute tasks are using every GPU. "
                                                          "Mining resumes when one ends.")
        if self.settings.idle_only:
            threshold = self.settings.idle_minutes * 60
            if self.idle_probe is None:
                return self._hold(MinerStatus.WAITING_IDLE, f"Waiting for idle, but {self.idle_reason}.")
            if self._idle_s is None or self._idle_s < threshold:
                return self._hold(MinerStatus.WAITING_IDLE, f"Waiting until nobody has used this computer for "
                                                            f"{self.settings.idle_minutes} min.")
        if self._gave_up:
            return self._hold(MinerStatus.STOPPED, self._gave_up)
        devices = free if len(free) < len(gpus) else None
        if self._run is None and time.monotonic() < self._resume_at:
            return self._hold(MinerStatus.PAUSED_COMPUTE, "A compute task just ended: mining resumes in a few "
                                                          "seconds unless another one comes.")
        job = replace(job, devices=devices)
        run = self._run
        if run is not None:
            if run.proc.poll() is not None:
                self._crashed(run)
                return
            if run.devices != devices:
                self._stop_run("the free GPUs changed")
            else:
                return
        if time.monotonic() < self._restart_at:
            left = self._restart_at - time.monotonic()
            return self._hold(MinerStatus.RESTARTING, f"The miner exited; restarting in {left:.0f} s "
                                                      f"(crash {self._crashes} of {self.max_crashes}).")
        self._start_run(adapter, executable, job)

    def _hold(self, status: MinerStatus, reason: str) -> None:
        if self._run is not None:
            self._stop_run(reason)
        self._set(status=status, reason=reason, pid=None, hashrate=None)

    # --- the process ---------------------------------------------------------------------------

    def _start_run(self, adapter: MinerAdapter, executable: str, job: MiningJob) -> None:
        argv = adapter.argv(executable, job)
        workdir = self.data_dir / "mining"
        workdir.mkdir(parents=True, exist_ok=True)
        if sys.platform == "win32":
            flags = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
        else:
            flags = {"start_new_session": True}  # its own group: kill_tree reaches what it starts
        tail: collections.deque = collections.deque(self._state.log_tail, maxlen=LOG_TAIL_LINES)
        try:
            proc = subprocess.Popen(argv, env=minimal_env(), cwd=workdir, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **flags)
        except OSError as exc:
            self._gave_up = f"The miner could not be started: {exc.strerror or exc}. Check \"path\"."
            self._set(status=MinerStatus.STOPPED, reason=self._gave_up)
            return
        run = _Run(proc, job.devices, tail)
        run.adapter, run.job = adapter, job
        run.reader = threading.Thread(target=_read_lines, args=(proc.stdout, tail), daemon=True,
                                      name="pictor-miner-log")
        run.reader.start()
        self._run = run
        self.events.append((time.monotonic(), "start"))
        log.info("mining: started %s (pid %s) for %s on GPU(s) %s", adapter.label, proc.pid, job.coin,
                 "all" if job.devices is None else job.devices)
        self._set(status=MinerStatus.STARTING, reason=f"{adapter.label} is starting…", miner=adapter.key,
                  coin=job.coin, pool=job.pool, devices=job.devices or tuple(range(len(self.gpus() or []))),
                  pid=proc.pid, started_at=run.started_at, hashrate=None, accepted=None, rejected=None,
                  temperature=None, power=None)

    def _stop_run(self, why: str) -> None:
        """Under the lock: stop the miner's whole process tree and close the period it mined."""
        run = self._run
        if run is None:
            return
        run.stopping = True
        kill_tree(run.proc, grace=self.stop_grace)
        self._run = None
        self.events.append((time.monotonic(), "stop"))
        if run.reader is not None:
            run.reader.join(timeout=0.3)  # its output ends with the tree; what is left is not waited for
        with contextlib.suppress(OSError):
            run.proc.stdout.close()
        self._close_period(run.job)
        if time.monotonic() - run.started >= self.stable_s:
            self._crashes = 0
        log.info("mining: stopped (%s)", why)
        self._set(pid=None, hashrate=None, log_tail=tuple(run.tail))

    def _crashed(self, run: _Run) -> None:
        code = run.proc.returncode
        if run.reader is not None:
            run.reader.join(timeout=1.0)
        with contextlib.suppress(OSError):
            run.proc.stdout.close()
        kill_tree(run.proc, grace=0.5)  # whatever it left behind
        self._run = None
        self._close_period(run.job)
        self.events.append((time.monotonic(), "crash"))
        ran = time.monotonic() - run.started
        self._crashes = 1 if ran >= self.stable_s else self._crashes + 1
        last = run.tail[-1] if run.tail else "no output"
        log.warning("mining: the miner exited with code %s after %.0f s: %s", code, ran, last)
        if self._crashes >= self.max_crashes:
            self._gave_up = (f"Stopped: the miner exited {self._crashes} times in a row (last exit code {code}: "
                             f"{last[:160]}). Check its log below, then press Try again.")
            self._set(status=MinerStatus.STOPPED, reason=self._gave_up, pid=None, hashrate=None,
                      crashes=self._crashes, log_tail=tuple(run.tail))
            return
        wait = min(self.backoff[0] * 2 ** (self._crashes - 1), self.backoff[1])
        self._restart_at = time.monotonic() + wait
        self._set(status=MinerStatus.RESTARTING, pid=None, hashrate=None, crashes=self._crashes,
                  reason=f"The miner exited (code {code}); restarting in {wait:.0f} s "
                         f"(crash {self._crashes} of {self.max_crashes}).", log_tail=tuple(run.tail))

    # --- measuring and reporting ----------------------------------------------------------------

    def _read_stats(self, run: _Run) -> None:
        try:
            stats = fetch_stats(run.adapter, run.job.api_port)
        except StatsError as exc:
            stats, problem = None, str(exc)
        at = time.monotonic()
        with self._lock:
            if self._run is not run or run.stopping:
                return  # stopped meanwhile (a compute task): this reading counts for nothing
            if run.proc.poll() is not None:
                self._crashed(run)
                return
            if stats is None:
                if self._period is not None:
                    self._close_period(run.job)  # a gap in the readings is a gap in what counts
                self._set(log_tail=tuple(run.tail),
                          reason=f"{run.adapter.label} runs; no stats yet: {problem}")
                return
            if self._period is None:
                self._period = _OpenPeriod(at, stats)
            else:
                self._period.add(at, stats)
                if self._period.seconds >= self.report_seconds:
                    self._close_period(run.job)
                    self._period = _OpenPeriod(at, stats)
            self._set(status=MinerStatus.RUNNING, reason=f"Mining {run.job.coin} with {run.adapter.label}.",
                      hashrate=stats.hashrate, accepted=stats.accepted, rejected=stats.rejected,
                      temperature=stats.temperature, power=stats.power, log_tail=tuple(run.tail))

    def _close_period(self, job: MiningJob | None) -> None:
        period, self._period = self._period, None
        if period is None or period.seconds < 1 or job is None:
            return
        seconds = int(period.seconds)
        mean = period.integral / period.seconds
        self.queue.put(Period(coin=job.coin, pool=job.pool, hashrate=mean, seconds=seconds,
                              accepted=_delta(period.now[0], period.base[0]),
                              rejected=_delta(period.now[1], period.base[1])))
        self._next_flush = 0.0
        self._set(pending_reports=len(self.queue))

    def _flush(self, force: bool = False) -> None:
        if not len(self.queue) or (not force and time.monotonic() < self._next_flush):
            return
        delivery = self.queue.flush(self.client)
        self._next_flush = time.monotonic() + FLUSH_RETRY_S if delivery.blocked else 0.0
        changes: dict[str, Any] = {"pending_reports": len(self.queue)}
        if delivery.accepted:
            last = delivery.accepted[-1]
            earnings = _money_text(last.get("earnings"))
            seconds = last.get("period_seconds")
            changes["reports_sent"] = self._state.reports_sent + len(delivery.accepted)
            changes["last_report"] = (f"Reported {seconds if type(seconds) is int else '?'} s of mining; the portal "
                                      f"estimates ${earnings or '0'} for it.")
            self._next_settings = 0.0  # its estimate for today moved
        if delivery.refused:
            changes["last_report"] = f"The portal refused a mining report: {delivery.refused[-1]}"
        elif delivery.blocked is not None and not delivery.accepted:
            changes["last_report"] = f"{len(self.queue)} report(s) wait: the portal did not take them now."
        self._set(**changes)


def _engine_gpus(engine) -> list[dict[str, Any]] | None:
    """The NVIDIA GPUs of the engine's hardware report (GPUtil); None until it has probed."""
    report = getattr(engine, "hardware", None)
    if not report:
        return None
    return [g for g in report.get("gpus") or [] if isinstance(g, dict)]


def _engine_busy(snap) -> set[int | None]:
    """The GPUs an engine state shows tasks on: per slot ("gpu3" -> 3; a CPU slot holds none), or
    every GPU (None) for a task without slots."""
    slots = getattr(snap, "slots", None) or ()
    busy: set[int | None] = set()
    for slot in slots:
        if getattr(slot, "task_id", None) is not None:
            match = re.fullmatch(r"gpu(\d+)", str(getattr(slot, "id", "")))
            if match:
                busy.add(int(match.group(1)))
            elif len(slots) == 1:
                busy.add(None)  # one slot is the whole machine
    if not slots and getattr(snap, "task_id", None) is not None:
        busy.add(None)
    return busy


def attach(engine, cfg, *, idle_probe: Callable[[], float] | None = None, idle_reason: str = "",
           **options: Any) -> MiningSupervisor:
    """A supervisor for this engine's worker, hooked into it and started: the engine's GPUs are the
    hardware probe's NVIDIA GPUs, and the engine calls compute_started/compute_ended around tasks."""
    settings = load_settings(section(cfg))
    client = PortalClient(cfg.server_url, cfg.token, timeout=(5.0, 15.0), attempts=2)
    supervisor = MiningSupervisor(client, settings, cfg.data_dir,
                                  gpus=lambda: _engine_gpus(engine),
                                  idle_probe=idle_probe, idle_reason=idle_reason, **options)
    hooks = getattr(engine, "device_hooks", None)
    if isinstance(hooks, list):
        hooks.append(supervisor.device_hook)
    supervisor.observe(engine)
    supervisor.start()
    return supervisor
