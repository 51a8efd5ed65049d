"""Verification task runner: re-renders small crops of a frame another worker delivered (Cycles
border renders with the same scene, seed and settings), or upscales again one tile of an image,
so the portal can compare them with the delivered result. This worker never sees that result."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

from . import sandbox
from .base import (InvalidParams, Progress, RunFailed, Runner, RunResult, check_params, input_file,
                   input_path, int_in, one_of)
from .blender import DEFAULTS as RENDER_DEFAULTS
from .blender import DEVICES, FORMATS, SCHEMA as RENDER_SCHEMA, BlenderRunner, build_argv
from .metadata import strip_path_metadata
from .benchmark import SCHEMA as BENCHMARK_SCHEMA
from .benchmark import bench_scene, check_benchmark
from .. import bench
from .realesrgan import DEFAULTS as UPSCALE_DEFAULTS
from .realesrgan import SCHEMA as UPSCALE_SCHEMA, RealesrganRunner

MAX_CROPS = 8
BORDER_KEYS = ("min_x", "max_x", "min_y", "max_y")
TILE_NAME = "tile.png"

# Cycles seeds each pixel from its position in the whole frame, so a border render gives the
# very samples the full render gave there. EEVEE's screen-space effects see neighbouring pixels
# and Workbench's anti-aliasing differs at a region's edge: neither re-renders a crop faithfully.
ENGINES = ("CYCLES",)


def border_list(key: str, value: Any) -> list[dict[str, float]]:
    """1..MAX_CROPS render regions, each {min_x, max_x, min_y, max_y} in 0..1 with min < max
    (Blender's border coordinates: y runs from the bottom)."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CROPS:
        raise InvalidParams(f"{key} must be a list of 1 to {MAX_CROPS} crop regions")
    crops = []
    for crop in value:
        if not isinstance(crop, dict) or set(crop) != set(BORDER_KEYS):
            raise InvalidParams(f"each of {key} must have exactly {', '.join(BORDER_KEYS)}")
        clean = {}
        for name in BORDER_KEYS:
            number = crop[name]
            # bool is an int in Python; JSON may send 0 or 1 as integers
            if type(number) not in (int, float) or not math.isfinite(number) or not 0 <= number <= 1:
                raise InvalidParams(f"{key}: {name} must be a number from 0 to 1")
            clean[name] = float(number)
        if not (clean["min_x"] < clean["max_x"] and clean["min_y"] < clean["max_y"]):
            raise InvalidParams(f"{key}: each region's min must be below its max")
        crops.append(clean)
    return crops


RENDER_VERIFY_SCHEMA = {
    "kind": one_of("render"),
    "blend": input_file,  # a project's .blend sits at its relative path
    "frame": int_in(0, 1_000_000),
    "engine": one_of(*ENGINES),
    "samples": RENDER_SCHEMA["samples"],
    "resolution_percent": RENDER_SCHEMA["resolution_percent"],
    "format": one_of(*FORMATS),  # the delivered frame's format; it decides the crops' format
    "device": one_of(*DEVICES),
    "crops": border_list,
}
# Crops of a Bench Score run: the same scene (built by tray_client/bench.py) and seed as the run.
BENCHMARK_VERIFY_SCHEMA = {"kind": one_of("benchmark"), **BENCHMARK_SCHEMA, "crops": border_list}
UPSCALE_VERIFY_SCHEMA = {"kind": one_of("upscale"), **UPSCALE_SCHEMA}

# Added per crop after the job's own settings expression; filled only with validated floats.
_BORDER_EXPR = """\
import bpy
render = bpy.context.scene.render
render.use_border = True
render.use_crop_to_border = True
render.border_min_x = {min_x!r}
render.border_max_x = {max_x!r}
render.border_min_y = {min_y!r}
render.border_max_y = {max_y!r}
"""
# 8 bits like the delivered PNG or JPEG, and lossless, so the crop adds no error of its own.
_PNG_EXPR = "render.image_settings.color_depth = '8'\n"


def crop_format(job_format: str) -> str:
    """The crops' format: an EXR job's crops stay EXR (float pixels compare with float pixels,
    no 8-bit rounding on one side only); a PNG or JPEG job's are 8-bit PNG."""
    return "OPEN_EXR" if job_format == "OPEN_EXR" else "PNG"


def crop_name(index: int, job_format: str) -> str:
    return f"crop_{index:02d}.{FORMATS[crop_format(job_format)]}"


def border_expression(border: Mapping[str, float], fmt: str) -> str:
    expr = _BORDER_EXPR.format(**{k: float(border[k]) for k in BORDER_KEYS})
    return expr + (_PNG_EXPR if fmt == "PNG" else "")


def build_crops_argv(blender: Path | str, blend: Path | str, workdir: Path,
                     params: Mapping[str, Any], gpu_backend: str | None = None) -> list[str]:
    """One Blender run that loads the scene once and renders every crop of the frame in turn:
    Blender handles its arguments in order, so each region and output name applies to the
    `-f` after it."""
    fmt = crop_format(params["format"])
    render_params = {"frames": [params["frame"]], "engine": params["engine"],
                     "samples": params["samples"], "resolution_percent": params["resolution_percent"],
                     "format": fmt, "device": params["device"], "seed": params.get("seed")}
    argv = build_argv(blender, blend, workdir, render_params, gpu_backend)
    at = argv.index("-f")
    per_crop: list[str] = []
    for index, border in enumerate(params["crops"]):
        per_crop += ["--python-expr", border_expression(border, fmt),
                     "-o", str(Path(workdir).resolve() / f"crop_{index:02d}_####"),
                     "-f", str(params["frame"])]
    return argv[:at] + per_crop + argv[at + 2:]


class VerifyRunner(Runner):
    job_type = "verify"

    def validate(self, params: Any) -> dict[str, Any]:
        kind = params.get("kind") if isinstance(params, dict) else None
        if kind == "render":
            return check_params(params, RENDER_VERIFY_SCHEMA, RENDER_DEFAULTS)
        if kind == "upscale":
            return check_params(params, UPSCALE_VERIFY_SCHEMA, UPSCALE_DEFAULTS)
        if kind == "benchmark":
            return check_benchmark(check_params(params, BENCHMARK_VERIFY_SCHEMA))
        raise InvalidParams("kind must be render, upscale or benchmark")

    def run(self, params: Any, inputs: Mapping[str, Path], workdir: Path,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        params = self.validate(params)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in [*workdir.glob("crop_*"), workdir / TILE_NAME]:  # an earlier try's
            stale.unlink(missing_ok=True)
        if params["kind"] == "upscale":
            return self._upscale(params, inputs, workdir, on_progress, should_stop)
        if params["kind"] == "benchmark":
            scene = bench_scene(BlenderRunner(self.settings), Path(workdir).parent)
            run = bench.render_params(seed=params["seed"])  # the run's frame on any device: pixels, not speed
            [frame] = run.pop("frames")
            render = dict(run, kind="render", frame=frame, crops=params["crops"])
            return self._render_crops(render, {run["blend"]: scene}, workdir, on_progress, should_stop)
        return self._render_crops(params, inputs, workdir, on_progress, should_stop)

    def _render_crops(self, params, inputs, workdir, on_progress, should_stop) -> RunResult:
        input_path(inputs, params["blend"])
        blend = sandbox.stage_inputs(inputs, workdir)[params["blend"]]
        renderer = BlenderRunner(self.settings)
        blender, gpu_backend = renderer.blender_for(params)
        argv = build_crops_argv(blender, blend, workdir, params, gpu_backend)
        crops = params["crops"]
        tail, seconds = renderer.run_blender(argv, params, [params["frame"]] * len(crops), workdir,
                                             on_progress, should_stop)
        ext = FORMATS[crop_format(params["format"])]
        outputs = []
        for index in range(len(crops)):
            written = workdir / f"crop_{index:02d}_{params['frame']:04d}.{ext}"
            if not written.is_file():
                raise RunFailed("output_missing", f"Blender finished but wrote no image for crop "
                                                  f"{index}", tail)
            strip_path_metadata(written)  # as the delivered frame was: the pixels are untouched
            outputs.append(written.replace(workdir / crop_name(index, params["format"])))
        return RunResult(outputs=outputs, log_tail=tail, compute_seconds=seconds)

    def _upscale(self, params, inputs, workdir, on_progress, should_stop) -> RunResult:
        upscale_params = {k: v for k, v in params.items() if k != "kind"}
        result = RealesrganRunner(self.settings).run(upscale_params, inputs, workdir, on_progress,
                                                     should_stop)
        tile = result.outputs[0].replace(workdir / TILE_NAME)
        return RunResult(outputs=[tile], log_tail=result.log_tail,
                         compute_seconds=result.compute_seconds)
