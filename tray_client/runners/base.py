"""What every runner shares: its errors, progress and result types, parameter checks, and the one
way we start, watch and stop a renderer process."""

from __future__ import annotations

import codecs
import collections
import contextlib
import os
import re
import signal
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import psutil

TAIL_CHARS = 4096
WINDOWS = sys.platform == "win32"

# Whether another try (on this or another worker) can succeed; the engine reports it to the portal.
RETRYABLE = {
    "missing_file": False,
    "bad_input": False,
    "invalid_params": False,
    "render_error": False,
    "output_missing": False,
    "unsafe_scene": False,  # the scene reaches outside its task folder: it would on any worker
    "out_of_memory": True,
    "crash": True,
    "no_device": True,
    "denoiser": True,
    "renderer_missing": True,
    "canceled": True,
}


class RunFailed(Exception):
    """A task that did not produce its outputs, told in words a provider or creator can act on."""

    def __init__(self, kind: str, message: str, log_tail: str = "", retryable: bool | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.log_tail = log_tail
        self.retryable = RETRYABLE.get(kind, False) if retryable is None else retryable

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "log_tail": self.log_tail,
                "retryable": self.retryable}


class InvalidParams(RunFailed, ValueError):
    """Task parameters outside the allow-list; raised before anything runs.

    A RunFailed too, so the engine needs to catch only one exception type."""

    def __init__(self, message: str):
        super().__init__("invalid_params", message)


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1 over the whole task
    eta_s: float | None = None
    message: str = ""


@dataclass
class RunResult:
    outputs: list[Path]
    log_tail: str
    compute_seconds: float


@dataclass(frozen=True)
class RunnerSettings:
    """What the worker knows about itself that changes how a task runs."""

    blender_path: str | None = None  # the provider's override from Settings
    gpu_backend: str | None = None  # "CUDA", "OPTIX", "HIP"... when the hardware probe found a GPU
    # The device slot's pin (CUDA_VISIBLE_DEVICES for the child): "1" = only GPU 1, "" = no GPU (the CPU
    # slot); None = not pinned (a node with one slot uses whatever the machine has, as before slots).
    visible_gpus: str | None = None

    def device_env(self) -> dict[str, str]:
        """The child's variables that pin it to its slot's device (empty when not pinned)."""
        if self.visible_gpus is None:
            return {}
        # nvidia-smi (the probe's numbers) counts GPUs in PCI bus order; CUDA's default is fastest first.
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": self.visible_gpus,
                "HIP_VISIBLE_DEVICES": self.visible_gpus}


