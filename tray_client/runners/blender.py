"""Render task runner: renders a chunk of frames of a .blend with a locked-down Blender and reports
progress parsed from its output."""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import sandbox
from .base import (Progress, RunFailed, Runner, RunResult, check_params, input_file,
                   input_path, int_in, int_list, minimal_env, one_of, run_process)
from .metadata import strip_path_metadata

ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")
FORMATS = {"PNG": "png", "JPEG": "jpg", "OPEN_EXR": "exr"}  # Blender's name -> file extension
DEVICES = ("any", "gpu")
GPU_BACKENDS = ("CUDA", "OPTIX", "HIP", "ONEAPI", "METAL")

SCHEMA = {
    "blend": input_file,  # a project's .blend sits at its relative path
    "frames": int_list(0, 1_000_000, 1, 1000),
    "engine": one_of(*ENGINES),
    "samples": int_in(1, 65536),
    "resolution_percent": int_in(1, 100),
    "format": one_of(*FORMATS),
    "device": one_of(*DEVICES),
    # Cycles' seed; a Bench Score run draws one per run so its result can't be reused. None: the scene's own.
    "seed": lambda key, value: None if value is None else int_in(0, 2**31 - 1)(key, value),
}
DEFAULTS = {"device": "any", "seed": None}

# Exit code Blender uses when our expression raises (e.g. no GPU): it then renders nothing.
EXPR_EXIT_CODE = 3

# Runs inside Blender right after the .blend is loaded, before anything else of ours and before any
# render: every external path the scene uses must resolve inside the task folder, or the task is
# refused (sandbox.py says why two layers). Filled only with repr() of our own task folder path.
# A path is reported as the scene wrote it, never resolved: the creator learns nothing of ours.
_SCENE_CHECK_EXPR = """\
import bpy, json, os
ROOT = os.path.realpath({root!r})
BLEND_DIR = os.path.dirname(os.path.realpath(bpy.data.filepath))
unsafe = []
checked = set()

def inside(path):
    try:
        return os.path.commonpath([ROOT, path]) == ROOT
    except ValueError:
        return False

def check(what, raw, library=None):
    if not raw or not isinstance(raw, str):
        return
    try:
        full = bpy.path.abspath(raw, library=library)
    except Exception:
        full = raw
    real = os.path.realpath(os.path.normpath(full))
    checked.add(real)
    if not inside(real):
        unsafe.append((what, raw))

def check_cache(what, cache, library):
    for pc in getattr(cache, 'point_caches', None) or ([cache] if cache else []):
        if getattr(pc, 'use_external', False):
            check(what, pc.filepath, library)

for lib in bpy.data.libraries:
    check('linked library %r' % lib.name, lib.filepath, lib.parent)
for kind, items in (('image', bpy.data.images), ('movie clip', bpy.data.movieclips),
                    ('sound', bpy.data.sounds), ('font', bpy.data.fonts),
                    ('volume', bpy.data.volumes), ('cache file', bpy.data.cache_files)):
    for item in items:
        if getattr(item, 'packed_file', None) is not None or getattr(item, 'packed_files', None):
            continue
        if kind == 'image' and item.source not in ('FILE', 'SEQUENCE', 'MOVIE', 'TILED'):
            continue
        if kind == 'font' and item.filepath == '<builtin>':
            continue
        check('%s %r' % (kind, item.name), item.filepath, item.library)
for ob in bpy.data.objects:
    lib = ob.library
    for m in ob.modifiers:
        label = 'object %r modifier %r' % (ob.name, m.name)
        if m.type == 'FLUID' and m.fluid_type == 'DOMAIN' and m.domain_settings:
            check('fluid cache of ' + label, m.domain_settings.cache_directory, lib)
        if m.type == 'OCEAN':
            check('ocean cache of ' + label, m.filepath, lib)
        if m.type == 'DYNAMIC_PAINT' and m.canvas_settings:
            for surface in m.canvas_settings.canvas_surfaces:
                if surface.surface_format == 'IMAGE':
                    check('dynamic paint output of ' + label, surface.image_output_path, lib)
                check_cache('dynamic paint cache of ' + label, surface.point_cache, lib)
        check_cache('point cache of ' + label, getattr(m, 'point_cache', None), lib)
        check('bake folder of ' + label, getattr(m, 'bake_directory', ''), lib)
    for ps in ob.particle_systems:
        check_cache('particle cache of object %r' % ob.name, ps.point_cache, lib)
for sc in bpy.data.scenes:
    rbw = sc.rigidbody_world
    if rbw is not None:
        check_cache('rigid body cache of scene %r' % sc.name, rbw.point_cache, sc.library)
    if sc.sequence_editor:
        for strip in sc.sequence_editor.sequences_all:
            check('sequencer strip %r' % strip.name, getattr(strip, 'directory', '') or
                  getattr(strip, 'filepath', ''), sc.library)
check('output path', bpy.context.scene.render.filepath)
# Anything else Blender itself knows to be external (a kind this list lacks); text blocks are
# never run or rendered, brushes never render.
ignored = {{os.path.realpath(bpy.path.abspath(t.filepath, library=t.library))
           for t in bpy.data.texts if t.filepath}}
ignored |= {{os.path.realpath(bpy.path.abspath(b.icon_filepath)) for b in bpy.data.brushes
            if getattr(b, 'icon_filepath', '')}}
for path in bpy.utils.blend_paths(absolute=True, packed=True, local=False):
    real = os.path.realpath(os.path.normpath(path))
    if real not in checked and real not in ignored and not inside(real):
        try:
            shown = '//' + os.path.relpath(real, BLEND_DIR)
        except ValueError:
            shown = path
        unsafe.append(('external file', shown))
for what, raw in unsafe:
    print('PICTOR_UNSAFE_PATH ' + json.dumps({{'what': what, 'path': raw}}), flush=True)
if unsafe:
    raise RuntimeError('PICTOR_UNSAFE_SCENE: %d path(s) outside the task folder' % len(unsafe))
print('PICTOR_SCENE_CHECKED %d' % len(checked), flush=True)
"""

