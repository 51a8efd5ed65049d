"""Where a worker is: its IP's country from the offline geoip2fast database, unless the provider set one."""

import ipaddress
import threading

LOCAL_NETWORK = "Local network"
UNKNOWN = "Unknown"

_lock = threading.Lock()
_database = None


def _geoip():
    """The database loads once per process (~70 ms); lookups afterwards are microseconds."""
    global _database
    with _lock:
        if _database is None:
            from geoip2fast import GeoIP2Fast
            _database = GeoIP2Fast()
    return _database


def _address(ip: str | None):
    try:
        addr = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    # "::ffff:1.2.3.4" is an IPv4 client seen through a dual-stack socket.
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


def is_local(ip: str | None) -> bool:
    """Loopback, private, link-local and other non-routable addresses."""
    addr = _address(ip)
    return addr is not None and not addr.is_global


def country_for_ip(ip: str | None) -> str | None:
    """The country name for a public IP address; None for local addresses and unknown ones."""
    addr = _address(ip)
    if addr is None or not addr.is_global:
        return None
    try:
        result = _geoip().lookup(str(addr))
    except Exception:  # a lookup problem must never break a worker's hello
        return None
    code = getattr(result, "country_code", None)
    if not code or code == "--" or getattr(result, "is_private", False):
        return None
    return getattr(result, "country_name", None) or code


def location_label(worker) -> str:
    """What the Statistics tab shows: the provider's own words first, then the IP's country."""
    if worker.location_override:
        return worker.location_override
    if worker.country:
        return worker.country
    if worker.ip_address and is_local(worker.ip_address):
        return LOCAL_NETWORK
    return UNKNOWN
