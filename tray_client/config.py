"""Where the Worker App keeps its credentials (owner-only JSON) and its data (cache, outbox, logs)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

log = logging.getLogger(__name__)

APP_NAME = "pictor-worker"
CONFIG_FILE_NAME = "worker.json"
DEFAULT_CACHE_MAX_BYTES = 10 * 1024**3

# Provider-editable settings kept beside the credentials, with their defaults.
SETTINGS_DEFAULTS: dict[str, Any] = {
    "blender_path": None,  # a Blender the provider picked; None = search PATH and install locations
    "cache_max_bytes": DEFAULT_CACHE_MAX_BYTES,
    "auto_benchmark": True,  # run the benchmark once when the portal has no Bench Score for us
    "auto_speedtest": True,  # measure the connection once when the portal has no figures for us
    "gpu_backend": None,  # "CUDA", "OPTIX", "HIP": None = what the hardware probe suggests
    "devices": None,  # slot ids shared ("gpu0", "gpu1", "cpu"): None = every GPU, the CPU only without one
}


# The top-level keys of worker.json this version reads; others are kept as they are.
DOCUMENT_KEYS = frozenset({"server_url", "worker_id", "token", "data_dir", "settings", "ui"})


def set_aside(path: Path, why: str) -> str:
    """Move an unreadable file of ours out of the way (never delete it: it may hold something a
    person wants back) and return the one line that says so; the caller starts fresh."""
    path = Path(path)
    target = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    os.replace(path, target)
    message = f"{path.name} was unreadable ({why}); moved to {target} and started fresh"
    log.warning("%s", message)
    return message


def _setting_ok(key: str, value: Any) -> bool:
    if value is None:
        return key in ("blender_path", "gpu_backend", "devices")
    if key == "devices":
        from .devices import SLOT_ID_RE
        return isinstance(value, list) and 0 < len(value) <= 17 and all(
            isinstance(v, str) and SLOT_ID_RE.match(v) for v in value)
    if key in ("blender_path", "gpu_backend"):
        return isinstance(value, str) and len(value) < 4096 and "\x00" not in value
    if key == "cache_max_bytes":
        return type(value) is int and 0 <= value <= 2**50
    return type(value) is bool


class ConfigError(Exception):
    """The config file is missing something or is not ours; the message says what to do."""


def default_config_path() -> Path:
    return platformdirs.user_config_path(APP_NAME, appauthor=False) / CONFIG_FILE_NAME


def default_data_dir() -> Path:
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def normalize_server_url(url: str) -> str:
    """'https://portal.example/' or '.../api/v1' -> 'https://portal.example' (the API root is added later)."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{url!r} is not a server URL: use e.g. https://portal.example.com")
    path = parts.path.rstrip("/")
    if path.endswith("/api/v1"):
        path = path[: -len("/api/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass
class WorkerConfig:
    """The paired identity (server, worker id, token) plus local settings and the data folder."""

    path: Path
    data_dir: Path
    server_url: str | None = None
    worker_id: int | None = None
    token: str | None = None
    settings: dict[str, Any] = field(default_factory=lambda: dict(SETTINGS_DEFAULTS))
    # One line per file or value found unreadable at load and set aside (shown, and logged).
    set_aside: list[str] = field(default_factory=list)
    data_dir_explicit: bool = False  # given by --data-dir or the file: saved back into the file
    ui: dict[str, Any] = field(default_factory=dict)  # the desktop UI's own preferences, kept as they are
    # Top-level keys this version does not know (a newer app wrote them): written back untouched.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def paired(self) -> bool:
        return bool(self.server_url and self.token)

    # Everything the engine writes lives under data_dir.
    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite3"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.json"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.cache_dir, self.logs_dir, self.work_dir):
            path.mkdir(parents=True, exist_ok=True)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**self.extra, "server_url": self.server_url, "worker_id": self.worker_id,
                               "token": self.token}
        if self.data_dir_explicit:
            doc["data_dir"] = str(self.data_dir)
        changed = {k: v for k, v in self.settings.items() if SETTINGS_DEFAULTS.get(k, object()) != v}
        if changed:
            doc["settings"] = changed
        if self.ui:
            doc["ui"] = self.ui
        return doc

    def save(self) -> None:
        write_private(self.path, json.dumps(self.to_document(), indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (a crash never leaves half a token)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()  # O_CREAT keeps an existing file's mode: start from nothing
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    # On Windows the mode only toggles read-only; the file sits in the user's own profile folder,
    # which other users cannot read by default.
    os.replace(tmp, path)
    if sys.platform != "win32":
        os.chmod(path, 0o600)


def parse_document(doc: Any, source: str = "config") -> dict[str, Any]:
    """Check a config document (ours, or the one the portal hands out) and return its clean fields."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} is not a JSON object")
    missing = [k for k in ("server_url", "token") if not doc.get(k)]
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)}: download the worker's config "
                          "file from the portal again")
    worker_id = doc.get("worker_id")
    if worker_id is not None and (type(worker_id) is not int or worker_id <= 0):
        raise ConfigError(f"{source} has an invalid worker_id")
    if not isinstance(doc["token"], str):
        raise ConfigError(f"{source} has an invalid token")
    return {"server_url": normalize_server_url(doc["server_url"]), "worker_id": worker_id,
            "token": doc["token"].strip()}


def config_path_for(data_dir: str | os.PathLike | None) -> Path:
    """Where the config lives when no file is named: inside a data folder that was given (so one
    folder holds a whole worker: several workers on one machine never share a token), else the user's
    config folder. A worker set up before that rule (its config in the user folder naming this data
    folder) keeps being found there."""
    if data_dir is None:
        return default_config_path()
    inside = Path(data_dir).expanduser() / CONFIG_FILE_NAME
    legacy = default_config_path()
    if not inside.exists() and legacy.exists():
        try:
            saved = json.loads(legacy.read_text(encoding="utf-8")).get("data_dir")
        except (OSError, ValueError, AttributeError, RecursionError):
            saved = None
        if isinstance(saved, str) and Path(saved).expanduser().resolve() == Path(data_dir).expanduser().resolve():
            return legacy
    return inside


def load(config_path: str | os.PathLike | None = None,
         data_dir: str | os.PathLike | None = None) -> WorkerConfig:
    """The config at config_path (default: config_path_for(data_dir)); unpaired when it is absent."""
    path = Path(config_path).expanduser() if config_path else config_path_for(data_dir)
    doc: Any = {}
    notices: list[str] = []
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        except (ValueError, RecursionError) as exc:  # half-written, or not ours: keep it, start unpaired
            notices.append(set_aside(path, f"not JSON: {str(exc)[:80]}") + "; pair the worker again")
            doc = {}
        if not isinstance(doc, dict):
            notices.append(set_aside(path, "not a JSON object") + "; pair the worker again")
            doc = {}
    saved_dir = doc.get("data_dir") if isinstance(doc.get("data_dir"), str) else None
    explicit = data_dir is not None or bool(saved_dir)
    chosen = Path(data_dir or saved_dir or default_data_dir()).expanduser()
    cfg = WorkerConfig(path=path, data_dir=chosen, data_dir_explicit=explicit, set_aside=notices)
    if doc.get("token") or doc.get("server_url"):
        cfg.__dict__.update(parse_document(doc, str(path)))
    settings = doc.get("settings") or {}
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key not in SETTINGS_DEFAULTS:
                continue
            if _setting_ok(key, value):
                cfg.settings[key] = value
            else:  # one bad value must not stop the app; the default stands until it is set again
                line = f"setting {key} in {path.name} is invalid ({str(value)[:40]!r}); using the default"
                log.warning("%s", line)
                cfg.set_aside.append(line)
    if isinstance(doc.get("ui"), dict):
        cfg.ui = doc["ui"]
    cfg.extra = {k: v for k, v in doc.items() if k not in DOCUMENT_KEYS}
    return cfg


def import_document(doc: Any, cfg: WorkerConfig, source: str = "config file") -> WorkerConfig:
    """Take the server, worker id and token from doc (a pairing answer or a downloaded file) and save."""
    cfg.__dict__.update(parse_document(doc, source))
    cfg.save()
    return cfg
