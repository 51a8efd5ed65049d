"""Jinja filters and globals: money, durations, times, as the pages show them."""

from datetime import datetime

from . import money, timezones
from .clock import utcnow


def duration(seconds) -> str:
    """3725 -> '1h 2m'; 45 -> '45s'; 0.7 -> '0.7s' (a sub-second task is not "0s")."""
    if seconds is None:
        return "—"
    if 0 < seconds < 1:
        return "<0.1s" if seconds < 0.05 else f"{seconds:.1f}s"
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


def local(when: datetime | None, fmt: str = "%Y-%m-%d %H:%M", with_zone: bool = True) -> str:
    """A stored (UTC) time in the viewer's zone, with the zone's abbreviation (webapp/timezones.py)."""
    return timezones.fmt(when, fmt, with_zone=with_zone)


def init_app(app) -> None:
    # `utc` is the filter's old name, kept so a template not yet renamed still shows the viewer's zone.
    app.jinja_env.globals["bench_hour_text"] = money.BENCH_HOUR_TEXT
    app.jinja_env.filters.update(usd=money.usd, usd_exact=money.usd_exact, money=money.fmt, duration=duration, ago=ago, local=local, utc=local)
    from .services.presence import uptime_window
    app.jinja_env.globals.update(now=utcnow, viewer_zone=timezones.label, browser_zone=timezones.browser_zone,
                                 uptime_window=uptime_window)
