"""Bench Score run runner: the portal's timed benchmark — the fixed reference scene, built by Blender
itself (tray_client/bench.py), rendered with the Cycles seed the portal drew for this run, on the
device `pictor-worker bench` uses, inside the same sandbox as every render."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .. import bench  # attributes read at call time: bench imports this package too
from .base import InvalidParams, Progress, RunFailed, Runner, RunnerSettings, RunResult, check_params, int_in
from .blender import BlenderRunner

SCHEMA = {"seed": int_in(1, 2**31 - 1), "scene_version": int_in(1, 1_000_000)}
SCENE_FOLDER = "bench-scene"  # beside the task folders, which the engine deletes after each task


def check_benchmark(params: dict[str, Any]) -> dict[str, Any]:
    if params["scene_version"] != bench.SCENE_VERSION:
        raise InvalidParams(f"the portal asks for benchmark scene v{params['scene_version']}; this app has "
                            f"v{bench.SCENE_VERSION}: update the Worker App")
    return params


def bench_scene(renderer: BlenderRunner, work_dir: Path) -> Path:
    """The benchmark .blend, built once per scene version in `work_dir` (beside the task folders) and
    reused (the renders hard-link it into their own task folder: bwrap shows them nothing else)."""
    blender, _ = renderer.blender_for(bench.PARAMS)
    try:
        return bench.cached_scene(blender, Path(work_dir) / SCENE_FOLDER)
    except bench.BenchmarkError as exc:  # this worker's Blender is at fault: another may succeed
        raise RunFailed("render_error", str(exc)[:300], retryable=True) from None


def prepare(settings: RunnerSettings, work_dir: Path) -> bool:
    """Build the scene before the app asks for work. The portal times a run from claim to complete,
    so a scene built inside that window (about 1.5 s on the reference box, a fixed cost that doesn't
    scale with speed) would score a new worker some 25% under what `pictor-worker bench` says.
    False when it can't be built now (the run itself then tries again and says why)."""
    try:
        bench_scene(BlenderRunner(settings), work_dir)
        return True
    except RunFailed:
        return False


class BenchmarkRunner(Runner):
    job_type = "benchmark"

    def validate(self, params: Any) -> dict[str, Any]:
        return check_benchmark(check_params(params, SCHEMA))

    def run(self, params: Any, inputs: Mapping[str, Path], workdir: Path,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        params = self.validate(params)
        renderer = BlenderRunner(self.settings)
        scene = bench_scene(renderer, Path(workdir).parent)
        render = bench.render_params(self.settings.gpu_backend, seed=params["seed"])
        return renderer.run(render, {bench.PARAMS["blend"]: scene}, workdir, on_progress, should_stop)
