"""The devices this machine can run tasks on, one slot each: every NVIDIA GPU (GPUtil, nvidia-ml-py as
fallback) and the CPU; and which of them the provider shares (the `devices` setting, `run --devices`).

`probe()` asks the hardware (the engine reads the same GPUs from its hardware report, `from_report`); the
engine takes a device probe as a parameter, so a test hands in a fake one (a list of Device values) at
this boundary and everything above it runs for real."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger(__name__)

MAX_GPUS = 16  # the portal accepts at most 16 slots per worker: gpu0..gpu15 and cpu
CPU_SLOT = "cpu"
SLOT_ID_RE = re.compile(r"^(gpu(1[0-5]|[0-9])|cpu)$")


@dataclass(frozen=True)
class Device:
    """One slot: `id` as the portal knows it (gpu0, gpu1, ..., cpu), the Cycles backend as `kind`, and
    `index`, the GPU's number for CUDA_VISIBLE_DEVICES (None for the CPU)."""

    id: str
    kind: str  # "CUDA" for an NVIDIA GPU, "CPU"
    name: str
    memory_mb: int | None = None
    index: int | None = None

    @property
    def is_gpu(self) -> bool:
        return self.index is not None

    def to_hello(self) -> dict:
        """The hello's slot entry."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "memory_mb": self.memory_mb}


DeviceProbe = Callable[[], list[Device]]


def cpu_device(name: str = "CPU") -> Device:
    return Device(CPU_SLOT, "CPU", name or "CPU")


def probe() -> list[Device]:
    """Every NVIDIA GPU found (GPUtil first, nvidia-ml-py when GPUtil finds none), then the CPU."""
    from . import hardware
    return from_report({"gpus": hardware.gpu_report()[0], "cpu": hardware.cpu_report()})


def from_report(report: dict) -> list[Device]:
    """The slots of a hardware report (hardware.probe, which asks GPUtil and nvidia-ml-py the same way):
    its GPUs in nvidia-smi order, then the CPU. What the engine uses unless handed a device probe."""
    gpus = [g for g in report.get("gpus") or [] if isinstance(g, dict)][:MAX_GPUS]
    cpu = report.get("cpu")
    name = cpu.get("brand") if isinstance(cpu, dict) else cpu
    found = []
    for position, gpu in enumerate(gpus):
        index = gpu.get("index") if type(gpu.get("index")) is int else position
        if not 0 <= index < MAX_GPUS:
            continue
        memory = gpu.get("memory_mb") if type(gpu.get("memory_mb")) is int else None
        found.append(Device(f"gpu{index}", "CUDA", str(gpu.get("name") or "GPU")[:128], memory, index))
    return found + [cpu_device(str(name or "CPU")[:128])]


def _nvml() -> list[tuple[int, str, int | None]]:
    """The driver's own library: works where nvidia-smi is missing from PATH (some Windows installs)."""
    try:
        import pynvml  # the nvidia-ml-py package
        pynvml.nvmlInit()
    except Exception:  # no driver, no library: no NVIDIA GPU here
        return []
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
            found.append((index, name.decode() if isinstance(name, bytes) else str(name), int(memory)))
        return found
    except Exception as exc:
        log.info("nvidia-ml-py could not list the GPUs: %s", exc)
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


# --- which devices are shared -------------------------------------------------------------------

def parse_selection(text: str) -> list[str]:
    """"gpu0,gpu1,cpu" -> ["gpu0", "gpu1", "cpu"]; ValueError naming the bad entry."""
    ids = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    if not ids:
        raise ValueError("name at least one device, e.g. --devices gpu0,cpu")
    for slot_id in ids:
        if not SLOT_ID_RE.match(slot_id):
            raise ValueError(f"{slot_id!r} is not a device: use gpu0 ... gpu15 or cpu")
    return list(dict.fromkeys(ids))


def default_selection(found: Iterable[Device]) -> list[str]:
    """Every GPU; the CPU only when there is no GPU (rendering beside them would slow their feeding)."""
    found = list(found)
    gpus = [d.id for d in found if d.is_gpu]
    return gpus or [d.id for d in found if not d.is_gpu]


def active(found: Iterable[Device], selection: Iterable[str] | None) -> list[Device]:
    """The found devices the provider shares, in probe order. `selection` None: the default. Devices
    selected but not found (a GPU removed) are left out; if none is left, the default applies again."""
    found = list(found)
    if selection is None:
        chosen = set(default_selection(found))
    else:
        chosen = {s for s in selection if isinstance(s, str)}
    shared = [d for d in found if d.id in chosen]
    if not shared and selection is not None:
        log.warning("none of the chosen devices (%s) is here: using the default", ", ".join(sorted(chosen)))
        return active(found, None)
    return shared