class Runner:
    """One job type: check parameters, run the task in a subprocess, return its output files."""

    job_type = ""

    def __init__(self, settings: RunnerSettings | None = None):
        self.settings = settings or RunnerSettings()

    def validate(self, params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, params: Any, inputs: Mapping[str, Path], workdir: Path,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        raise NotImplementedError


# --- parameter allow-lists -------------------------------------------------------------------

def check_params(params: Any, schema: Mapping[str, Callable[[str, Any], Any]],
                 defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a clean copy of params, or raise InvalidParams; keys outside schema are refused."""
    defaults = defaults or {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be a JSON object")
    unknown = sorted(map(str, set(params) - set(schema)))
    if unknown:
        raise InvalidParams(f"unknown parameter(s): {', '.join(unknown)}"[:200])
    clean = {}
    for key, check in schema.items():
        if key in params:
            clean[key] = check(key, params[key])
        elif key in defaults:
            clean[key] = defaults[key]
        else:
            raise InvalidParams(f"{key} is required")
    return clean


def int_in(low: int, high: int):
    def check(key: str, value: Any) -> int:
        # bool is an int in Python, but `true` is never a frame number
        if type(value) is not int or not low <= value <= high:
            raise InvalidParams(f"{key} must be an integer from {low} to {high}")
        return value
    return check


def one_of(*choices):
    def check(key: str, value: Any):
        # Compare types too: 2.0 == 2 and True == 1 in Python, but neither is a valid choice.
        if not any(value == c and type(value) is type(c) for c in choices):
            raise InvalidParams(f"{key} must be one of {', '.join(map(str, choices))}")
        return value
    return check


def int_list(low: int, high: int, min_items: int, max_items: int):
    item = int_in(low, high)

    def check(key: str, value: Any) -> list[int]:
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            raise InvalidParams(f"{key} must be a list of {min_items} to {max_items} integers")
        clean = [item(key, v) for v in value]
        if len(set(clean)) != len(clean):
            raise InvalidParams(f"{key} must not repeat a value")
        return clean
    return check


_BAD_NAME = re.compile(r"[\x00-\x1f/\\:]")


def file_name(key: str, value: Any) -> str:
    """An input's name as the portal lists it: a plain name, never a path."""
    if not isinstance(value, str) or not 0 < len(value) <= 255 or value in (".", "..") \
            or _BAD_NAME.search(value):
        raise InvalidParams(f"{key} must be the name of one of the task's input files")
    return value


def input_file(key: str, value: Any) -> str:
    """An input's name, or a project file's relative path (untrusted.is_relative_path's rule)."""
    from ..untrusted import is_relative_path
    if not is_relative_path(value):
        raise InvalidParams(f"{key} must be the name or relative path of one of the task's input files")
    return value


def input_path(inputs: Mapping[str, Path], name: str) -> Path:
    path = inputs.get(name)
    if path is None or not Path(path).is_file():
        raise RunFailed("missing_file", f"input file {name!r} was not downloaded; the task cannot run")
    return Path(path)


# --- processes ---------------------------------------------------------------------------------

_KEEP_ENV = ("PATH", "HOME", "USERPROFILE", "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC",
             "PATHEXT", "APPDATA", "LOCALAPPDATA", "PROGRAMDATA", "PROGRAMFILES", "NUMBER_OF_PROCESSORS",
             "PROCESSOR_ARCHITECTURE", "LANG", "LC_ALL", "DISPLAY", "WAYLAND_DISPLAY",
             "XDG_RUNTIME_DIR", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


def minimal_env(**extra: str) -> dict[str, str]:
    """The few variables a renderer needs; nothing of ours (tokens, PYTHON*) leaks into a task."""
    env = {k: v for k, v in os.environ.items() if k.upper() in _KEEP_ENV}
    env.update(extra)
    return env


def _reader(stream, lines: queue.Queue) -> None:
    """Read in chunks, not lines: Blender rewrites progress with a bare '\\r'."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    with contextlib.suppress(OSError, ValueError):  # the pipe closed under us: nothing left to read
        while chunk := os.read(stream.fileno(), 65536):
            pending += decoder.decode(chunk)
            *complete, pending = re.split(r"[\r\n]", pending)
            for line in complete:
                if line.strip():
                    lines.put(line)
    pending += decoder.decode(b"", final=True)
    if pending.strip():
        lines.put(pending)
    lines.put(None)  # end of output


def _low_priority() -> None:  # runs in the child just before exec
    os.nice(10)


_GONE = (OSError, psutil.Error)  # a process may exit between two calls while we stop it


def _signal_tree(proc: subprocess.Popen, others: list[psutil.Process], hard: bool) -> None:
    if not WINDOWS:
        # The group also reaches grandchildren started after we listed them.
        with contextlib.suppress(*_GONE):
            os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
    with contextlib.suppress(*_GONE):
        proc.kill() if hard else proc.terminate()
    for p in others:  # and this reaches those that left the group
        with contextlib.suppress(*_GONE):
            p.kill() if hard else p.terminate()


def _still_running(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until procs exit; a zombie counts as gone (in a container nobody may reap it soon)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(proc: subprocess.Popen, grace: float = 1.0) -> None:
    """Stop proc and everything it started: politely, then for good after `grace` seconds."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    _signal_tree(proc, children, hard=False)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    alive = _still_running(children, max(0.0, deadline - time.monotonic()))
    if proc.poll() is None or alive:
        _signal_tree(proc, alive, hard=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        _still_running(alive, grace)


def run_process(argv: list[str], env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                on_line: Callable[[str], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                poll: float = 0.2) -> tuple[int, str, bool]:
    """Run argv at low priority in its own process group, feeding each output line to on_line.

    stdout and stderr are merged. When should_stop() turns true the whole process tree is killed.
    Returns (returncode, the last ~4 KB of output, whether we stopped it)."""
    if not isinstance(argv, (list, tuple)) or not all(isinstance(a, (str, os.PathLike)) for a in argv):
        raise TypeError("argv must be a list of strings, never a shell command")
    should_stop = should_stop or (lambda: False)
    if WINDOWS:
        platform_args = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP
                         | subprocess.BELOW_NORMAL_PRIORITY_CLASS | subprocess.CREATE_NO_WINDOW}
    else:
        platform_args = {"start_new_session": True, "preexec_fn": _low_priority}
    proc = subprocess.Popen([os.fspath(a) for a in argv], env=dict(env) if env is not None else None,
                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **platform_args)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    tail: collections.deque[str] = collections.deque()
    tail_size = 0
    stopped = False
    exited_at = None
    while True:
        if not stopped and should_stop():
            stopped = True
            kill_tree(proc)
        try:
            line = lines.get(timeout=poll)
        except queue.Empty:
            if proc.poll() is None:
                continue
            # Output ends when the pipe closes; a leftover grandchild may hold it open for ever.
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > 1.0:
                break
            continue
        if line is None:
            break
        tail.append(line)
        tail_size += len(line) + 1
        while tail_size > TAIL_CHARS and len(tail) > 1:
            tail_size -= len(tail.popleft()) + 1
        if on_line is not None and not stopped:
            on_line(line)
    returncode = proc.wait()
    if reader.is_alive():
        kill_tree(proc)  # the leftovers belong to the task; do not let them outlive it
    else:
        proc.stdout.close()
    return returncode, "\n".join(tail)[-TAIL_CHARS:], stopped