# Runs inside Blender after the .blend is loaded. Filled only with validated ints and enum names,
# never with text from the task, so a task cannot inject code here.
_SETTINGS_EXPR = """\
import bpy
scene = bpy.context.scene
render = scene.render
# Metadata a frame carries (and a burnt-in stamp shows) must not name the provider's folders or host.
for flag in ('use_stamp_filename', 'use_stamp_hostname', 'use_stamp_memory'):
    if hasattr(render, flag):
        setattr(render, flag, False)
render.resolution_percentage = {resolution_percent}
render.use_file_extension = True
render.use_overwrite = True
render.use_placeholder = False
render.use_multiview = False  # stereo would write two files per frame
scene.cycles.samples = {samples}
scene.eevee.taa_render_samples = {samples}
# Denoising is on by default, and a build without OpenImageDenoise aborts the render because of it.
try:
    import _cycles
    with_oidn = _cycles.with_openimagedenoise
except Exception:
    with_oidn = False
if not with_oidn:
    scene.cycles.use_denoising = False
# Compositor File Output nodes write wherever the file says; only -o decides where frames go.
if scene.node_tree:
    for node in scene.node_tree.nodes:
        if node.type == 'OUTPUT_FILE':
            node.mute = True
"""

# Added when the task names a seed (a portal benchmark varies it so no earlier frame can pass).
_SEED_EXPR = "scene.cycles.seed = {seed}\n"

# Added for device=gpu with Cycles: pick the GPUs, and refuse to run at all when there are none,
# because Blender would otherwise quietly render on the CPU.
_GPU_EXPR = """\
prefs = bpy.context.preferences.addons['cycles'].preferences
try:
    prefs.compute_device_type = '{backend}'
except TypeError:
    pass  # this Blender build lacks the backend: no devices below
prefs.refresh_devices()
gpus = [d for d in prefs.devices if d.type == '{backend}']
for device in prefs.devices:
    device.use = device.type == '{backend}'
scene.cycles.device = 'GPU'
print('PICTOR_DEVICES backend={backend} gpus=%d' % len(gpus), flush=True)
if not gpus:
    raise RuntimeError('PICTOR_NO_GPU: no {backend} device')
"""


def scene_check_expression(task_dir: Path | str) -> str:
    return _SCENE_CHECK_EXPR.format(root=os.path.realpath(task_dir))


