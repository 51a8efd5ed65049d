"""Bench Score run runner: the portal's timed benchmark — the fixed reference scene, built by Blender
itself (tray_client/bench.py), rendered with the Cycles seed the portal drew for this run, on the
device `pictor-worker bench` uses, inside the same sandbox as every render."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .. import bench  # attributes read at call time: bench imports this package too
from .base import InvalidParams, Progress, RunFailed, Runner, RunResult, check_params, int_in
from .blender import BlenderRunner

SCHEMA = {"seed": int_in(1, 2**31 - 1), "scene_version": int_in(1, 1_000_000)}
SCENE_FOLDER = "bench-scene"  # beside the task folders, which the engine deletes after each task


def check_benchmark(params: dict[str, Any]) -> dict[str, Any]:
    if params["scene_version"] != bench.SCENE_VERSION:
        raise InvalidParams(f"the portal asks for benchmark scene v{params['scene_version']}; this app has "
                            f"v{bench.SCENE_VERSION}: update the Worker App")
    return params


def bench_scene(renderer: BlenderRunner, workdir: Path) -> Path:
    """The benchmark .blend, built once per scene version beside the task folders and reused (the
    renders hard-link it into their own task folder: bwrap shows them nothing else)."""
    blender, _ = renderer.blender_for(bench.PARAMS)
    try:
        return bench.cached_scene(blender, Path(workdir).parent / SCENE_FOLDER)
    except bench.BenchmarkError as exc:  # this worker's Blender is at fault: another may succeed
        raise RunFailed("render_error", str(exc)[:300], retryable=True) from None


class BenchmarkRunner(Runner):
    job_type = "benchmark"

    def validate(self, params: Any) -> dict[str, Any]:
        return check_benchmark(check_params(params, SCHEMA))

    def run(self, params: Any, inputs: Mapping[str, Path], workdir: Path,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        params = self.validate(params)
        renderer = BlenderRunner(self.settings)
        scene = bench_scene(renderer, Path(workdir))
        render = bench.render_params(self.settings.gpu_backend, seed=params["seed"])
        return renderer.run(render, {bench.PARAMS["blend"]: scene}, workdir, on_progress, should_stop)
