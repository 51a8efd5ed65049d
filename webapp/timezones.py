"""The viewer's time zone: the account's choice, else the browser's (a cookie static/js/pages.js sets), else UTC.

Times are stored in UTC; pages show them in this zone (the `local` filter), and the charts' day
boundaries are this zone's midnights (services/stats.py series). One home for "which zone is this viewer in".
"""

from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import g, has_request_context, request

COOKIE = "tz"  # written by static/js/pages.js from Intl.DateTimeFormat().resolvedOptions().timeZone
UTC = ZoneInfo("UTC")
NAME_MAX = 64


@cache
def zone_names() -> tuple[str, ...]:
    """Every IANA zone this system knows, sorted (the Account page's choices)."""
    return tuple(sorted(name for name in available_timezones() if "/" in name or name == "UTC"))


def zone_or_none(name) -> ZoneInfo | None:
    """The zone of an IANA name, or None for anything else (a cookie or a form is untrusted text)."""
    if not isinstance(name, str) or not name or len(name) > NAME_MAX or name not in zone_names():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def browser_zone() -> ZoneInfo | None:
    """The zone the viewer's browser reported, if any."""
    if not has_request_context():
        return None
    return zone_or_none(request.cookies.get(COOKIE))


def current_zone() -> ZoneInfo:
    """This request's zone: the signed-in user's setting, else the browser's, else UTC."""
    if not has_request_context():
        return UTC
    if "viewer_zone" not in g:
        from flask_login import current_user
        chosen = zone_or_none(getattr(current_user, "time_zone", None)) if current_user.is_authenticated else None
        g.viewer_zone = chosen or browser_zone() or UTC
    return g.viewer_zone


def to_local(when: datetime, zone: ZoneInfo | None = None) -> datetime:
    if when.tzinfo is None:  # stored values are UTC; SQLite hands some back naive
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(zone or current_zone())


def fmt(when: datetime | None, pattern: str = "%Y-%m-%d %H:%M", zone: ZoneInfo | None = None,
        with_zone: bool = True) -> str:
    """A time as this viewer reads it, with the zone's abbreviation ("2024-05-10 14:00 CEST") unless
    with_zone is False (a column whose header names the zone)."""
    if when is None:
        return "—"
    local = to_local(when, zone)
    return f"{local.strftime(pattern)} {local.tzname()}" if with_zone else local.strftime(pattern)


def today(now: datetime, zone: ZoneInfo | None = None) -> date:
    """The viewer's calendar day at `now`."""
    return to_local(now, zone).date()


def day_start(day: date, zone: ZoneInfo | None = None) -> datetime:
    """The UTC instant this zone's `day` begins (a DST day is 23 or 25 hours long)."""
    return datetime.combine(day, time.min, tzinfo=zone or current_zone()).astimezone(timezone.utc)


def day_bounds(day: date, zone: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    zone = zone or current_zone()
    return day_start(day, zone), day_start(day + timedelta(days=1), zone)


def label(zone: ZoneInfo | None = None) -> str:
    """The zone's name for notes such as "times are shown in Europe/Berlin"."""
    return str((zone or current_zone()).key)
