"""Settings from the environment, with defaults that work on a fresh clone."""

import os
import secrets
from pathlib import Path


def _secret_key(instance_path: Path) -> str:
    """PICTOR_SECRET_KEY, or one generated once and kept in instance/ so sessions survive restarts."""
    if key := os.environ.get("PICTOR_SECRET_KEY"):
        return key
    path = instance_path / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def from_environment(instance_path: Path) -> dict:
    database_url = os.environ.get("PICTOR_DATABASE_URL") or f"sqlite:///{instance_path / 'pictor.sqlite3'}"
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we install.
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    server_url = os.environ.get("PICTOR_SERVER_URL")
    return {
        "SECRET_KEY": _secret_key(instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "STORAGE_DIR": os.environ.get("PICTOR_STORAGE_DIR") or str(instance_path / "storage"),
        # Shared by every portal process (memory:// would count per process; create_app warns about it).
        "RATELIMIT_STORAGE_URI": os.environ.get("PICTOR_RATELIMIT_STORAGE", "redis://127.0.0.1:6379/0"),
        "SERVER_URL": server_url,  # what workers are told to call; else the request's host
        "SCHEDULER_ENABLED": os.environ.get("PICTOR_SCHEDULER", "1") == "1",
        # Cookies only over https: on by default when the portal's public URL is https.
        "SESSION_COOKIE_SECURE": _flag("PICTOR_SECURE_COOKIES", (server_url or "").startswith("https://")),
        "FORCE_HTTPS": _flag("PICTOR_FORCE_HTTPS", False),
        # Money (services/payouts.py, services/credit.py): the smallest payout; whether every job must be
        # paid for from credit (off: a job without a budget is billed on account).
        "PAYOUT_MINIMUM": os.environ.get("PICTOR_PAYOUT_MINIMUM") or "5.00",
        "CREDIT_REQUIRED": _flag("PICTOR_CREDIT_REQUIRED", False),
        # Alerts (services/alerts.py): where e-mail goes out; whether webhooks may target private addresses
        # (off: the portal must not be a way into its own network; tests and closed networks turn it on).
        "SMTP_HOST": os.environ.get("PICTOR_SMTP_HOST") or None,
        "SMTP_PORT": int(os.environ.get("PICTOR_SMTP_PORT") or 25),
        "SMTP_USER": os.environ.get("PICTOR_SMTP_USER") or None,
        "SMTP_PASSWORD": os.environ.get("PICTOR_SMTP_PASSWORD") or None,
        "SMTP_STARTTLS": _flag("PICTOR_SMTP_STARTTLS", False),
        "SMTP_SSL": _flag("PICTOR_SMTP_SSL", False),
        "ALERT_FROM": os.environ.get("PICTOR_ALERT_FROM") or "Pictor Worker <alerts@localhost>",
        "ALERT_WEBHOOK_ALLOW_PRIVATE": _flag("PICTOR_ALERT_WEBHOOK_ALLOW_PRIVATE", False),
    }


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value in (None, "") else value.strip().lower() in ("1", "true", "yes", "on")


DEFAULTS = {
    # PostgreSQL connections can be dropped by a server restart; SQLite's cannot (create_app drops the ping).
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    # Request bodies: the largest legitimate one is a .blend upload or a rendered EXR.
    "MAX_CONTENT_LENGTH": 512 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 2 * 1024 * 1024,
    "OUTPUT_MAX_BYTES": 256 * 1024 * 1024,
    "TEMP_MAX_AGE_SECONDS": 3600,  # a temp file untouched this long is a crashed upload's, not one in flight
    # Thumbnails: larger images get a placeholder; decoding runs in a child process with a memory cap.
    "THUMBNAIL_MAX_PIXELS": 50_000_000,
    "THUMBNAIL_MEMORY_BYTES": 1024 * 1024 * 1024,
    "RATELIMIT_HEADERS_ENABLED": True,
    # While the shared storage is down, count in memory rather than refuse every limited request.
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    "SESSION_COOKIE_SECURE": False,
    "FORCE_HTTPS": False,
    "LOGIN_RATE_LIMIT": "10 per minute",
    "SIGNUP_RATE_LIMIT": "5 per minute",
    # Market and dispatch rules (services/market.py and services/dispatch.py say why).
    "LEASE_SECONDS": 60,
    # What the portal advises its workers (services/presence.advised_intervals): the fewest seconds
    # between heartbeats and between an idle worker's claims, stretched as the network grows so that
    # it sends about this many per second in all, up to the longest.
    "HEARTBEAT_SECONDS": 15,
    "HEARTBEATS_PER_SECOND": 300,
    "POLL_SECONDS": 1,
    "POLL_MAX_SECONDS": 120,
    "IDLE_CLAIMS_PER_SECOND": 50,
    # Heartbeats are written together, this often, by each portal process (presence.HeartbeatBatch).
    "HEARTBEAT_BATCH_SECONDS": 1.0,
    # Progress reports too (dispatch.ProgressBatch): what they answer is read at once, what they write waits.
    "PROGRESS_BATCH_SECONDS": 1.0,
    # Worker API calls each portal process runs at once (turns.py); the rest wait off the GIL. 0: no limit.
    "WORKER_API_TURNS": 1,
    "OFFLINE_AFTER_SECONDS": 90,
    "PAIRING_MINUTES": 15,
    # Per account (services/limits.py, counted in the database across processes): enough for a farm
    # deploying a rack at once, not for minting throwaway workers.
    "WORKERS_CREATED_PER_HOUR": 100,
    "WORKERS_PAIRED_PER_HOUR": 200,
    "DEFAULT_BID": "0.50",  # USD per compute hour when the network has no bids yet
    # Verified work (services/verification.py): how long an unchecked result's reward stays pending, so
    # a worker caught later still loses it; VERIFY_SEED pins the sampling (tests only).
    "VERIFY_SETTLE_SECONDS": 6 * 3600,
    "VERIFY_DISPUTE_SECONDS": 3600,
    # Progress pings that don't move a task forward keep its lease alive this long, then no more.
    "STALL_SECONDS": 1800,
    "VERIFY_SEED": None,
    "PAGE_SIZE": 25,
    "OUTPUT_RETENTION_DAYS": 30,
    "BLOB_GRACE_SECONDS": 3600,  # an unreferenced upload is kept this long before it is collected
    "PAYOUT_MINIMUM": "5.00",  # USD; each payout costs the operator a transfer
    "CREDIT_REQUIRED": False,
    "SMTP_HOST": None,
    "SMTP_PORT": 25,
    "ALERT_FROM": "Pictor Worker <alerts@localhost>",
    "ALERT_WEBHOOK_ALLOW_PRIVATE": False,
}
