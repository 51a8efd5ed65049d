"""Jinja filters and globals: money, durations, times, as the pages show them."""

from datetime import datetime

from . import money
from .clock import utcnow


def duration(seconds) -> str:
    """3725 -> '1h 2m'; 45 -> '45s'."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (utcnow() - when).total_seconds()
    if seconds < 0:
        return "just now"
    return "just now" if seconds < 5 else f"{duration(seconds).split(' ')[0]} ago"


def utc(when: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return when.strftime(fmt) + " UTC" if when else "—"


def init_app(app) -> None:
    app.jinja_env.filters.update(usd=money.usd, money=money.fmt, duration=duration, ago=ago, utc=utc)
    app.jinja_env.globals.update(now=utcnow)
