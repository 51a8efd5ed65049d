"""Mining when there is no compute work: miner adapters (argv and stats), the supervisor that runs the
provider's miner only while no compute task needs the GPU, and the queue of mined periods reported to
the portal. Compute tasks always come first: the engine tells the supervisor when one starts on a GPU
(compute_started / compute_ended) and the miner is off that GPU before the task touches it."""

from .adapters import ADAPTERS, MinerConfigError, MinerStats, build_adapter
from .settings import MiningSettings, load_settings
from .supervisor import MinerStatus, MiningState, MiningSupervisor, attach

__all__ = ["ADAPTERS", "MinerConfigError", "MinerStats", "MinerStatus", "MiningSettings", "MiningState",
           "MiningSupervisor", "attach", "build_adapter", "load_settings"]
