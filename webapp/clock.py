"""The one clock of the portal: timezone-aware UTC, frozen by tests."""

from datetime import datetime, timezone

_frozen: datetime | None = None


def utcnow() -> datetime:
    return _frozen or datetime.now(timezone.utc)


def freeze(at: datetime | None) -> None:
    """Pin utcnow() to `at` (None releases it). Only tests call this."""
    global _frozen
    _frozen = at
