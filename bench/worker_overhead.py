"""What the Worker App costs on top of Blender: the same frame rendered by a bare `blender -b scene -f 1`
and through the engine (claim -> download -> runner -> progress -> upload -> complete against a real
portal), a few times in alternating order. Prints wall and CPU seconds per run and the overhead in %.

The runner starts Blender at low priority (nice 10), so the bare command runs at the same niceness
(--bare-nice 0 for a plain start): on a busy machine the wall times would otherwise measure the
scheduler, not us. CPU seconds (Blender plus the engine's own work, not the portal's) do not depend
on what else runs.

    .venv/bin/python bench/worker_overhead.py [--samples 176] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tray_client.portal_fixture import Portal  # noqa: E402  (the real portal, as in the tests)
from tray_client import bench as worker_bench, config  # noqa: E402
from tray_client.api import PortalClient  # noqa: E402
from tray_client.engine import Engine  # noqa: E402
from tray_client.runners import blender as blender_runner  # noqa: E402
from tray_client.runners.blender import find_blender  # noqa: E402


def make_scene(blender: Path, folder: Path, samples: int) -> Path:
    """The benchmark scene with `samples` baked in, so the bare command renders the same work."""
    scene = worker_bench.make_scene(blender, folder / "base.blend")
    out = folder / "frame.blend"
    expr = (f"import bpy; s = bpy.context.scene; s.cycles.samples = {samples}; "
            f"bpy.ops.wm.save_as_mainfile(filepath={str(out)!r})")
    subprocess.run([str(blender), "-b", "--factory-startup", str(scene), "--python-expr", expr],
                   check=True, capture_output=True)
    return out


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bare(blender: Path, scene: Path, out: Path, niceness: int) -> tuple[float, float]:
    cpu, started = _cpu(resource.RUSAGE_CHILDREN), time.monotonic()
    subprocess.run([str(blender), "-b", str(scene), "-o", str(out / "bare_####"), "-F", "PNG", "-f", "1"],
                   check=True, capture_output=True, preexec_fn=lambda: os.nice(niceness))
    return time.monotonic() - started, _cpu(resource.RUSAGE_CHILDREN) - cpu


def through_engine(portal: Portal, engine: Engine, client: PortalClient, scene: Path,
                   samples: int) -> tuple[float, float]:
    job = portal.submit_render(scene, (1, 1), samples=samples, name="overhead")
    task, _ = client.claim()
    assert task is not None and task["job_id"] == job["id"], "the portal offered no task"
    cpu = _cpu(resource.RUSAGE_CHILDREN) + _cpu(resource.RUSAGE_SELF)
    started = time.monotonic()
    outcome = engine.process(task)
    seconds = time.monotonic() - started
    cpu = _cpu(resource.RUSAGE_CHILDREN) + _cpu(resource.RUSAGE_SELF) - cpu
    assert outcome == "completed", outcome
    assert portal.job(job["id"])["status"] == "completed"
    OUTSIDE.append(seconds - BLENDER_WALL[-1])
    return seconds, cpu


# The engine's own time (cache, progress, upload, complete) is the task's wall time minus the Blender
# process's: unlike the totals, it does not swing with whatever else the machine is running.
BLENDER_WALL: list[float] = []
OUTSIDE: list[float] = []


def _timed_run_process(argv, **kwargs):
    started = time.monotonic()
    try:
        return _run_process(argv, **kwargs)
    finally:
        BLENDER_WALL.append(time.monotonic() - started)


_run_process = blender_runner.run_process
blender_runner.run_process = _timed_run_process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=176, help="Cycles samples (176: ~10 s on 2 cores)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare-nice", type=int, default=10, help="niceness of the bare command (runner: 10)")
    args = parser.parse_args()
    blender = find_blender()
    if blender is None:
        print("Blender not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pictor-overhead-") as tmp:
        tmp = Path(tmp)
        scene = make_scene(blender, tmp, args.samples)
        portal = Portal(tmp / "portal").start()
        try:
            worker = portal.create_worker("overhead")
            cfg = config.load(tmp / "worker.json", tmp / "data")
            config.import_document(portal.api("POST", "/pair", json={"code": worker["pairing_code"]}), cfg)
            cfg.settings.update(auto_benchmark=False, auto_speedtest=False)
            engine = Engine(cfg)
            assert engine.open() is None, engine.snapshot()
            client = PortalClient(cfg.server_url, cfg.token)
            bare(blender, scene, tmp, args.bare_nice)  # warm the file cache for both sides
            times: dict[str, list[tuple[float, float]]] = {"bare": [], "engine": []}
            for i in range(args.repeat):
                order = ("bare", "engine") if i % 2 == 0 else ("engine", "bare")
                for kind in order:
                    wall, cpu = bare(blender, scene, tmp, args.bare_nice) if kind == "bare" else \
                        through_engine(portal, engine, client, scene, args.samples)
                    times[kind].append((wall, cpu))
                    print(f"run {i + 1} {kind:6s} {wall:7.2f} s wall  {cpu:7.2f} s CPU", flush=True)
            engine.close()
        finally:
            portal.close()
    for what, index in (("wall", 0), ("CPU", 1)):
        b = statistics.median(t[index] for t in times["bare"])
        e = statistics.median(t[index] for t in times["engine"])
        print(f"{what:4s} median bare {b:7.2f} s  engine {e:7.2f} s  overhead {e - b:+6.2f} s "
              f"{100 * (e - b) / b:+5.1f} %")
    frame = statistics.median(BLENDER_WALL)
    outside = statistics.median(OUTSIDE)
    print(f"engine work outside Blender (claim excluded): median {outside:.3f} s = {100 * outside / frame:.2f} % "
          f"of the {frame:.2f} s frame (runs: {', '.join(f'{t:.3f}' for t in OUTSIDE)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
