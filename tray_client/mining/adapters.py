"""Miner adapters: the argv each supported miner is started with (never a shell) and the reading of
its local HTTP stats API, whose answers are untrusted (bounded size, short timeouts, types checked).

Supported: T-Rex and lolMiner, two widely used NVIDIA miners, by their documented command lines and
stats APIs, plus a "custom command" whose argv template the provider writes with placeholders
(see CustomAdapter). Options the app sets itself (pool, wallet, devices, the API binding) and options
that would run other programs or rewrite files (T-Rex --script-*, lolMiner --watchdog script...) are
refused in the extra config: that text is synced through the portal, which must not choose what runs."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import requests

MAX_STATS_BYTES = 256 * 1024  # a summary is a few KB; more is a broken or hostile answer
STATS_TIMEOUT = (1.0, 2.0)  # connect, read: a local API answers in milliseconds
MAX_HASHRATE = 1e16  # H/s; far above any GPU rig, a number check only
MAX_COUNT = 10**12
MAX_EXTRA_ARGS = 64


class MinerConfigError(ValueError):
    """The miner cannot be started as configured; str() says what to change."""


class StatsError(Exception):
    """The stats API did not answer with figures we can use (not up yet, too large, wrong shape)."""


@dataclass(frozen=True)
class GpuStats:
    index: int | None
    hashrate: float | None  # H/s
    temperature: float | None  # degrees Celsius
    power: float | None  # W


@dataclass(frozen=True)
class MinerStats:
    """One reading of the miner's stats API. Shares are the miner's counters since it started."""

    hashrate: float  # H/s, all GPUs
    accepted: int | None = None
    rejected: int | None = None
    uptime_s: int | None = None
    gpus: tuple[GpuStats, ...] = ()

    @property
    def temperature(self) -> float | None:
        """The hottest GPU: what a provider watches."""
        temps = [g.temperature for g in self.gpus if g.temperature is not None]
        return max(temps) if temps else None

    @property
    def power(self) -> float | None:
        watts = [g.power for g in self.gpus if g.power is not None]
        return sum(watts) if watts else None


@dataclass(frozen=True)
class MiningJob:
    """What the miner is told to do: from the portal's mining_config, the local settings and the GPUs
    free of compute work."""

    pool: str
    coin: str
    wallet: str
    worker: str
    algorithm: str
    api_port: int
    devices: tuple[int, ...] | None = None  # None: every GPU
    extra: tuple[str, ...] = ()


# --- checking untrusted numbers ------------------------------------------------------------------

def _number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        return None
    return value


def _count(value: Any) -> int | None:
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        return None
    return value


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any, limit: int = 64) -> list[Any]:
    return value[:limit] if isinstance(value, list) else []


def _temperature(value: Any) -> float | None:
    return _number(value, -40, 200)


def _power(value: Any) -> float | None:
    return _number(value, 0, 5000)


# --- the extra config ----------------------------------------------------------------------------

def split_extra(extra: str) -> list[str]:
    """The one line of extra config as argv elements (shell-like quoting, never run by a shell)."""
    extra = (extra or "").strip()
    if not extra:
        return []
    try:
        args = shlex.split(extra, posix=True)
    except ValueError as exc:
        raise MinerConfigError(f"Extra config: {exc} (check the quotes)") from None
    if len(args) > MAX_EXTRA_ARGS:
        raise MinerConfigError(f"Extra config: at most {MAX_EXTRA_ARGS} options.")
    return args


def _refused_option(args: list[str], long_names: tuple[str, ...], short_names: tuple[str, ...],
                    long_prefixes: tuple[str, ...] = ()) -> str | None:
    for arg in args:
        name = arg.split("=", 1)[0]
        if arg.startswith("--"):
            if name in long_names or name.startswith(long_prefixes):
                return name
        elif arg.startswith("-") and len(arg) >= 2 and arg[:2] in short_names:
            return arg[:2]
    return None


_SAFE_VALUE = re.compile(r"^[A-Za-z0-9][^\s\x00-\x1f\x7f]{0,254}$")


def check_value(name: str, value: str) -> str:
    """A pool, coin or wallet from the portal as one argv value: it may not start with "-" (a miner's
    option parser could take it for an option) nor hold spaces or control characters."""
    if not isinstance(value, str) or not _SAFE_VALUE.match(value):
        raise MinerConfigError(f"The {name} from the portal cannot be passed to a miner: it must start with a "
                               f"letter or digit and hold no spaces.")
    return value


# --- the adapters --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MinerAdapter:
    """One miner program: how it is started and how its stats are read."""

    key: str
    label: str
    default_api_port: int
    stats_path: str
    algorithms: dict[str, str] = field(default_factory=dict)  # coin -> the miner's algorithm name
    refused_long: tuple[str, ...] = ()
    refused_short: tuple[str, ...] = ()
    refused_prefixes: tuple[str, ...] = ()

    def algorithm_for(self, coin: str, configured: str | None) -> str:
        if configured:
            return configured
        algorithm = self.algorithms.get(coin.upper())
        if algorithm is None:
            raise MinerConfigError(f"{self.label} has no known algorithm for {coin}: set \"algorithm\" in "
                                   "the mining section of the config file.")
        return algorithm

    def check_extra(self, args: list[str]) -> list[str]:
        refused = _refused_option(args, self.refused_long, self.refused_short, self.refused_prefixes)
        if refused:
            raise MinerConfigError(f"Extra config: {refused} is set by the app itself or could run other "
                                   f"programs; remove it.")
        return args

    def argv(self, executable: str, job: MiningJob) -> list[str]:
        raise NotImplementedError

    def parse(self, doc: Any) -> MinerStats:
        raise NotImplementedError

    def stats_url(self, port: int) -> str:
        return f"http://127.0.0.1:{int(port)}{self.stats_path}"


def _with_scheme(pool: str) -> str:
    return pool if "://" in pool else f"stratum+tcp://{pool}"


def _host_port(pool: str) -> str:
    return pool.split("://", 1)[1] if pool.startswith("stratum+tcp://") else pool


class TRexAdapter(MinerAdapter):
    """T-Rex (trexminer/T-Rex). Command line from its README's option list: -a/--algo, -o/--url
    (<scheme>://<host>:<port>), -u/--user, -p/--pass, -w/--worker, -d/--devices (CUDA ids),
    --api-bind-http IP:port, --api-bind-telnet 0 (off), --api-read-only, --no-watchdog (its watchdog
    restarts the miner itself; we supervise it). Stats: GET /summary, as its wiki "API" page documents:
    hashrate (H/s, all GPUs), accepted_count, rejected_count, uptime (s), gpus[].device_id,
    gpus[].hashrate, gpus[].temperature and gpus[].power (W, in API 4.x answers)."""

    def argv(self, executable: str, job: MiningJob) -> list[str]:
        argv = [executable, "-a", job.algorithm, "-o", _with_scheme(job.pool), "-u", job.wallet, "-p", "x",
                "-w", job.worker, "--api-bind-http", f"127.0.0.1:{job.api_port}", "--api-bind-telnet", "0",
                "--api-read-only", "--no-watchdog", "--no-color"]
        if job.devices is not None:
            argv += ["-d", ",".join(str(d) for d in job.devices)]
        return argv + list(job.extra)

    def parse(self, doc: Any) -> MinerStats:
        if not isinstance(doc, dict):
            raise StatsError("T-Rex /summary is not a JSON object")
        hashrate = _number(doc.get("hashrate"), 0, MAX_HASHRATE)
        if hashrate is None:
            raise StatsError("T-Rex /summary has no usable hashrate")
        gpus = tuple(GpuStats(index=_count(g.get("device_id")), hashrate=_number(g.get("hashrate"), 0, MAX_HASHRATE),
                              temperature=_temperature(g.get("temperature")), power=_power(g.get("power")))
                     for g in map(_object, _list(doc.get("gpus"))))
        uptime = _count(doc.get("uptime"))
        return MinerStats(hashrate=hashrate, accepted=_count(doc.get("accepted_count")),
                          rejected=_count(doc.get("rejected_count")), uptime_s=uptime, gpus=gpus)


_UNITS = {"h/s": 1.0, "kh/s": 1e3, "mh/s": 1e6, "gh/s": 1e9, "th/s": 1e12, "sol/s": 1.0, "g/s": 1.0}


def _unit_factor(unit: Any) -> float:
    factor = _UNITS.get(unit.strip().lower()) if isinstance(unit, str) else None
    if factor is None:
        raise StatsError(f"lolMiner reports an unknown speed unit {str(unit)[:20]!r}")
    return factor


class LolMinerAdapter(MinerAdapter):
    """lolMiner (Lolliedieb/lolMiner-releases). Command line from its wiki ("Basic usage" and "Extra
    Parameters" pages, `lolMiner -h`): --algo, --pool <host>:<port>, --user, --worker, --devices 0,1,
    --apiport, --apihost. Stats: GET /summary (any path answers the same JSON). Two documented shapes:
    up to 1.2x, Session.Performance_Summary with Session.Performance_Unit ("mh/s"), Session.Accepted,
    Session.Submitted (rejected = submitted - accepted), Session.Uptime, GPUs[].Performance,
    GPUs[]."Consumption (W)" and GPUs[]."Temp (deg C)"; from 1.3x, Algorithms[0].Total_Performance x
    Performance_Factor (or its Performance_Unit), Total_Accepted, Total_Rejected, Session.Uptime,
    Workers[].Power and Workers[].Core_Temp."""

    def argv(self, executable: str, job: MiningJob) -> list[str]:
        argv = [executable, "--algo", job.algorithm, "--pool", _host_port(job.pool), "--user", job.wallet,
                "--worker", job.worker, "--apiport", str(job.api_port), "--apihost", "127.0.0.1"]
        if job.devices is not None:
            argv += ["--devices", ",".join(str(d) for d in job.devices)]
        return argv + list(job.extra)

    def parse(self, doc: Any) -> MinerStats:
        if not isinstance(doc, dict):
            raise StatsError("lolMiner's API answer is not a JSON object")
        session = _object(doc.get("Session"))
        uptime = _count(session.get("Uptime"))
        algorithms = _list(doc.get("Algorithms"))
        if algorithms:  # 1.3x and later
            algo = _object(algorithms[0])
            factor = _number(algo.get("Performance_Factor"), 1e-3, 1e15)
            if factor is None:
                factor = _unit_factor(algo.get("Performance_Unit"))
            total = _number(algo.get("Total_Performance"), 0, MAX_HASHRATE)
            if total is None:
                raise StatsError("lolMiner reports no usable Total_Performance")
            per_worker = _list(algo.get("Worker_Performance"))
            gpus = tuple(GpuStats(index=_count(w.get("Index")),
                                  hashrate=(p * factor if (p := _number(per_worker[i], 0, MAX_HASHRATE)) is not None
                                            else None) if i < len(per_worker) else None,
                                  temperature=_temperature(w.get("Core_Temp")), power=_power(w.get("Power")))
                         for i, w in enumerate(map(_object, _list(doc.get("Workers")))))
            return MinerStats(hashrate=min(total * factor, MAX_HASHRATE), accepted=_count(algo.get("Total_Accepted")),
                              rejected=_count(algo.get("Total_Rejected")), uptime_s=uptime, gpus=gpus)
        total = _number(session.get("Performance_Summary"), 0, MAX_HASHRATE)
        if total is None:
            raise StatsError("lolMiner reports no usable Performance_Summary")
        factor = _unit_factor(session.get("Performance_Unit"))
        accepted, submitted = _count(session.get("Accepted")), _count(session.get("Submitted"))
        rejected = submitted - accepted if accepted is not None and submitted is not None \
            and submitted >= accepted else None
        gpus = tuple(GpuStats(index=_count(g.get("Index")),
                              hashrate=(p * factor if (p := _number(g.get("Performance"), 0, MAX_HASHRATE)) is not None
                                        else None),
                              temperature=_temperature(g.get("Temp (deg C)")), power=_power(g.get("Consumption (W)")))
                     for g in map(_object, _list(doc.get("GPUs"))))
        return MinerStats(hashrate=min(total * factor, MAX_HASHRATE), accepted=accepted, rejected=rejected,
                          uptime_s=uptime, gpus=gpus)


TREX = TRexAdapter(
    key="trex", label="T-Rex", default_api_port=4067, stats_path="/summary",
    algorithms={"ETC": "etchash", "ETH": "ethash", "RVN": "kawpow", "ERG": "autolykos2", "CFX": "octopus"},
    refused_long=("--algo", "--url", "--user", "--pass", "--worker", "--devices", "--config", "--log-path",
                  "--autoupdate", "--watchdog-exit-mode", "--json-response", "--pci-indexing", "--ab-indexing"),
    refused_short=("-a", "-o", "-u", "-p", "-w", "-d", "-c", "-l", "-b", "-J"),
    refused_prefixes=("--script-", "--api-"))

LOLMINER = LolMinerAdapter(
    key="lolminer", label="lolMiner", default_api_port=8020, stats_path="/summary",
    algorithms={"ETC": "ETCHASH", "ETH": "ETHASH", "ERG": "AUTOLYKOS2", "BEAM": "BEAM-III", "FLUX": "ZEL",
                "GRIN": "C32"},
    refused_long=("--algo", "--coin", "--pool", "--user", "--pass", "--worker", "--devices", "--apiport",
                  "--apihost", "--config", "--json", "--logfile", "--watchdog", "--watchdogscript"),
    refused_short=("-a", "-c", "-u", "-p"))


# --- the custom command --------------------------------------------------------------------------

PLACEHOLDERS = ("pool", "pool_host_port", "wallet", "worker", "user", "coin", "algorithm", "api_port", "devices")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def substitute(template: str, values: dict[str, str]) -> str:
    """One argument of a custom command with its placeholders filled in. A value never splits an
    argument nor adds one: substitution is per argument of the argv list. {{ and }} are literal braces."""
    def one(match: re.Match) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        name = match.group(1)
        if name not in values:
            raise MinerConfigError(f"Custom command: unknown placeholder {{{name}}}; use one of "
                                   + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS) + ", {extra}.")
        return values[name]
    result = _PLACEHOLDER.sub(one, template)
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        raise MinerConfigError(f"Custom command: unmatched brace in {template[:60]!r} (write {{{{ or }}}} "
                               "for a literal brace).")
    return result


@dataclass(frozen=True)
class CustomAdapter(MinerAdapter):
    """A miner the provider starts with their own argv template (the "argv" list of the mining section
    of worker.json: the program first, then one string per argument). In each argument {pool}
    (as configured), {pool_host_port} (without stratum+tcp://), {wallet}, {worker}, {user}
    ({wallet}.{worker}), {coin}, {algorithm}, {api_port} and {devices} (GPU indices, "0,1") are
    replaced; an argument that is exactly {extra} becomes the extra config's options (none without
    it). Its stats are read in T-Rex's or lolMiner's format ("stats": "trex" | "lolminer"), or not at
    all ("none": it runs, but no hashrate is measured, so nothing is reported)."""

    template: tuple[str, ...] = ()
    stats_format: MinerAdapter | None = None

    def algorithm_for(self, coin: str, configured: str | None) -> str:
        return configured or (self.stats_format.algorithms.get(coin.upper(), coin.lower())
                              if self.stats_format else coin.lower())

    def check_extra(self, args: list[str]) -> list[str]:
        return args

    def argv(self, executable: str, job: MiningJob) -> list[str]:
        devices = ",".join(str(d) for d in job.devices) if job.devices is not None else ""
        values = {"pool": job.pool, "pool_host_port": _host_port(job.pool), "wallet": job.wallet,
                  "worker": job.worker, "user": f"{job.wallet}.{job.worker}", "coin": job.coin,
                  "algorithm": job.algorithm, "api_port": str(job.api_port), "devices": devices}
        argv: list[str] = []
        for arg in self.template:
            if arg == "{extra}":
                argv += list(job.extra)
            else:
                argv.append(substitute(arg, values))
        return argv

    def parse(self, doc: Any) -> MinerStats:
        if self.stats_format is None:
            raise StatsError("this custom miner has no stats API")
        return self.stats_format.parse(doc)

    def stats_url(self, port: int) -> str:
        path = self.stats_format.stats_path if self.stats_format else "/"
        return f"http://127.0.0.1:{int(port)}{path}"


def custom_adapter(template: list[str] | tuple[str, ...], stats: str) -> CustomAdapter:
    if not template:
        raise MinerConfigError("Custom command: set \"argv\" in the mining section of the config file "
                               "(the miner's program, then one string per argument).")
    fmt = {"trex": TREX, "lolminer": LOLMINER, "none": None}.get(stats, "bad")
    if fmt == "bad":
        raise MinerConfigError("Custom command: \"stats\" is trex, lolminer or none.")
    port = fmt.default_api_port if fmt else 0
    values = {p: "x" for p in PLACEHOLDERS}
    for arg in template[1:]:  # unknown placeholders are said now, not at the first start
        if arg != "{extra}":
            substitute(arg, values)
    return CustomAdapter(key="custom", label="Custom miner", default_api_port=port,
                         stats_path=fmt.stats_path if fmt else "/", template=tuple(template), stats_format=fmt)


ADAPTERS: dict[str, MinerAdapter] = {"trex": TREX, "lolminer": LOLMINER}


def build_adapter(miner: str | None, template: tuple[str, ...] = (), stats: str = "trex") -> MinerAdapter:
    if miner == "custom":
        return custom_adapter(template, stats)
    adapter = ADAPTERS.get(miner or "")
    if adapter is None:
        raise MinerConfigError("No miner is set up: choose the miner program in the Mining tab (T-Rex or "
                               "lolMiner and its file), or write the mining section of worker.json.")
    return adapter


# --- reading the stats API -----------------------------------------------------------------------

def fetch_stats(adapter: MinerAdapter, port: int, session: requests.Session | None = None,
                timeout: tuple[float, float] = STATS_TIMEOUT) -> MinerStats:
    """One reading of the miner's local API; StatsError when it has none we can use."""
    getter = session or requests
    try:
        with getter.get(adapter.stats_url(port), timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                raise StatsError(f"the miner's API answered HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_content(16384):
                body += chunk
                if len(body) > MAX_STATS_BYTES:
                    raise StatsError(f"the miner's API sent more than {MAX_STATS_BYTES // 1024} KB")
    except requests.RequestException as exc:
        raise StatsError(f"the miner's API did not answer ({exc.__class__.__name__})") from None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise StatsError("the miner's API sent something that is not JSON") from None
    return adapter.parse(doc)
