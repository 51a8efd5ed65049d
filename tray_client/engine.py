"""The worker loop and its state: hello, heartbeats, claim, download, run, report, upload, complete.

No UI imports: the tray app and the headless CLI both drive this class and read its one state object,
an immutable EngineState (snapshot() or the events queue). The words the UI shows for a state, an outcome
or a benchmark phase are keyed by the enums defined here, so no module re-lists them as strings."""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import queue
import shutil
import stat
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import psutil

from . import __version__, compliance, devices, hardware
from .api import InputTooLarge, PortalClient, PortalError, PortalUnreachable, retry_later
from .cache import InputCache, InputHashMismatch
from .config import WorkerConfig, set_aside
from .devices import Device, DeviceProbe
from .outbox import Outbox
from .untrusted import BadTask, TaskInput, check_task, clamp_interval, clamp_poll_interval, printable, task_id_of
from .runners import RUNNERS, UnknownJobType, benchmark, get_runner
from .runners.base import Progress, RunFailed, RunnerSettings

log = logging.getLogger(__name__)

# Exit codes of Engine.run() and so of `pictor-worker run`.
EXIT_OK = 0
EXIT_TASK_FAILED = 1  # --once: the task ran and failed
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3  # --once: the portal did not answer
EXIT_AUTH = 4  # the portal refused our token: pair again
EXIT_ALREADY_RUNNING = 5

MAX_BID = 100  # USD per hour; the portal refuses more
SHUTDOWN_REASON = "worker shutting down"
RESTART_REASON = "the worker app restarted while running this task; it could not be resumed"
# Messages that other modules recognise (the UI's headline, `pictor-worker status`): one spelling each.
MESSAGE_STARTING = "starting"
MESSAGE_STOPPED = "stopped"
MESSAGE_PORTAL_PAUSED = "paused from the portal: no new tasks"
MESSAGE_UNREACHABLE = "portal unreachable"  # the start of every message about a portal that did not answer

# --- timing ---------------------------------------------------------------------------------------
# The portal's own default (HEARTBEAT_SECONDS); its hello and heartbeat answers replace it, so this only
# matters until the first answer. Well inside the portal's OFFLINE_AFTER_SECONDS (90): a lost beat or
# two never shows the worker as offline.
HEARTBEAT_S = 15.0
# Progress to the portal: often enough that the creator's page moves, seldom enough that a farm of
# workers does not flood it. Only the latest value counts (the outbox keeps one per task).
PROGRESS_REPORT_S = 2.0
# The first and the longest wait between claims (or hellos) that found nothing or failed: an idle
# worker asks again within a second, and a long outage costs the portal one request per 30 s per worker.
IDLE_BACKOFF_S = (1.0, 30.0)
# On stop, a task this close to its end may finish (instead of losing its work to a hand-back), but no
# longer than this: enough for a last tile and the upload, short enough that a stop still stops.
FINISH_GRACE_S = 30.0
NEARLY_DONE_FRACTION = 0.95  # "this close": progress at or above it (or an ETA under half the grace)
# A renderer prints many progress lines a second; a UI redraws at most this often, so events for the rest
# would only fill the queue.
PROGRESS_EVENT_MIN_S = 0.25
# How long to wait for the progress and heartbeat threads on the way out. They are daemons blocked in at
# most one HTTP call: past this the task is reported anyway and the thread dies with the process.
REPORTER_JOIN_S = 10.0
HEARTBEAT_JOIN_S = 5.0
SPEEDTEST_EVERY_S = 7 * 24 * 3600  # connections change rarely; a week-old figure is still telling


class State(enum.StrEnum):
    """What the worker is doing, as the portal's presence and the UI's colours know it."""

    IDLE = "idle"
    BUSY = "busy"
    PAUSED = "paused"
    ERROR = "error"
    OFFLINE = "offline"


class TaskOutcome(enum.StrEnum):
    """How process() ended a task; the word ends the "task N <outcome>" message."""

    COMPLETED = "completed"  # the portal accepted the outputs
    FAILED = "failed"  # reported failed, or the portal refused the result
    CANCELED = "canceled"  # the portal took the task away: nothing to report
    HANDED_BACK = "handed_back"  # we are stopping: the portal gives it to another worker


class BenchmarkPhase(enum.StrEnum):
    """Where the benchmark is: none asked for since start, queued (it runs between tasks, never beside
    one: it would skew both), running, done (bench_score is its result) or failed (benchmark_error)."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """Asked for and not finished yet."""
        return self in (BenchmarkPhase.QUEUED, BenchmarkPhase.RUNNING)


class EngineError(Exception):
    """The engine cannot start (another one owns the data folder, not paired...)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


# The fields of one running task, kept per device slot (SlotState) and mirrored at the top of EngineState
# for the slot the headline shows (the first busy one): a one-slot node reads exactly as before slots.
TASK_FIELDS = ("job_id", "job_type", "software", "task_id", "progress", "progress_message", "eta_s",
               "started_at", "reward_estimate")


@dataclass(frozen=True)
class SlotState:
    """One device slot (a GPU or the CPU) as the Computing tab shows it: the device and its task."""

    id: str
    kind: str = "CPU"
    name: str = ""
    job_id: int | None = None
    job_type: str | None = None
    software: str | None = None
    task_id: int | None = None
    progress: float = 0.0
    progress_message: str = ""
    eta_s: float | None = None
    started_at: float | None = None
    reward_estimate: str | None = None
    completed: int = 0  # tasks this slot completed since start

    @property
    def state(self) -> State:
        return State.BUSY if self.task_id is not None else State.IDLE


