"""The hardware report the Worker App sends to the portal: GPUs, CPU, RAM, OS, free disk and the
renderers it can run. Cheap to call again: the slow parts are remembered."""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

import psutil

from .runners.blender import blender_version, find_blender
from .runners.realesrgan import realesrgan_version

CPU_CACHE_FILE = "cpu.json"


def probe(data_dir: str | os.PathLike | None = None, blender_path: str | None = None) -> dict[str, Any]:
    """A JSON-able report of this machine. data_dir: where free space counts and the CPU name is cached."""
    gpus, gpu_note = gpu_report()
    report: dict[str, Any] = {
        "gpus": gpus,
        "cpu": cpu_report(Path(data_dir) if data_dir else None),
        "ram_mb": psutil.virtual_memory().total // 2**20,
        "os": platform.platform(),
        "hostname": socket.gethostname(),
        "disk_free_mb": _disk_free_mb(data_dir),
        "renderers": renderers(blender_path),
    }
    if gpu_note:
        report["gpu_note"] = gpu_note
    return report


def gpu_report() -> tuple[list[dict[str, Any]], str | None]:
    """NVIDIA GPUs through GPUtil (which runs nvidia-smi), and a note saying why there are none."""
    try:
        import GPUtil  # imports distutils: fails on Python 3.12 without setuptools
        found = GPUtil.getGPUs()  # swallows nvidia-smi errors and returns []
    except Exception as exc:
        found, problem = [], f"GPU probe unavailable: {exc}"[:200]
    else:
        problem = None
    if not found:
        from .devices import _nvml  # the driver's library, where nvidia-smi is missing or GPUtil fails
        nvml = [{"name": name, "memory_mb": memory, "index": index} for index, name, memory in _nvml()]
        if nvml:
            return nvml, None
    if problem:
        return [], problem
    gpus = [{
        "index": int(gpu.id),
        "name": gpu.name,
        "memory_mb": int(gpu.memoryTotal),
        "driver": gpu.driver,
        "utilization": round(gpu.load * 100),  # percent
        "temperature": gpu.temperature,  # degrees Celsius
        "uuid": gpu.uuid,
    } for gpu in found]
    if gpus:
        return gpus, None
    if not _nvidia_smi():
        return [], "no NVIDIA GPU found (nvidia-smi missing)"
    return [], "no NVIDIA GPU found (nvidia-smi lists none)"


def _nvidia_smi() -> str | None:
    windows_default = os.path.join(os.environ.get("ProgramFiles", "C:/Program Files"),
                                   "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe")
    return shutil.which("nvidia-smi") or (windows_default if os.path.isfile(windows_default) else None)


def suggested_gpu_backend(report: dict[str, Any]) -> str | None:
    """The Cycles backend for the GPUs we found; None means render on the CPU."""
    return "CUDA" if report.get("gpus") else None


def cpu_report(cache_dir: Path | None = None) -> dict[str, Any]:
    return {
        "brand": cpu_brand(cache_dir),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "arch": platform.machine(),
    }


def cpu_brand(cache_dir: Path | None = None) -> str:
    """The CPU's marketing name, remembered in cache_dir so that the next start is quick too."""
    key = f"{platform.node()}|{platform.machine()}|{os.cpu_count()}"  # a new CPU means a new answer
    cache = Path(cache_dir) / CPU_CACHE_FILE if cache_dir else None
    try:
        cached = json.loads(cache.read_text()) if cache else {}
        if cached.get("key") == key and cached.get("brand"):
            return cached["brand"]
    except (OSError, ValueError, AttributeError):
        pass
    brand = _cpuinfo_brand()
    if cache:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"key": key, "brand": brand}))
        except OSError:
            pass  # a read-only data dir costs a second per start, nothing more
    return brand


@functools.lru_cache(maxsize=1)
def _cpuinfo_brand() -> str:
    # py-cpuinfo takes about a second: it starts another Python to look.
    try:
        import cpuinfo
        return cpuinfo.get_cpu_info().get("brand_raw") or platform.processor() or "unknown CPU"
    except Exception:
        return platform.processor() or "unknown CPU"


def _disk_free_mb(data_dir: str | os.PathLike | None) -> int | None:
    if not data_dir:
        return None
    path = Path(data_dir)
    while not path.exists() and path != path.parent:  # not created yet: ask its drive
        path = path.parent
    try:
        return shutil.disk_usage(path).free // 2**20
    except OSError:
        return None


def renderers(blender_path: str | None = None) -> dict[str, dict[str, Any]]:
    """The renderers this worker can run, with versions; absent ones are left out."""
    found: dict[str, dict[str, Any]] = {}
    blender = find_blender(blender_path)
    if blender is not None:
        version = blender_version(blender)  # cached per executable and modification time
        if version:
            found["blender"] = {"path": str(blender), "version": version}
    if version := realesrgan_version():
        found["realesrgan"] = {"version": version}
    return found
