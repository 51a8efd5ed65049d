"""What the portal sends, checked before the app acts on it: the claimed task's shape, where inputs may
be fetched from, the intervals it asks for, and text from it made safe to print.

The portal is trusted to assign work, not to be well-formed: a broken or hostile portal must not stop
the daemon, flood requests, make it fetch other hosts (with or without our token) or fill the disk.
A task that fails these checks is reported failed when its id is usable (BadTask.task_id), and the
worker goes on with the next one."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_TASK_ID = 2**63 - 1  # the portal's and SQLite's integer range
MAX_INPUTS = 1000
MAX_INPUT_BYTES = 64 * 1024**3  # far above any scene we render; a bigger announcement is a lie
MAX_TEXT = 500
INTERVAL_RANGE_S = (5.0, 300.0)  # heartbeats, polls, leases: never a flood, never silence
POLL_RANGE_S = (1.0, 300.0)  # an idle claim's advised wait: the portal keeps the network's total in bounds

_SHA256 = re.compile(r"[0-9a-f]{64}")
# One part of a project file's path: what Windows, macOS and Linux can all write, nothing that climbs.
_BAD_PART = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|]')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
MAX_PATH_DEPTH = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class BadTask(ValueError):
    """A claim answer the worker cannot run; task_id is set when the portal can be told so."""

    def __init__(self, message: str, task_id: int | None = None):
        super().__init__(message)
        self.message = message
        self.task_id = task_id


@dataclass(frozen=True)
class TaskInput:
    name: str
    sha256: str
    size: int
    url: str  # absolute, same origin as the portal


def printable(value: Any, limit: int | None = None) -> str:
    """Text from outside made safe for a console or a log line: control characters (escape codes,
    bare carriage returns, bidi overrides) shown as \\x.. escapes instead of acting."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None:
        text = text[:limit]
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, default ports filled in; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, brackets that do not close
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def same_origin(url: str, server_url: str) -> bool:
    mine = origin(server_url)
    return mine is not None and origin(url) == mine


def clamp_interval(value: Any, default: float) -> float:
    """A number of seconds the portal asks for, kept within INTERVAL_RANGE_S; default when it is
    not a finite number (a string, a bool, NaN, 1e308 all end here or at the bounds)."""
    if type(value) not in (int, float) or not math.isfinite(value):
        return default
    low, high = INTERVAL_RANGE_S
    return float(min(max(value, low), high))


def clamp_poll_interval(value: Any) -> float:
    """How long an idle worker waits before asking for work again, as the portal advised (its Retry-After),
    within POLL_RANGE_S: a new job is seen within a second at best, and no idle worker goes silent."""
    low, high = POLL_RANGE_S
    if type(value) not in (int, float) or not math.isfinite(value):
        return high
    return float(min(max(value, low), high))


def task_id_of(task: Any) -> int | None:
    """The claim's id when it is one we may use in a URL and the outbox, else None."""
    value = task.get("id") if isinstance(task, dict) else None
    return value if type(value) is int and 1 <= value <= MAX_TASK_ID else None


def _optional(task: dict, key: str, kind: type | tuple[type, ...]) -> None:
    value = task.get(key)
    if value is not None and (type(value) is bool or not isinstance(value, kind)):
        raise BadTask(f"the task's {key} has the wrong type", task["id"])


def check_task(task: Any, server_url: str, input_url) -> list[TaskInput]:
    """Check a claim answer; returns its inputs (absolute same-origin URLs) or raises BadTask.

    input_url(task_id, name) gives the portal's own URL for an input that lists none."""
    if not isinstance(task, dict):
        raise BadTask("the claim answer is not a JSON object")
    task_id = task_id_of(task)
    if task_id is None:
        raise BadTask(f"the claim answer's task id {printable(repr(task.get('id')), 40)} is not an "
                      f"integer from 1 to {MAX_TASK_ID}")
    if not isinstance(task.get("type"), str) or len(task["type"]) > 64:
        raise BadTask("the task has no job type", task_id)
    _optional(task, "job_id", int)
    if type(task.get("job_id")) is int and not 1 <= task["job_id"] <= MAX_TASK_ID:
        raise BadTask("the task's job_id is out of range", task_id)
    for key in ("software", "reward_estimate", "lease_expires_at"):
        _optional(task, key, str)
        if isinstance(task.get(key), str) and len(task[key]) > MAX_TEXT:
            raise BadTask(f"the task's {key} is too long", task_id)
    listed = task.get("inputs", [])
    if not isinstance(listed, list) or len(listed) > MAX_INPUTS:
        raise BadTask(f"the task's inputs are not a list of at most {MAX_INPUTS}", task_id)
    inputs, names, folders = [], set(), set()
    for item in listed:
        checked = _check_input(item, task_id, server_url, input_url)
        key = checked.name.lower()  # one file on Windows and macOS
        parts = key.split("/")
        above = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if key in names or key in folders or above & names:
            raise BadTask(f"input {checked.name!r} is listed twice, or as both a file and a folder", task_id)
        names.add(key)
        folders |= above
        inputs.append(checked)
    return inputs


def is_relative_path(name: Any) -> bool:
    """A project file's path as the portal may send it: "textures/wood.png", never absolute, never
    "..", no drive, no backslash, no name Windows reserves. The file lands at inputs/<name>, so this
    rule alone keeps a hostile portal from writing anywhere else."""
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        return False
    parts = name.split("/")
    return len(parts) <= MAX_PATH_DEPTH and all(
        part not in ("", ".", "..") and not _BAD_PART.search(part) and not part.endswith((" ", "."))
        and part.split(".", 1)[0].upper() not in _WINDOWS_DEVICES for part in parts)


def _check_input(item: Any, task_id: int, server_url: str, input_url) -> TaskInput:
    if not isinstance(item, dict):
        raise BadTask("an input is not a JSON object", task_id)
    name, sha, size = item.get("name"), item.get("sha256"), item.get("size")
    if not is_relative_path(name):
        raise BadTask(f"input name {printable(repr(name), 80)} is not a plain file name nor a relative "
                      "path inside the task folder", task_id)
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha.lower()):
        raise BadTask(f"input {name!r} has no SHA-256 (64 hex digits)", task_id)
    if type(size) is not int or not 0 <= size <= MAX_INPUT_BYTES:
        raise BadTask(f"input {name!r} has no size from 0 to {MAX_INPUT_BYTES} bytes", task_id)
    url = item.get("url")
    if url is None:
        url = input_url(task_id, name)
    if not isinstance(url, str) or len(url) > 4096:
        raise BadTask(f"input {name!r} has no usable URL", task_id)
    if url.startswith("/") and not url.startswith("//"):
        url = server_url.rstrip("/") + url
    if not same_origin(url, server_url):
        # Never fetched: another host must not be probed from the provider's network, nor see our token.
        raise BadTask(f"input {name!r} is hosted outside the portal ({printable(url, 120)}); this "
                      f"worker downloads only from {server_url}", task_id)
    return TaskInput(name, sha.lower(), size, url)


class SafeFormatter(logging.Formatter):
    """Log lines with control characters escaped: text from the portal or a scene (escape codes,
    bare carriage returns) never acts on the console, nor forges a line in the log file. Tracebacks
    keep their line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)