@dataclass(frozen=True)
class EngineState:
    """Everything a UI shows about the worker, as one immutable value: the engine swaps in a new one on
    every change, so what snapshot() or an event hands out never changes under its reader."""

    state: State = State.OFFLINE
    message: str = MESSAGE_STARTING
    online: bool = False
    paused: bool = False
    error: str | None = None  # a condition the provider must fix (no renderer, disk full, token)
    # A missing optional capability (Real-ESRGAN beside a working Blender): the worker still works, so
    # this is said, never shown as an error.
    note: str | None = None
    server_url: str | None = None
    worker_id: int | None = None
    # The current task.
    job_id: int | None = None
    job_type: str | None = None
    software: str | None = None
    task_id: int | None = None
    progress: float = 0.0
    progress_message: str = ""
    eta_s: float | None = None
    started_at: float | None = None  # epoch seconds
    reward_estimate: str | None = None
    # Market and history.
    bid: str | None = None
    average_bid: str | None = None
    bench_score: int | None = None  # the portal's, from its own timed runs: what prices this worker
    bench_score_reported: int | None = None  # this machine's own benchmark: shown, never priced
    estimated_earning_per_hour: str | None = None
    last_error: str | None = None  # the last task failure, for the Computing tab
    last_reward: str | None = None
    earned_session: str = "0"
    tasks_completed: int = 0
    tasks_failed: int = 0
    outbox_pending: int = 0
    job_types: tuple[str, ...] = ()
    benchmark: BenchmarkPhase = BenchmarkPhase.IDLE
    benchmark_error: str | None = None
    slots: tuple[SlotState, ...] = ()  # the devices shared, each with its own task
    devices_found: tuple[SlotState, ...] = ()  # every device found, shared or not (the Settings tab)

    def __post_init__(self):
        # Values read back from JSON (the status file) arrive as plain strings and lists: the enums
        # check them, and a tuple keeps the value immutable.
        object.__setattr__(self, "state", State(self.state))
        object.__setattr__(self, "benchmark", BenchmarkPhase(self.benchmark))
        object.__setattr__(self, "job_types", tuple(self.job_types))
        names = {f.name for f in fields(SlotState)}
        for key in ("slots", "devices_found"):
            object.__setattr__(self, key, tuple(
                s if isinstance(s, SlotState) else SlotState(**{k: v for k, v in s.items() if k in names})
                for s in getattr(self, key) if isinstance(s, SlotState) or (isinstance(s, dict) and "id" in s)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the status file that `pictor-worker status` reads (enums as their strings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EngineState:
        """Read back what to_dict() wrote; keys that are not state (pid, updated_at) are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in doc.items() if key in names})


class _InstanceLock:
    """One engine per data folder: the OS drops the lock when the process dies, however it dies."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            if sys.platform == "win32":
                import msvcrt
                self.handle.seek(0)
                msvcrt.locking(self.handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            self.handle = None
            return False
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases flock / msvcrt locks
            self.handle = None


class _Wake:
    """An Event that every thread sees on its own: set() wakes all sleeping slot loops, and a thread's
    clear() only forgets the wake-ups it has seen (one slot waking must not swallow another's)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._count = 0
        self._seen: dict[int, int] = {}  # thread id -> the count it has cleared up to

    def _pending(self) -> bool:
        return self._count > self._seen.get(threading.get_ident(), 0)

    def set(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def is_set(self) -> bool:
        with self._cond:
            return self._pending()

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(self._pending, timeout)

    def clear(self) -> None:
        with self._cond:
            self._seen[threading.get_ident()] = self._count


class _Slot:
    """The engine's own side of one device slot: its device, how its tasks are pinned to it, and what its
    running task needs (cancel, latest progress, the crash-recovery task file)."""

    def __init__(self, device: Device, task_path: Path, pinned: bool, claim_slot: str | None):
        self.device = device
        self.id = device.id
        self.task_path = task_path
        self.pinned = pinned  # False: one slot using the whole machine, as before slots existed
        self.claim_slot = claim_slot  # the slot named in claims; None: the portal picks the only one
        self.cancel = threading.Event()  # the portal wants this slot's task stopped
        self.latest: Progress | None = None
        self.last_progress_event = 0.0

    def visible_gpus(self) -> str | None:
        if not self.pinned:
            return None
        return str(self.device.index) if self.device.is_gpu else ""


def _rmtree(path: Path) -> None:
    def writable(func, p, _exc):  # cached inputs are read-only; Windows refuses to delete them
        with contextlib.suppress(OSError):
            os.chmod(p, stat.S_IWUSR | stat.S_IRUSR)
            func(p)
    if path.exists():
        shutil.rmtree(path, onerror=writable)


def _derived_state(s: EngineState) -> State:
    """One state for the header, the tray and the portal; a task outranks everything, and being
    offline outranks an error (it may be the cause)."""
    if s.task_id is not None:
        return State.BUSY
    if not s.online:
        return State.OFFLINE
    if s.error:
        return State.ERROR
    if s.paused:
        return State.PAUSED
    return State.IDLE


def _money(value: Any) -> Decimal | None:
    if type(value) not in (str, int, float) or (isinstance(value, str) and len(value) > 40):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


class Engine:
    """One worker: call run() (blocking) or start() (a thread); stop(), pause(), resume() from anywhere.

    on_event is called from the engine's own threads; a Tk UI should rather drain `events` with
    after() on its main thread. Every event carries the whole state (snapshot())."""

    def __init__(self, cfg: WorkerConfig, *, client: PortalClient | None = None,
                 probe: Callable[..., dict[str, Any]] = hardware.probe,
                 device_probe: DeviceProbe | None = None,
                 runner_factory: Callable[..., Any] = get_runner,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 progress_interval: float = PROGRESS_REPORT_S,
                 idle_backoff: tuple[float, float] = IDLE_BACKOFF_S, finish_grace_s: float = FINISH_GRACE_S):
        if not cfg.paired:
            raise EngineError("this worker is not paired: run `pictor-worker pair CODE --server URL`")
        self.cfg = cfg
        self.client = client or PortalClient(cfg.server_url, cfg.token)
        self.probe = probe
        # The devices found (devices.probe is the real one); None: the GPUs of the hardware report.
        self.device_probe = device_probe
        self.runner_factory = runner_factory
        self.on_event = on_event
        self.events: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        self.progress_interval = progress_interval
        self.idle_backoff = idle_backoff
        self.finish_grace_s = finish_grace_s
        self.heartbeat_s = HEARTBEAT_S  # these three as the portal last asked, clamped (untrusted.py)
        self.poll_s: float | None = None
        self.lease_s: float | None = None
        self.latest_app_version: str | None = None
        self.hardware: dict[str, Any] = {}
        self.gpu_backend: str | None = None

        self._state = EngineState(server_url=cfg.server_url, worker_id=cfg.worker_id)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = _Wake()
        self._paused = threading.Event()
        self._portal_paused = False  # the pause came from the portal (heartbeat answer), not from us
        self._slots: list[_Slot] = []  # the shared devices, decided at the first hello
        # Called with ("started" | "ended", device, task id) around every task on a device (the miner
        # stops for a GPU while it computes a task: tray_client/mining/ adds itself here).
        self.device_hooks: list[Callable[[str, Device, int], None]] = []
        self._rejected: dict[int, Exception] = {}  # task id -> the portal's refusal of its complete
        self._hand_back = threading.Event()  # we are shutting down: give the task back
        self._heartbeat_stop = threading.Event()
        self._bench_requested = threading.Event()
        self._hello_lock = threading.Lock()  # one renderer probe and hello at a time
        self._hello_generation = 0  # a newer refresh_hello() supersedes an older one still retrying
        self._renderer_error: str | None = None  # the error we set for a missing renderer, to clear it
        self._thread: threading.Thread | None = None
        self._instance_lock = _InstanceLock(cfg.data_dir / "engine.lock")
        self.exit_code: int | None = None
        self._opened = False
        self._disk_error: str | None = None
        self._notices: list[str] = list(cfg.set_aside)  # local files found unreadable and set aside
        self.cache: InputCache | None = None
        self.outbox: Outbox | None = None

    # --- the state object and events ---------------------------------------------------------

    def snapshot(self) -> EngineState:
        """The state now. Immutable, so it is handed out as it is: no copy, no lock for the reader."""
        return self._state

    def _update(self, kind: str = "state", **changes: Any) -> None:
        with self._lock:
            if self.outbox is not None:
                changes["outbox_pending"] = len(self.outbox)
            state = replace(self._state, **changes)
            self._state = snapshot = replace(state, state=_derived_state(state))
        self._emit(kind, snapshot)

    def _slot_update(self, slot: _Slot, kind: str = "state", **changes: Any) -> None:
        """Like _update, with the task fields going to `slot`; the top-level task fields then mirror the
        first busy slot (or this one when all are idle)."""
        task_changes = {k: changes.pop(k) for k in (*TASK_FIELDS, "completed") if k in changes}
        with self._lock:
            if self.outbox is not None:
                changes["outbox_pending"] = len(self.outbox)
            state = self._with_slot(self._state, slot, task_changes)
            state = replace(state, **changes)
            self._state = snapshot = replace(state, state=_derived_state(state))
        self._emit(kind, snapshot, slot=slot.id)

    def _with_slot(self, state: EngineState, slot: _Slot, task_changes: dict[str, Any]) -> EngineState:
        """state with `slot`'s task fields changed and the headline's task fields re-mirrored."""
        slots = tuple(replace(s, **task_changes) if s.id == slot.id else s for s in state.slots)
        if not any(s.id == slot.id for s in slots):  # process() without open(): a slot of its own
            slots += (replace(SlotState(slot.id, slot.device.kind, slot.device.name), **task_changes),)
        shown = next((s for s in slots if s.task_id is not None), None) or \
            next(s for s in slots if s.id == slot.id)
        return replace(state, slots=slots, **{k: getattr(shown, k) for k in TASK_FIELDS})

    def _emit(self, kind: str, snapshot: EngineState, **detail: Any) -> None:
        event = {"kind": kind, "state": snapshot, **detail}
        while True:
            try:
                self.events.put_nowait(event)
                break
            except queue.Full:  # nobody drains it (headless): keep the newest
                with contextlib.suppress(queue.Empty):
                    self.events.get_nowait()
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a UI bug must not stop the worker
                log.exception("event callback failed")
        if kind in ("state", "task_started", "task_finished"):
            self._write_status(snapshot)

    def _write_status(self, snapshot: EngineState) -> None:
        """What `pictor-worker status` prints while this engine runs."""
        with contextlib.suppress(OSError):
            tmp = self.cfg.data_dir / "status.json.tmp"
            tmp.write_text(json.dumps({**snapshot.to_dict(), "pid": os.getpid(), "updated_at": time.time()}))
            os.replace(tmp, self.cfg.data_dir / "status.json")

    # --- controls (any thread) ---------------------------------------------------------------

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="pictor-engine", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, hand_back: bool | None = None) -> None:
        """Stop claiming and exit. The current task is handed back, unless hand_back is None and the
        task is nearly done: then it may finish within finish_grace_s."""
        first = not self._stop.is_set()
        self._stop.set()
        self._wake.set()
        snap = self.snapshot()
        if snap.task_id is None:
            return
        # Every running task (one per busy slot) must be nearly done for the engine to wait for them.
        running = [s for s in snap.slots if s.task_id is not None] or [snap]
        nearly_done = all(s.progress >= NEARLY_DONE_FRACTION or (s.eta_s is not None
                                                                 and s.eta_s <= self.finish_grace_s / 2)
                          for s in running)
        if hand_back or (hand_back is None and not (first and nearly_done)):
            log.info("handing task %s back to the portal", ", ".join(str(s.task_id) for s in running))
            self._hand_back.set()
        else:
            log.info("task %s is nearly done: finishing it before exiting", snap.task_id)
            timer = threading.Timer(self.finish_grace_s, self._hand_back.set)
            timer.daemon = True
            timer.start()

    def pause(self) -> None:
        """Take no new tasks; a running task finishes."""
        self._paused.set()
        self._wake.set()
        self._update(paused=True, message=self._pause_message())

    def _pause_message(self) -> str:
        return MESSAGE_PORTAL_PAUSED if self._portal_paused else "paused: no new tasks"

    def _apply_portal_pause(self, answer: dict[str, Any]) -> None:
        """Pause or resume as the provider chose in the portal. Only a real boolean counts (an answer
        is untrusted), and "not paused" lifts only a pause the portal made, never the provider's own."""
        paused = answer.get("paused")
        if paused is True and not self._paused.is_set():
            log.info("paused from the portal: no new tasks")
            self._portal_paused = True
            self.pause()
        elif paused is False and self._portal_paused:
            log.info("resumed from the portal")
            self._portal_paused = False
            self.resume()

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()
        self._update(paused=False, message="looking for work")

    def request_benchmark(self) -> None:
        """Run the benchmark between tasks (never beside one: it would skew both)."""
        if self.snapshot().benchmark != BenchmarkPhase.RUNNING:
            self._update(benchmark=BenchmarkPhase.QUEUED, benchmark_error=None)
        self._bench_requested.set()
        self._wake.set()

    def set_blender_path(self, path: str | None) -> threading.Thread:
        """Use the Blender at path (None: search for it again), save it, and tell the portal now."""
        self.cfg.settings["blender_path"] = path or None
        self.cfg.save()
        return self.refresh_hello()

    def refresh_hello(self) -> threading.Thread:
        """Probe the renderers again and say hello with what is found, on a thread of its own (the probe
        runs Blender; the portal may be slow). Clears a "not found" error once the renderer is there, so
        the portal offers its jobs without a restart. Returns the thread (tests join it)."""
        with self._lock:
            self._hello_generation += 1
            generation = self._hello_generation
        thread = threading.Thread(target=self._refresh_hello, args=(generation,), name="pictor-hello",
                                  daemon=True)
        thread.start()
        return thread

    def _refresh_hello(self, generation: int) -> None:
        delay = self.idle_backoff[0]
        while not self._stop.is_set() and generation == self._hello_generation:
            with self._hello_lock:
                if generation != self._hello_generation:
                    return
                report = self.hello_report()
                self._apply_renderers(report)
                # Hello counts as a heartbeat: report what the engine is doing now, not "just started".
                report["state"], report["message"] = self._presence()
                try:
                    answer = self.client.hello(report)
                except (PortalUnreachable, PortalError) as exc:
                    self._portal_problem(exc, "hello")
                    if not retry_later(exc):  # refused: sending the same report again will not help
                        return
                else:
                    if not self._stop.is_set():  # a stopped engine stays offline
                        self._update(online=True)
                    self._apply_hello(answer)
                    log.info("renderers probed again; job types: %s",
                             ", ".join(self.snapshot().job_types) or "none")
                    return
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.idle_backoff[1])

    def set_bid(self, bid: str | None) -> dict[str, Any]:
        """Set the custom bid (USD per compute hour, a decimal string) or None for the network average."""
        if bid is not None:
            value = _money(bid)
            if value is None or not 0 < value <= MAX_BID:
                raise ValueError(f"the bid must be a number of USD per hour above 0 and at most {MAX_BID}")
            bid = str(value)
        answer = self.client.update_settings({"bid": bid})
        self._apply_market(answer)
        return answer

    # --- the loop ----------------------------------------------------------------------------

    def run(self, once: bool = False) -> int:
        """Work until stop() (or, with once, after at most one task). Returns an exit code."""
        code = self.open(once)
        if code is not None:
            self.exit_code = code
            self.close()
            return code
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="pictor-heartbeat", daemon=True)
        heartbeat.start()
        try:
            self.exit_code = self._loop(once)
        finally:
            self._heartbeat_stop.set()
            heartbeat.join(timeout=HEARTBEAT_JOIN_S)
            self.close()
        return self.exit_code

    def open(self, once: bool = False) -> int | None:
        """Take the data folder, report what the last run left, and say hello; an exit code on failure.

        run() calls it; so can a tool that feeds tasks to process() itself (bench/worker_overhead.py)."""
        self.cfg.ensure_dirs()
        if not self._instance_lock.acquire():
            self._update(error=f"another Pictor Worker is running with {self.cfg.data_dir}")
            return EXIT_ALREADY_RUNNING
        self._opened = True
        try:
            self.cache = InputCache(self.cfg.cache_dir, int(self.cfg.settings["cache_max_bytes"]))
            self.cache.remove_partial_downloads()
            self.outbox, notices = Outbox.open(self.cfg.outbox_path, self.cfg.data_dir / "outbox-files")
            self._notices += notices
            self._recover_previous_run()
            self.outbox.pending()  # sets aside updates it cannot send, so they are told now
            self._notices += self.outbox.notices
            if self._notices:  # one line each in the log already; the UI and status show the last
                self._update(last_error=printable("; ".join(self._notices), 300),
                             message=printable(self._notices[-1], 200))
            return self._hello_until_ready(once)
        except EngineError as exc:
            self._update(error=str(exc))
            return exc.exit_code

    def close(self) -> None:
        """Deliver what can be delivered, then let go of the data folder."""
        if not self._opened:
            return
        self._opened = False
        if self.outbox is not None:
            if len(self.outbox):
                self._flush()
            self._update(online=False, message=MESSAGE_STOPPED)
            outbox, self.outbox = self.outbox, None
            outbox.close()
        else:
            self._update(online=False, message=MESSAGE_STOPPED)
        self._instance_lock.release()

    def _loop(self, once: bool) -> int:
        """One slot: its loop runs here, as before slots. Several: one loop each on its own thread, all
        claiming at once; the first slot also runs the benchmark, once the others are idle."""
        slots = self._slots or [self._default_slot()]
        if len(slots) == 1:
            return self._slot_loop(slots[0], once)
        codes: dict[str, int] = {}

        def work(slot: _Slot) -> None:
            try:
                codes[slot.id] = self._slot_loop(slot, once)
            except Exception:  # our bug: the other slots go on
                log.exception("slot %s: the loop failed", slot.id)
                codes[slot.id] = EXIT_TASK_FAILED
            if codes[slot.id] == EXIT_AUTH:
                self._stop.set()  # no slot can work with a refused token
                self._wake.set()
        threads = [threading.Thread(target=work, args=(slot,), name=f"pictor-slot-{slot.id}", daemon=True)
                   for slot in slots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return max(codes.values(), default=EXIT_OK)

    def _slot_loop(self, slot: _Slot, once: bool) -> int:
        delay = self.idle_backoff[0]
        first = slot is (self._slots or [slot])[0]
        while not self._stop.is_set():
            if self.outbox is not None and len(self.outbox):
                self._flush()
            if self._bench_requested.is_set():
                if not first:  # the benchmark runs alone: this slot takes no task meanwhile
                    self._sleep(1.0)
                    continue
                if any(s.task_id is not None for s in self.snapshot().slots if s.id != slot.id):
                    self._sleep(1.0)  # wait for the other slots' tasks to end
                    continue
                self._bench_requested.clear()
                self._benchmark()
                continue
            if self._paused.is_set():
                self._update(message=self._pause_message())
                self._sleep(self.heartbeat_s)
                continue
            try:
                task, retry_after = (self.client.claim(slot=slot.claim_slot) if slot.claim_slot
                                     else self.client.claim())
            except (PortalUnreachable, PortalError) as exc:
                code, delay = self._back_off(exc, "claim", once, delay)
                if code is not None:
                    return code
                continue
            self._update(online=True)
            if task is None:
                if once:
                    log.info("no task waiting")
                    return EXIT_OK
                # The portal advises how often its idle workers ask (from the network's size, so a new
                # job is picked up within seconds on any network); without advice, less and less often.
                self._update(message="waiting for work")
                if retry_after is not None:
                    self._sleep(clamp_poll_interval(retry_after))
                else:
                    self._sleep(delay)
                    delay = min(max(delay, self.idle_backoff[0]) * 2, self.idle_backoff[1])
                continue
            delay = self.idle_backoff[0]  # work is flowing: ask again right away
            outcome = self.process(task, slot)
            if once:
                return EXIT_OK if outcome == TaskOutcome.COMPLETED else EXIT_TASK_FAILED
        return EXIT_OK

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()

    def _back_off(self, exc: Exception, what: str, once: bool, delay: float) -> tuple[int | None, float]:
        """After a failed call: an exit code when there is no point going on (or, with --once, when the
        portal is down), else wait `delay` and return the doubled delay for the next try."""
        code = self._portal_problem(exc, what)
        if code is None and once and retry_later(exc):
            code = EXIT_UNREACHABLE
        if code is None:
            self._sleep(delay)
            delay = min(delay * 2, self.idle_backoff[1])
        return code, delay

    def _portal_problem(self, exc: Exception, what: str) -> int | None:
        """Show what went wrong; an exit code when there is no point going on."""
        if retry_later(exc):
            log.warning("%s: portal unreachable: %s", what, exc)
            self._update(online=False, message=f"{MESSAGE_UNREACHABLE}: {exc}"[:200])
            return None
        assert isinstance(exc, PortalError)
        if exc.status in (401, 403):
            self._update(online=False, error="the portal refused this worker's token: pair the worker again")
            return EXIT_AUTH
        log.warning("%s refused: %s", what, exc)
        self._update(online=True, message=f"{what}: {exc.message}"[:200])
        return None

    # --- start-up ----------------------------------------------------------------------------

    def _recover_previous_run(self) -> None:
        """Tasks the last run was working on (one task file per slot) cannot be resumed: report them
        failed, never drop them."""
        self._kill_leftovers()
        for path in [self.cfg.state_path, *sorted(self.cfg.data_dir.glob("state-*.json"))]:
            self._recover_task_file(path)
        for leftover in self.cfg.work_dir.glob("task-*"):
            _rmtree(leftover)

    def _recover_task_file(self, path: Path) -> None:
        previous, task_id = None, None
        try:
            previous = json.loads(path.read_text())
        except FileNotFoundError:
            pass
        except (OSError, ValueError, RecursionError) as exc:
            self._notices.append(set_aside(path, f"not JSON: {str(exc)[:60]}") +
                                 ": a task it named, if any, is requeued by the portal when its lease ends")
        if previous is not None:
            task_id = task_id_of({"id": previous.get("task_id")}) if isinstance(previous, dict) else None
            if task_id is None and not (isinstance(previous, dict) and previous.get("task_id") is None):
                self._notices.append(set_aside(path, "no usable task id") +
                                     ": a task it named, if any, is requeued by the portal when its lease ends")
        if task_id is not None:
            if not self.outbox.has_final(task_id):
                log.warning("task %s was running when the app stopped: reporting it failed", task_id)
                self.outbox.put_fail(task_id, RESTART_REASON, retryable=True, kind="crash")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _kill_leftovers(self) -> None:
        """Renderers of a crashed run keep going in their own process group: stop them."""
        work = str(self.cfg.work_dir.resolve())
        for proc in psutil.process_iter(["pid", "cwd"]):
            cwd = proc.info.get("cwd") or ""
            if proc.pid != os.getpid() and cwd.startswith(work + os.sep):
                log.warning("stopping process %s left over from the previous run", proc.pid)
                with contextlib.suppress(psutil.Error):
                    proc.kill()

    def hello_report(self) -> dict[str, Any]:
        settings = self.cfg.settings
        self.hardware = self.probe(self.cfg.data_dir, settings.get("blender_path"))
        self.gpu_backend = settings.get("gpu_backend") or hardware.suggested_gpu_backend(self.hardware)
        renderers = self.hardware.get("renderers") or {}
        # Spot checks are Blender re-renders of other providers' frames; Bench Score runs (the portal's
        # timed benchmark, webapp/services/benchmarks.py) render the reference scene with Blender.
        job_types = [t for t, needs in (("render", "blender"), ("upscale", "realesrgan"), ("verify", "blender"),
                                        ("benchmark", "blender"))
                     if needs in renderers and t in RUNNERS]
        cpu = self.hardware.get("cpu") or {}
        problem, note = self._renderer_problem(renderers)
        slots = self._setup_slots()
        if not self.gpu_backend and any(s.device.is_gpu for s in slots):
            self.gpu_backend = next(s.device.kind for s in slots if s.device.is_gpu)  # NVIDIA's probe: CUDA
        gpu = bool(self.gpu_backend) and any(s.device.is_gpu for s in slots)
        return {
            "app_version": __version__,
            "os": self.hardware.get("os"),
            "hostname": self.hardware.get("hostname"),
            "cpu": cpu.get("brand") if isinstance(cpu, dict) else cpu,
            "cpu_details": cpu if isinstance(cpu, dict) else {},
            "ram_mb": self.hardware.get("ram_mb"),
            "disk_free_mb": self.hardware.get("disk_free_mb"),
            "gpus": self.hardware.get("gpus") or [],
            "renderers": renderers,
            "capabilities": {"job_types": job_types, "gpu": gpu,
                             "devices": ["CPU"] + ([self.gpu_backend] if gpu else [])},
            "slots": [s.device.to_hello() for s in slots],
            "compliance": self._compliance(),
            "state": State.ERROR if problem else State.IDLE,
            "message": problem or note or "",
        }

    def _setup_slots(self) -> list[_Slot]:
        """The device slots, chosen once at the first hello (a new choice applies at the next start):
        the devices found that the provider shares (the `devices` setting; devices.active)."""
        if self._slots:
            return self._slots
        found = self.device_probe() if self.device_probe is not None else devices.from_report(self.hardware)
        if self.gpu_backend and not any(d.is_gpu for d in found):
            # A GPU the NVIDIA probe cannot see (HIP, Metal, oneAPI set in Settings): one slot for it.
            found = [Device("gpu0", self.gpu_backend, f"{self.gpu_backend} GPU", None, 0), *found]
        shared = devices.active(found, self.cfg.settings.get("devices")) or [devices.cpu_device()]
        gpus_found = sum(d.is_gpu for d in found)
        # Unpinned only where one slot is the whole machine (its one GPU, or its CPU without a GPU).
        pinned = len(shared) + gpus_found > 2 or (not shared[0].is_gpu and gpus_found > 0)
        several = len(shared) > 1
        self._slots = [_Slot(d, self.cfg.state_path if i == 0 else self.cfg.data_dir / f"state-{d.id}.json",
                             pinned, d.id if several else None) for i, d in enumerate(shared)]
        self._update(slots=tuple(SlotState(d.id, d.kind, d.name) for d in shared),
                     devices_found=tuple(SlotState(d.id, d.kind, d.name) for d in found))
        log.info("device slots: %s", ", ".join(f"{d.id} ({d.name})" for d in shared))
        return self._slots

    def _default_slot(self) -> _Slot:
        """The slot process() uses when none is named: the first, or the whole machine before any hello."""
        if not self._slots:
            return _Slot(devices.cpu_device(), self.cfg.state_path, False, None)
        return self._slots[0]

    def _compliance(self) -> list[dict[str, str]]:
        return compliance.run_all(config_path=self.cfg.path, server=self.cfg.server_url,
                                  data_dir=self.cfg.data_dir,
                                  cache_max_bytes=int(self.cfg.settings["cache_max_bytes"]),
                                  hardware=self.hardware, latest_app_version=self.latest_app_version,
                                  blender_path=self.cfg.settings.get("blender_path"))

    def _apply_renderers(self, report: dict[str, Any]) -> None:
        """Job types and the renderer error from a fresh hello report; other errors stay as they are."""
        problem, note = self._renderer_problem(report["renderers"])
        changes: dict[str, Any] = {"job_types": report["capabilities"]["job_types"], "note": note}
        with self._lock:
            current = self._state.error
        if current is None or current == self._renderer_error:
            changes["error"] = problem
            self._renderer_error = problem
        self._update(**changes)

    def _hello_until_ready(self, once: bool) -> int | None:
        delay = self.idle_backoff[0]
        report = self.hello_report()
        job_types = report["capabilities"]["job_types"]
        self._apply_renderers(report)
        while not self._stop.is_set():
            try:
                answer = self.client.hello(report)
                break
            except (PortalUnreachable, PortalError) as exc:
                code, delay = self._back_off(exc, "hello", once, delay)
                if code is not None:
                    return code
        else:
            return EXIT_OK
        self._apply_hello(answer)
        latest = answer.get("latest_app_version")
        latest = printable(latest, 40) if isinstance(latest, str) else None
        if latest and latest != self.latest_app_version:
            # The app-version check needs the portal's answer: tell it the corrected results.
            self.latest_app_version = latest
            report["compliance"] = self._compliance()
            with contextlib.suppress(PortalUnreachable, PortalError):
                self._apply_hello(self.client.hello(report))
        self._update(online=True, message="connected")
        log.info("connected to %s as worker %s; job types: %s", self.cfg.server_url,
                 self._state.worker_id, ", ".join(job_types) or "none")
        if len(self.outbox):
            self._flush()  # updates from the last run, before anything new
        self._first_run_measurements(answer)
        return None

    def _renderer_problem(self, renderers: dict[str, Any]) -> tuple[str | None, str | None]:
        """(error, note) for the renderers found. Without Blender the worker cannot render: an error
        to fix. Without Real-ESRGAN it still renders: a note, so a new worker is not shown red."""
        if "blender" not in renderers:
            where = self.cfg.settings.get("blender_path")
            return (f"Blender not found{' at ' + where if where else ''}: install Blender or set "
                    "blender_path in Settings; render jobs are not offered to this worker"), None
        if "realesrgan" not in renderers:
            return None, ("Upscale jobs are not offered: Real-ESRGAN is not installed "
                          "(pip install 'pictor-worker[upscale]' adds it)")
        return None, None

    def _apply_hello(self, answer: dict[str, Any]) -> None:
        self._apply_intervals(answer)
        if type(answer.get("worker_id")) is int and 0 < answer["worker_id"] < 2**63:
            self._update(worker_id=answer["worker_id"])
        self._apply_market(answer)
        self._apply_portal_pause(answer)
        if answer.get("bench_run_due") is True:
            # The portal times a Bench Score run from its claim: have the scene built before asking for work.
            benchmark.prepare(self._runner_settings(), self.cfg.work_dir)

    def _apply_intervals(self, answer: dict[str, Any]) -> None:
        """Intervals the portal asks for, within 5-300 s: 1e308 would end the heartbeat thread (a
        wait that long overflows) and 0.001 would flood the portal."""
        for key in ("heartbeat_seconds", "heartbeat_interval"):
            if key in answer:
                self.heartbeat_s = clamp_interval(answer[key], self.heartbeat_s)
        if "poll_seconds" in answer:
            self.poll_s = clamp_interval(answer["poll_seconds"], self.poll_s or IDLE_BACKOFF_S[1])
        if "lease_seconds" in answer:
            self.lease_s = clamp_interval(answer["lease_seconds"], self.lease_s or 90.0)

    def _apply_market(self, answer: dict[str, Any]) -> None:
        """Bid, average bid, Bench Score and earning estimate from any answer that carries them."""
        source = answer.get("settings") if isinstance(answer.get("settings"), dict) else answer
        changes: dict[str, Any] = {}
        for key in ("bid", "average_bid"):
            if key in source and (source[key] is None or _money(source[key]) is not None):
                changes[key] = None if source[key] is None else printable(source[key], 40)
        if "bench_score" in source and (source["bench_score"] is None or (
                type(source["bench_score"]) is int and 0 <= source["bench_score"] < 2**63)):
            changes["bench_score"] = source["bench_score"]
        estimate = source.get("estimated_earning_per_hour")
        if isinstance(estimate, dict):
            estimate = estimate.get("amount") or estimate.get("usd") or estimate.get("micros")
        if estimate is not None and _money(estimate) is not None:
            changes["estimated_earning_per_hour"] = printable(estimate, 40)
        if changes:
            self._update(**changes)

    def _first_run_measurements(self, answer: dict[str, Any]) -> None:
        """Bench Score and connection speed, measured once when the portal has none yet."""
        settings = self.cfg.settings
        if settings.get("auto_benchmark") and answer.get("bench_score") is None and "render" in self._state.job_types:
            self.request_benchmark()
        marker = self.cfg.data_dir / "speedtest.json"
        try:
            last = json.loads(marker.read_text()).get("at", 0)
        except (OSError, ValueError, AttributeError):
            last = 0
        if settings.get("auto_speedtest") and time.time() - last > SPEEDTEST_EVERY_S:
            from . import speedtest
            try:
                result = speedtest.run(self.client)
                log.info("speed test: %.1f Mbit/s down, %.1f Mbit/s up", result["download_mbps"],
                         result["upload_mbps"])
                marker.write_text(json.dumps({"at": time.time(), "download_mbps": result["download_mbps"],
                                              "upload_mbps": result["upload_mbps"]}))
            except (PortalUnreachable, PortalError, OSError) as exc:
                log.warning("speed test failed: %s", exc)

    def _benchmark(self) -> None:
        from . import bench
        self._update(message="running the benchmark", benchmark=BenchmarkPhase.RUNNING, benchmark_error=None)
        try:
            outcome = bench.run_and_post(self.client, self.cfg, gpu_backend=self.gpu_backend)
            if isinstance(outcome.get("answer"), dict):
                self._apply_market(outcome["answer"])
            self._update(bench_score_reported=outcome["score"], message=f"This machine measured {outcome['score']}",
                         benchmark=BenchmarkPhase.DONE)
        except Exception as exc:
            log.warning("benchmark failed: %s", exc)
            self._update(message=f"benchmark failed: {exc}"[:200], benchmark=BenchmarkPhase.FAILED,
                         benchmark_error=(str(exc) or exc.__class__.__name__)[:300])

    # --- heartbeats --------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.wait(self.heartbeat_s):
            try:
                self.heartbeat()
            except Exception:  # an answer we did not foresee must not end the heartbeats for good
                log.exception("heartbeat failed")

    def _presence(self, snap: EngineState | None = None) -> tuple[State, str]:
        """(state, message) as the portal's heartbeat and hello want them: never offline (we are
        talking to it), and an error even while the last call failed."""
        snap = snap or self.snapshot()
        if snap.task_id is not None:
            state = State.BUSY
        elif snap.error:
            state = State.ERROR
        elif snap.paused:
            state = State.PAUSED
        else:
            state = State.IDLE
        if state == State.ERROR:
            message = snap.error
        elif state == State.IDLE and snap.note:
            message = snap.note  # the portal's worker page says it too, beside a green status
        else:
            message = snap.progress_message or snap.message
        return state, (message or "")[:500]

    def heartbeat(self) -> None:
        snap = self.snapshot()
        state, message = self._presence(snap)
        report = {"state": state, "message": message, "task_id": snap.task_id,
                  "progress": snap.progress if snap.task_id is not None else None}
        try:
            answer = self.client.heartbeat(report)
        except (PortalUnreachable, PortalError) as exc:
            self._portal_problem(exc, "heartbeat")
            return
        was_offline = not snap.online
        self._update(online=True)
        self._apply_market(answer)
        self._apply_intervals(answer)
        self._apply_portal_pause(answer)
        if was_offline:
            self._wake.set()  # the portal is back: replay queued updates now

    # --- one task ------------------------------------------------------------------------------

    def process(self, task: dict[str, Any], slot: _Slot | None = None) -> TaskOutcome:
        """Run one claimed task on `slot` (default: the first) to its end and say how it ended. A claim
        answer that is not a task we can run (untrusted.check_task) is reported failed, when its id
        allows, and nothing runs."""
        slot = slot or self._default_slot()
        try:
            inputs = check_task(task, self.cfg.server_url, self.client.input_url)
        except BadTask as exc:
            return self._refuse_task(exc)
        task_id = task["id"]
        slot.cancel.clear()
        slot.latest = None
        self._write_task_file(task, slot)
        self._slot_update(slot, "task_started", job_id=task.get("job_id"), job_type=task.get("type"),
                          software=task.get("software"), task_id=task_id, progress=0.0, eta_s=None,
                          progress_message="downloading inputs", started_at=time.time(),
                          reward_estimate=task.get("reward_estimate"), message=f"running task {task_id}")
        log.info("task %s (job %s, %s): started on %s", task_id, task.get("job_id"), task.get("type"), slot.id)
        self._device_hook("started", slot, task_id)
        workdir = self.cfg.work_dir / f"task-{task_id}"
        outcome = TaskOutcome.FAILED
        try:
            outcome = self._execute(task, inputs, workdir, slot)
        except Exception as exc:  # our own bug: the task must still be reported, not dropped
            log.exception("task %s: internal error", task_id)
            outcome = self._report_failure(task_id, RunFailed(
                "crash", f"internal error in the worker app: {exc}"[:300],
                traceback.format_exc()[-4096:], retryable=True), slot)
        finally:
            self._clear_task_file(slot)
            _rmtree(workdir)
            with self._lock:  # held across the update: two slots finishing at once both count
                done = self._state.tasks_completed + (outcome == TaskOutcome.COMPLETED)
                failed = self._state.tasks_failed + (outcome == TaskOutcome.FAILED)
                mine = next((s.completed for s in self._state.slots if s.id == slot.id), 0)
                self._slot_update(slot, "task_finished", job_id=None, job_type=None, software=None, task_id=None,
                                  progress=0.0, eta_s=None, progress_message="", started_at=None,
                                  reward_estimate=None, tasks_completed=done, tasks_failed=failed,
                                  completed=mine + (outcome == TaskOutcome.COMPLETED),
                                  message=f"task {task_id} {outcome}")
            self._device_hook("ended", slot, task_id)
            log.info("task %s: %s", task_id, outcome)
        return outcome

    def _device_hook(self, phase: str, slot: _Slot, task_id: int) -> None:
        """Tell device_hooks a task started or ended on slot's device; a hook's bug never stops a task."""
        for hook in list(self.device_hooks):
            try:
                hook(phase, slot.device, task_id)
            except Exception:
                log.exception("device hook %r failed (%s on %s)", hook, phase, slot.id)

    def _refuse_task(self, exc: BadTask) -> TaskOutcome:
        log.warning("claimed task refused: %s", exc.message)
        with self._lock:
            failed = self._state.tasks_failed + 1
        if exc.task_id is None:  # nothing to tell the portal: its lease expiry requeues it
            self._update(last_error=f"a claimed task was refused: {exc.message}"[:300], tasks_failed=failed)
            return TaskOutcome.FAILED
        self._report_failure(exc.task_id, RunFailed("bad_task", f"the worker refused the task: "
                                                                f"{exc.message}"[:300], retryable=False))
        self._update(tasks_failed=failed)
        return TaskOutcome.FAILED

    def _runner_settings(self, slot: _Slot | None = None) -> RunnerSettings:
        """How a task runs on slot: a GPU slot with the GPU backend, the CPU slot without one; pinned
        to its device (CUDA_VISIBLE_DEVICES) when the node shares more than one."""
        slot = slot or self._default_slot()
        on_gpu = slot.device.is_gpu or not slot.pinned
        return RunnerSettings(blender_path=self.cfg.settings.get("blender_path"),
                              gpu_backend=self.gpu_backend if on_gpu else None, visible_gpus=slot.visible_gpus())

    def _execute(self, task: dict[str, Any], inputs: list[TaskInput], workdir: Path, slot: _Slot) -> TaskOutcome:
        task_id = task["id"]
        try:
            runner = self.runner_factory(task.get("type"), self._runner_settings(slot))
            params = runner.validate(task.get("params"))
        except UnknownJobType as exc:
            return self._report_failure(task_id, RunFailed("unknown_job_type", str(exc), retryable=False), slot)
        except RunFailed as exc:  # InvalidParams: nothing runs
            return self._report_failure(task_id, exc, slot)
        _rmtree(workdir)
        workdir.mkdir(parents=True)
        try:
            files, hashes = self._download_inputs(inputs, workdir / "inputs", slot)
        except InputTooLarge as exc:
            return self._report_failure(task_id, RunFailed("bad_input", str(exc), retryable=False), slot)
        except InputHashMismatch as exc:
            return self._report_failure(task_id, RunFailed("bad_input", str(exc), retryable=True), slot)
        except RunFailed as exc:
            return self._report_failure(task_id, exc, slot)
        except ValueError as exc:  # not a SHA-256: the portal sent something we cannot check
            return self._report_failure(task_id, RunFailed("bad_input", str(exc), retryable=False), slot)
        except PortalError as exc:
            if exc.status in (404, 409, 410):  # canceled or given to someone else meanwhile
                log.info("task %s is no longer ours (%s)", task_id, exc.message)
                return TaskOutcome.CANCELED
            return self._report_failure(task_id, RunFailed("bad_input", f"could not download inputs: "
                                                                        f"{exc.message}", retryable=True), slot)
        except PortalUnreachable as exc:
            return self._report_failure(task_id, RunFailed("network", f"could not download inputs: {exc}",
                                                           retryable=True), slot)
        except OSError as exc:
            return self._disk_failure(task_id, exc, slot)
        if self._hand_back.is_set():
            return self._give_back(task_id, slot)

        done = threading.Event()
        reporter = threading.Thread(target=self._report_progress_loop, args=(task_id, done, slot),
                                    name=f"pictor-progress-{slot.id}", daemon=True)
        with self.cache.pinned(hashes):
            reporter.start()
            try:
                result = runner.run(params, files, workdir, on_progress=lambda p: self._on_progress(p, slot),
                                    should_stop=lambda: self._should_stop(slot))
            except RunFailed as exc:
                if slot.cancel.is_set():
                    return TaskOutcome.CANCELED  # the portal asked for it: nothing to report
                if self._hand_back.is_set():
                    return self._give_back(task_id, slot)
                if exc.kind == "renderer_missing":
                    self._renderer_error = exc.message  # refresh_hello() clears it once Blender is back
                    self._update(error=exc.message)
                return self._report_failure(task_id, exc, slot)
            finally:
                done.set()
                reporter.join(timeout=REPORTER_JOIN_S)
        if slot.cancel.is_set():
            return TaskOutcome.CANCELED
        try:
            outputs = self.outbox.stage_outputs(task_id, result.outputs)
        except OSError as exc:
            return self._disk_failure(task_id, exc, slot)
        self.outbox.put_complete(task_id, outputs, result.compute_seconds)
        self._clear_task_file(slot)  # from here on the outbox owns the task
        self._slot_update(slot, progress=1.0, eta_s=0.0, progress_message="uploading outputs")
        self._flush()
        # Another slot's flush may have delivered it: _flush keeps every refusal of a complete.
        with self._lock:
            rejection = self._rejected.pop(task_id, None)
        if rejection is not None:
            self._update(last_error=f"task {task_id}: the portal refused the result: {rejection.message}")
            return TaskOutcome.FAILED
        if self._disk_error and self._state.error == self._disk_error:
            self._update(error=None)  # there was room again for a whole task
        self._disk_error = None
        return TaskOutcome.COMPLETED

    def _should_stop(self, slot: _Slot) -> bool:
        return slot.cancel.is_set() or self._hand_back.is_set()

    def _download_inputs(self, inputs: list[TaskInput], folder: Path,
                         slot: _Slot) -> tuple[dict[str, Path], list[str]]:
        """Inputs as check_task() left them: plain names, same-origin URLs, announced sizes."""
        files: dict[str, Path] = {}
        hashes: list[str] = []
        for item in inputs:
            self._slot_update(slot, progress_message=f"downloading {item.name}")
            self.cache.fetch(item.sha256, lambda dest, item=item: self.client.download(
                item.url, dest, max_bytes=item.size), name=item.name, size=item.size)
            hashes.append(item.sha256)
            files[item.name] = self.cache.link_into(item.sha256, folder / item.name)
        return files, hashes

    def _on_progress(self, progress: Progress, slot: _Slot) -> None:
        """Called by the runner for every line that moves progress: keep it cheap."""
        slot.latest = progress
        now = time.monotonic()
        with self._lock:
            self._state = self._with_slot(self._state, slot, {
                "progress": progress.fraction, "eta_s": progress.eta_s, "progress_message": progress.message})
        if now - slot.last_progress_event >= PROGRESS_EVENT_MIN_S:
            slot.last_progress_event = now
            self._emit("task_progress", self.snapshot(), slot=slot.id)

    def _report_progress_loop(self, task_id: int, done: threading.Event, slot: _Slot) -> None:
        while not done.wait(self.progress_interval):
            progress = slot.latest or Progress(0.0, None, "starting")
            keep_running = self._send_progress(task_id, progress)
            if keep_running is False and not slot.cancel.is_set():
                log.info("task %s: the portal says stop (canceled or reassigned): stopping it", task_id)
                slot.cancel.set()

    def _send_progress(self, task_id: int, progress: Progress) -> bool | None:
        """Send progress now when nothing is queued ahead of it, else queue it behind the rest."""
        if not len(self.outbox):
            try:
                keep = self.client.progress(task_id, progress.fraction, progress.eta_s, progress.message)
                if not self._state.online:
                    self._update(online=True)
                return keep
            except (PortalUnreachable, PortalError) as exc:
                if not retry_later(exc):
                    log.warning("progress of task %s refused: %s", task_id, exc)
                    return None
                self._update(online=False, message=f"{MESSAGE_UNREACHABLE}: {exc}"[:200])
        self.outbox.put_progress(task_id, progress.fraction, progress.eta_s, progress.message)
        report = self._flush()
        answer = report.answer_for(task_id, "progress")
        return answer if isinstance(answer, bool) else None

    def _report_failure(self, task_id: int, failure: RunFailed, slot: _Slot | None = None) -> TaskOutcome:
        log.warning("task %s failed (%s): %s", task_id, failure.kind, failure.message)
        self.outbox.put_fail(task_id, failure.message, failure.log_tail or "", failure.retryable, failure.kind)
        self._clear_task_file(slot)
        self._update(last_error=f"task {task_id}: {failure.message}"[:300])
        self._flush()
        return TaskOutcome.FAILED

    def _give_back(self, task_id: int, slot: _Slot | None = None) -> TaskOutcome:
        log.info("task %s: handing it back (%s)", task_id, SHUTDOWN_REASON)
        self.outbox.put_hand_back(task_id, SHUTDOWN_REASON)
        self._clear_task_file(slot)
        self._flush()
        return TaskOutcome.HANDED_BACK

    def _disk_failure(self, task_id: int, exc: OSError, slot: _Slot | None = None) -> TaskOutcome:
        message = f"cannot write to {self.cfg.data_dir}: {exc.strerror or exc}"
        if getattr(exc, "errno", None) == errno.ENOSPC:
            message = f"disk full at {self.cfg.data_dir}: free space or lower the cache size"
        self._update(error=message)
        self._disk_error = message
        return self._report_failure(task_id, RunFailed("disk", message, retryable=True), slot)

    def _flush(self):
        report = self.outbox.flush(self.client)
        with self._lock:
            earned = _money(self._state.earned_session) or Decimal(0)
            last_reward = self._state.last_reward
            for entry, exc in report.rejected:
                if entry.kind == "complete":  # read by the slot whose task it is (_execute)
                    self._rejected[entry.task_id] = exc
            for entry, answer in report.delivered:
                if entry.kind == "complete" and isinstance(answer, dict):
                    reward = _money(answer.get("reward"))
                    if reward is not None:
                        earned += reward
                        last_reward = str(answer.get("reward"))
        changes: dict[str, Any] = {"earned_session": str(earned), "last_reward": last_reward}
        blocked = report.blocked
        if isinstance(blocked, PortalUnreachable) or (isinstance(blocked, PortalError)
                                                      and blocked.status in (502, 503, 504)):
            changes.update(online=False, message=f"{MESSAGE_UNREACHABLE}; {report.pending} update(s) "
                                                 "queued on disk")
        elif blocked is not None:
            changes["message"] = f"{report.pending} update(s) waiting: {blocked}"[:200]
        if report.delivered and "online" not in changes:
            changes["online"] = True
        self._update(**changes)
        return report

    # --- the task file: what survives a crash ------------------------------------------------

    def _write_task_file(self, task: dict[str, Any], slot: _Slot) -> None:
        doc = {"task_id": task["id"], "job_id": task.get("job_id"), "claimed_at": time.time(),
               "pid": os.getpid(), "slot": slot.id}
        tmp = slot.task_path.with_name(slot.task_path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, slot.task_path)

    def _clear_task_file(self, slot: _Slot | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            (slot.task_path if slot is not None else self.cfg.state_path).unlink()