def settings_expression(params: Mapping[str, Any], gpu_backend: str | None) -> str:
    expr = _SETTINGS_EXPR.format(resolution_percent=int(params["resolution_percent"]),
                                 samples=int(params["samples"]))
    if params.get("seed") is not None:
        expr += _SEED_EXPR.format(seed=int(params["seed"]))
    if params["device"] == "gpu" and params["engine"] == "CYCLES":
        expr += _GPU_EXPR.format(backend=_backend(gpu_backend))
    return expr


def _backend(gpu_backend: str | None) -> str:
    backend = gpu_backend or "CUDA"  # the most common GPU; Blender says so when there is none
    if backend not in GPU_BACKENDS:  # a typo in Settings; never pasted into the expression
        raise RunFailed("no_device", f"Unknown GPU backend {backend!r} in Settings: use one of "
                                     f"{', '.join(GPU_BACKENDS)}")
    return backend


def cycles_device(device: str, gpu_backend: str | None) -> str:
    """Blender's --cycles-device value: only the GPU for "gpu"; GPU plus CPU fallback for "any"."""
    if device == "gpu":
        return _backend(gpu_backend)
    return f"{_backend(gpu_backend)}+CPU" if gpu_backend else "CPU"


def frames_arg(frames: Sequence[int]) -> str:
    """Blender's -f list, with runs written as ranges to keep the command line short: 1..4,7"""
    parts, run = [], [frames[0]]
    for frame in frames[1:]:
        if frame == run[-1] + 1:
            run.append(frame)
        else:
            parts.append(run)
            run = [frame]
    parts.append(run)
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in parts)


def output_path(workdir: Path, frame: int, fmt: str) -> Path:
    # Blender pads "####" to four digits and writes longer numbers in full, as does :04d.
    return Path(workdir) / f"frame_{frame:04d}.{FORMATS[fmt]}"


def build_argv(blender: Path | str, blend: Path | str, workdir: Path, params: Mapping[str, Any],
               gpu_backend: str | None = None) -> list[str]:
    """The whole Blender command line, as a list: no shell ever sees it."""
    return [
        str(blender), "-b", "--factory-startup", "--disable-autoexec", "-noaudio",
        os.path.abspath(blend),  # absolute, so a name can never read as an option
        "-E", params["engine"],
        "-o", os.path.join(os.path.abspath(workdir), "frame_####"),
        "-F", params["format"],
        "--python-exit-code", str(EXPR_EXIT_CODE),
        "--python-expr", scene_check_expression(workdir),  # first: nothing runs before the check
        "--python-expr", settings_expression(params, gpu_backend),
        "-f", frames_arg(params["frames"]),
        "--", "--cycles-device", cycles_device(params["device"], gpu_backend),
    ]


