"""The local half of the mining setup, read from the "mining" section of worker.json: which miner
program runs and how. The other half (pool, coin, wallet, extra config, on/off) is the portal's
mining_config, edited in the Mining tab; the program never comes from the portal, so a portal can
never choose what runs on this computer.

    "mining": {
        "miner": "trex" | "lolminer" | "custom",
        "path": "/opt/t-rex/t-rex",            # the miner's executable (trex, lolminer)
        "argv": ["/opt/m/miner", "--pool", "{pool}", "{extra}"],   # custom: program + arguments
        "stats": "trex" | "lolminer" | "none",  # custom: the stats API format it speaks
        "algorithm": "etchash",                 # optional: else chosen from the coin
        "api_port": 4067,                       # optional: the miner's default
        "idle_only": false, "idle_minutes": 5,  # mine only after that long without input
        "report_seconds": 300,                  # how often mined periods are reported
        "resume_seconds": 10                    # after a task, wait this long before mining again
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MINERS = ("trex", "lolminer", "custom")
STATS_FORMATS = ("trex", "lolminer", "none")
REPORT_SECONDS = (60, 3600)


@dataclass(frozen=True)
class MiningSettings:
    miner: str | None = None
    path: str | None = None
    argv: tuple[str, ...] = ()
    stats: str = "trex"
    algorithm: str | None = None
    api_port: int | None = None
    idle_only: bool = False
    idle_minutes: int = 5
    report_seconds: int = 300
    resume_seconds: int = 10
    problems: tuple[str, ...] = ()  # values ignored, one line each (shown in the Mining tab)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"miner": self.miner, "path": self.path, "idle_only": self.idle_only,
                               "idle_minutes": self.idle_minutes, "report_seconds": self.report_seconds,
                               "resume_seconds": self.resume_seconds}
        if self.argv:
            doc["argv"] = list(self.argv)
        if self.miner == "custom":
            doc["stats"] = self.stats
        if self.algorithm:
            doc["algorithm"] = self.algorithm
        if self.api_port:
            doc["api_port"] = self.api_port
        return doc


def section(cfg) -> Any:
    """The mining section of a WorkerConfig: a top-level key of worker.json that the config module keeps
    as it is (WorkerConfig.extra) and this package owns."""
    return (getattr(cfg, "extra", None) or {}).get("mining")


def save_section(cfg, settings: MiningSettings) -> None:
    cfg.extra["mining"] = settings.to_document()
    cfg.save()


def _text(value: Any, limit: int = 4096) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= limit and not any(
            ord(c) < 32 for c in value):
        return value.strip()
    return None


def load_settings(doc: Any) -> MiningSettings:
    """Clean settings from the config file's section; a bad value is left out and said in problems."""
    if not isinstance(doc, dict):
        return MiningSettings(problems=("the mining section is not an object",) if doc not in (None, {}) else ())
    problems: list[str] = []
    values: dict[str, Any] = {}

    def bad(key: str, why: str) -> None:
        problems.append(f"mining.{key} {why}; ignored")

    if "miner" in doc and doc["miner"] is not None:
        if doc["miner"] in MINERS:
            values["miner"] = doc["miner"]
        else:
            bad("miner", "must be trex, lolminer or custom")
    if doc.get("path") is not None:
        if (path := _text(doc["path"])) is not None:
            values["path"] = path
        else:
            bad("path", "must be the miner program's file")
    if "argv" in doc:
        argv = doc["argv"]
        if isinstance(argv, list) and 0 < len(argv) <= 128 and all(
                isinstance(a, str) and len(a) <= 4096 and "\x00" not in a for a in argv) and argv[0].strip():
            values["argv"] = tuple(argv)
        else:
            bad("argv", "must be a list of strings, the program first")
    if "stats" in doc:
        if doc["stats"] in STATS_FORMATS:
            values["stats"] = doc["stats"]
        else:
            bad("stats", "must be trex, lolminer or none")
    if doc.get("algorithm") is not None:
        algo = doc["algorithm"]
        if isinstance(algo, str) and 0 < len(algo) <= 40 and algo.replace("-", "").replace("_", "").isalnum():
            values["algorithm"] = algo
        else:
            bad("algorithm", "must be the miner's algorithm name, e.g. etchash")
    if doc.get("api_port") is not None:
        if type(doc["api_port"]) is int and 1024 <= doc["api_port"] <= 65535:
            values["api_port"] = doc["api_port"]
        else:
            bad("api_port", "must be a port from 1024 to 65535")
    if "idle_only" in doc:
        if type(doc["idle_only"]) is bool:
            values["idle_only"] = doc["idle_only"]
        else:
            bad("idle_only", "must be true or false")
    if "idle_minutes" in doc:
        if type(doc["idle_minutes"]) is int and 1 <= doc["idle_minutes"] <= 240:
            values["idle_minutes"] = doc["idle_minutes"]
        else:
            bad("idle_minutes", "must be a whole number from 1 to 240")
    if "report_seconds" in doc:
        low, high = REPORT_SECONDS
        if type(doc["report_seconds"]) is int and low <= doc["report_seconds"] <= high:
            values["report_seconds"] = doc["report_seconds"]
        else:
            bad("report_seconds", f"must be a whole number from {low} to {high}")
    if "resume_seconds" in doc:
        if type(doc["resume_seconds"]) is int and 0 <= doc["resume_seconds"] <= 600:
            values["resume_seconds"] = doc["resume_seconds"]
        else:
            bad("resume_seconds", "must be a whole number from 0 to 600")
    return MiningSettings(**values, problems=tuple(problems))