def blender_env(workdir: Path, device_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment where no user add-on, startup script or Python path reaches Blender; device_env
    pins it to its slot's GPU (RunnerSettings.device_env)."""
    dirs = {name: Path(workdir) / ".blender" / name for name in ("config", "scripts", "tmp")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    tmp = str(dirs["tmp"])  # Blender's temp and crash files stay with the task
    return minimal_env(PYTHONPATH="", BLENDER_USER_CONFIG=str(dirs["config"]),
                       BLENDER_USER_SCRIPTS=str(dirs["scripts"]), TMPDIR=tmp, TEMP=tmp, TMP=tmp,
                       **(device_env or {}))


# --- finding Blender --------------------------------------------------------------------------

def _candidates() -> list[str]:
    if sys.platform == "win32":
        patterns = [os.path.expandvars(r"%ProgramFiles%\Blender Foundation\Blender*\blender.exe"),
                    "C:/Program Files/Blender Foundation/Blender */blender.exe",
                    "C:/Program Files (x86)/Steam/steamapps/common/Blender/blender.exe"]
    elif sys.platform == "darwin":
        patterns = ["/Applications/Blender*.app/Contents/MacOS/Blender"]
    else:
        patterns = ["/usr/bin/blender", "/usr/local/bin/blender", "/snap/bin/blender",
                    "/opt/blender*/blender", os.path.expanduser("~/blender*/blender")]
    found = []
    for pattern in patterns:
        # Newest version first: "Blender 4.1" sorts after "Blender 3.6" once numbers are compared.
        found += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    return found


def _version_key(path: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", path)]


def find_blender(override: str | os.PathLike | None = None) -> Path | None:
    """The Blender to use: the configured one if set (and only it), else one on PATH or installed
    in the usual places."""
    if override:
        path = Path(override)
        if path.is_dir():
            path = path / ("blender.exe" if sys.platform == "win32" else "blender")
        return path if path.is_file() else None
    for candidate in [shutil.which("blender"), *_candidates()]:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def blender_version(path: str | os.PathLike) -> str | None:
    """"3.4.1" from `blender --version`, or None when it does not run."""
    try:
        return _blender_version(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _blender_version(path: str, _mtime: int) -> str | None:  # the mtime key notices an upgrade
    try:
        out = subprocess.run([path, "--factory-startup", "--version"], capture_output=True, text=True,
                             errors="replace", timeout=30, env=minimal_env(PYTHONPATH="")).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^Blender (\d+\.\d+(?:\.\d+)?)", out, re.MULTILINE)
    return match.group(1) if match else None


# --- progress -----------------------------------------------------------------------------------

_NOISE = re.compile(r"\| (Updating|Synchronizing|Syncing|Loading|Waiting|Initializing)")
_FRA = re.compile(r"^Fra:(\d+) ")
_TIME = re.compile(r"\| Time:([\d:.]+)")
_REMAINING = re.compile(r"\| Remaining:([\d:.]+)")
_TILES = re.compile(r"Rendered (\d+)/(\d+) Tiles")
_SAMPLE = re.compile(r"Sample (\d+)/(\d+)")
_EEVEE = re.compile(r"Rendering (\d+) / (\d+) samples")
_SAVED = re.compile(r"^Saved: '(.*)'")
_FRAME_TIME = re.compile(r"^\s*Time: ([\d:.]+) \(Saving")


def _seconds(clock: str) -> float:
    """'01:02.50' or '1:01:02.50' -> seconds."""
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


class BlenderProgress:
    """Turns Blender's output lines into progress over a chunk of frames. Pure: no clock, no I/O."""

    def __init__(self, frames: Sequence[int]):
        self.total = len(frames)
        self.done = 0  # frames saved
        self.frame: int | None = None  # frame being rendered
        self.frame_fraction = 0.0
        self.elapsed: float | None = None  # Blender's clock for the current frame
        self.remaining: float | None = None  # Blender's estimate for the current frame
        self.frame_seconds: list[float] = []
        self.saved: list[str] = []
        self.detail = ""

    def feed(self, line: str) -> bool:
        """Consume one line; True when the progress changed."""
        if _NOISE.search(line):
            return False
        if saved := _SAVED.match(line):
            self.saved.append(saved.group(1))
            self.done = min(self.total, self.done + 1)
            self.frame, self.frame_fraction, self.remaining = None, 0.0, None
            return True
        if took := _FRAME_TIME.match(line):
            self.frame_seconds.append(_seconds(took.group(1)))
            return True
        fra = _FRA.match(line)
        if not fra:
            return False
        number = int(fra.group(1))
        if number != self.frame:
            self.frame, self.frame_fraction, self.remaining, self.elapsed = number, 0.0, None, None
            self.detail = ""
        if clock := _TIME.search(line):
            self.elapsed = _seconds(clock.group(1))
        if remaining := _REMAINING.search(line):
            self.remaining = _seconds(remaining.group(1))
        fraction = self._frame_fraction(line)
        if fraction is None:
            return False
        # Cycles restarts the sample count for each tile and view layer: never let the bar go back.
        self.frame_fraction = max(self.frame_fraction, min(1.0, fraction))
        self.detail = line.rsplit("|", 1)[-1].strip()
        return True

    @staticmethod
    def _frame_fraction(line: str) -> float | None:
        sample = _SAMPLE.search(line) or _EEVEE.search(line)
        within = int(sample.group(1)) / max(1, int(sample.group(2))) if sample else None
        if tiles := _TILES.search(line):
            done, count = int(tiles.group(1)), max(1, int(tiles.group(2)))
            # "Rendered 1/9 Tiles, Sample 16/16" still describes tile 1, which is complete
            return (done + (within if within is not None and within < 1 else 0)) / count
        return within

    @property
    def progress(self) -> Progress:
        # A frame counts in full only once saved: writing a big EXR can take a while.
        in_frame = min(self.frame_fraction, 0.99) if self.frame is not None else 0.0
        fraction = min(1.0, (self.done + in_frame) / max(1, self.total))
        if self.done >= self.total:
            message = f"Rendered {self.total} of {self.total} frames"
        elif self.frame is not None:
            message = f"Frame {self.frame} ({self.done + 1} of {self.total})"
            message += f": {self.detail}" if self.detail else ""
        else:
            message = f"Rendered {self.done} of {self.total} frames"
        return Progress(fraction=fraction, eta_s=self._eta(), message=message)

    def _eta(self) -> float | None:
        if self.done >= self.total:
            return 0.0
        left_in_frame = self.remaining
        if left_in_frame is None and self.elapsed and self.frame_fraction > 0:
            left_in_frame = self.elapsed * (1 - self.frame_fraction) / self.frame_fraction
        if self.frame_seconds:
            per_frame = sum(self.frame_seconds) / len(self.frame_seconds)
        elif left_in_frame is not None and self.elapsed is not None:
            per_frame = self.elapsed + left_in_frame
        else:
            return None
        if self.frame is None:
            return per_frame * (self.total - self.done)
        if left_in_frame is None:
            left_in_frame = per_frame * (1 - self.frame_fraction)
        return left_in_frame + per_frame * (self.total - self.done - 1)


# --- failures -----------------------------------------------------------------------------------

GPU_MARKER = re.compile(r"^PICTOR_DEVICES backend=\w+ gpus=(\d+)")
UNSAFE_MARKER = "PICTOR_UNSAFE_PATH "
_ERROR_LINE = re.compile(r"^(?:Error: )(.+)$", re.MULTILINE)
_DENOISER = re.compile(r"build without openimagedenois|denois\w* (?:error|failed|is not supported)|"
                       r"error.*denois", re.IGNORECASE)
_MEMORY = ("out of memory", "out of gpu memory", "bad_alloc", "memoryerror", "failed to allocate")


def classify_failure(returncode: int, log: str, gpu_required: bool = False,
                     gpus_found: int | None = None) -> RunFailed | None:
    """Why a Blender run failed, from its exit code and output; None when nothing says it did.

    gpus_found is what our expression printed (PICTOR_DEVICES); for a GPU job, none or no line at
    all means Blender would have rendered on the CPU."""
    low = log.lower()
    if "found no cycles device" in low or (gpu_required and not gpus_found):
        return RunFailed("no_device", "This job needs a GPU and Blender found none it can use on this "
                                      "worker: update the GPU driver, or turn off GPU jobs", log)
    if "cannot read file" in low or "no such file" in low:
        return RunFailed("missing_file", "Blender could not open the .blend file", log)
    if "file format is not supported" in low or "failed to read blend file" in low:
        return RunFailed("bad_input", "The .blend file is damaged or was saved by a newer Blender "
                                      "than this worker has", log)
    if returncode == -9 or any(s in low for s in _MEMORY):  # -9: most often the kernel's OOM killer
        return RunFailed("out_of_memory", "The scene needs more memory than this worker has free", log)
    if _DENOISER.search(log):
        return RunFailed("denoiser", "The scene's denoiser is not available in this worker's Blender", log)
    if returncode < 0 or "segmentation fault" in low or ".crash.txt" in low \
            or returncode in (0xC0000005, -1073741819):  # Windows access violation
        return RunFailed("crash", f"Blender crashed (exit code {returncode})", log)
    if returncode != 0:
        errors = _ERROR_LINE.findall(log)
        detail = errors[-1].strip() if errors else f"Blender exited with code {returncode}"
        return RunFailed("render_error", f"Blender could not render the scene: {detail}"[:300], log)
    return None


def unsafe_scene(found: Sequence[Mapping[str, Any]], tail: str) -> RunFailed:
    """The scene check's refusal, naming the paths as the scene wrote them."""
    from ..untrusted import printable
    named = [f"{printable(f.get('what', 'file'), 80)} at {printable(f.get('path', '?'), 200)!r}"
             for f in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return RunFailed("unsafe_scene", (f"The scene uses files outside its task folder, which this worker "
                                      f"does not allow: {'; '.join(named) or 'see the log'}{more}. Pack "
                                      f"them into the .blend (File > External Data > Pack Resources) and "
                                      f"keep caches relative (//)")[:500], tail)


# --- the runner ---------------------------------------------------------------------------------

class BlenderRunner(Runner):
    job_type = "render"

    def validate(self, params: Any) -> dict[str, Any]:
        return check_params(params, SCHEMA, DEFAULTS)

    def run(self, params: Any, inputs: Mapping[str, Path], workdir: Path,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        params = self.validate(params)
        input_path(inputs, params["blend"])
        blender, gpu_backend = self.blender_for(params)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in workdir.glob("frame_*"):  # left by an earlier try: must not pass as output
            stale.unlink()
        blend = sandbox.stage_inputs(inputs, workdir)[params["blend"]]
        argv = build_argv(blender, blend, workdir, params, gpu_backend)
        tail, seconds = self.run_blender(argv, params, params["frames"], workdir, on_progress,
                                         should_stop)
        outputs = [output_path(workdir, frame, params["format"]) for frame in params["frames"]]
        missing = [str(f) for f, path in zip(params["frames"], outputs) if not path.is_file()]
        if missing:
            raise RunFailed("output_missing", f"Blender finished but wrote no image for frame(s) "
                                              f"{', '.join(missing[:10])}", tail)
        for path in outputs:
            strip_path_metadata(path)
        return RunResult(outputs=outputs, log_tail=tail, compute_seconds=seconds)

    def blender_for(self, params: Mapping[str, Any]) -> tuple[Path, str | None]:
        """The Blender to run and the GPU backend to ask it for, or RunFailed saying why not."""
        blender = find_blender(self.settings.blender_path)
        if blender is None:
            where = f" at {self.settings.blender_path}" if self.settings.blender_path else ""
            raise RunFailed("renderer_missing", f"Blender not found{where}: install Blender or set "
                                                "blender_path in Settings")
        gpu_backend = self.settings.gpu_backend
        if params["device"] == "gpu" and params["engine"] != "CYCLES" and not gpu_backend:
            # EEVEE and Workbench would fall back to software OpenGL without a word.
            raise RunFailed("no_device", "This job needs a GPU and this worker has none")
        return blender, gpu_backend

    def run_blender(self, argv: list[str], params: Mapping[str, Any], renders: Sequence[int],
                    workdir: Path, on_progress: Callable[[Progress], None] | None,
                    should_stop: Callable[[], bool] | None) -> tuple[str, float]:
        """Run argv, which saves one image per item of `renders`, reporting progress; returns
        (log tail, seconds) or raises RunFailed."""
        tracker = BlenderProgress(renders)
        gpus_found = None  # from our expression's marker, which scrolls out of the log tail
        unsafe: list[dict[str, str]] = []  # from the scene check

        def on_line(line: str) -> None:
            nonlocal gpus_found
            if marker := GPU_MARKER.match(line):
                gpus_found = int(marker.group(1))
            elif line.startswith(UNSAFE_MARKER):
                with contextlib.suppress(ValueError):
                    found = json.loads(line[len(UNSAFE_MARKER):])
                    if isinstance(found, dict):
                        unsafe.append(found)
            elif tracker.feed(line) and on_progress is not None:
                on_progress(tracker.progress)

        blender = os.path.realpath(argv[0])
        # The install's own folder (Blender's python and data beside the binary) when it is not
        # under /usr; a GPU job also needs the GPU's device files.
        argv = sandbox.wrap(argv, workdir, read_only=[os.path.dirname(blender)],
                            gpu=params.get("device") == "gpu" or bool(self.settings.gpu_backend))
        started = time.monotonic()
        returncode, tail, stopped = run_process(argv, env=blender_env(workdir, self.settings.device_env()), cwd=workdir,
                                                on_line=on_line, should_stop=should_stop)
        seconds = time.monotonic() - started
        if stopped:
            raise RunFailed("canceled", "The render was stopped before it finished", tail)
        if unsafe or "PICTOR_UNSAFE_SCENE" in tail:
            raise unsafe_scene(unsafe, tail)
        gpu_required = params["device"] == "gpu" and params["engine"] == "CYCLES"
        failure = classify_failure(returncode, tail, gpu_required, gpus_found)
        if failure:
            raise failure
        return tail, seconds
