"""Keeps a creator's scene away from the provider's files: every render and upscale runs with only
its task folder in reach.

Two layers, so that neither alone has to be perfect:

1. The scene check (blender.scene_check_expression): before Blender renders anything, a fixed
   expression run inside Blender lists every external path the scene uses (images, movie clips,
   sounds, fonts, linked libraries, volumes, cache files, point/fluid/ocean/dynamic-paint caches,
   sequencer strips, the output path, and whatever else bpy.utils.blend_paths reports) and refuses
   the task, naming the path, when one resolves outside the task folder. Everywhere.
2. On Linux with bubblewrap (`bwrap`) installed and able to create namespaces, the renderer runs in
   a namespace that sees only the task folder (its inputs read-only), the renderer's install
   read-only, a private /tmp and no network. A path the check missed then finds nothing to read
   and nowhere to write; a renderer exploit cannot phone home.

Residual risk on Windows and macOS (no bwrap): only layer 1 holds. Blender runs with the provider's
rights and network; a path the check does not know about (a new kind of cache in a later Blender),
or a bug in Blender's file readers exploited by a crafted file, reads or writes what the provider's
account can. Run the Worker App as a separate standard (non-administrator) user there, so that
account's files are all a scene could reach. Linked libraries are read by Blender when the .blend is
opened, before the check runs: their content never reaches a frame (the task is refused first),
but a malicious library file is parsed unsandboxed on those systems.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .base import RunFailed

LINUX = sys.platform.startswith("linux")
# What a dynamically linked renderer needs from /etc (library lookup, Debian's alternatives links,
# fonts, GPU driver manifests); never passwords, keys or the rest of the machine's configuration.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "fonts", "vulkan", "OpenCL",
        "glvnd", "nvidia", "localtime", "nsswitch.conf", "passwd", "group")
_GPU_DEVICES = ("/dev/dri", "/dev/kfd", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                "/dev/nvidia-modeset", "/dev/nvidia-caps")


@dataclass(frozen=True)
class Protection:
    """What shields the provider's files on this machine, for Security Compliance."""

    sandboxed: bool  # renderers run inside bwrap
    detail: str


def bwrap_path() -> str | None:
    return shutil.which("bwrap") if LINUX else None


def _root_links() -> list[str]:
    """/lib, /bin... as this system has them: symlinks into /usr (merged /usr) or real folders."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _under(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def bwrap_argv(argv: list[str], task_dir: Path, read_only: Iterable[str | os.PathLike] = (),
               gpu: bool = False, bwrap: str | None = None) -> list[str]:
    """argv inside a bwrap namespace: task_dir writable at its own path (so argv's paths hold),
    task_dir/inputs read-only (cached inputs are hard links: a task must not change them),
    read_only folders (the renderer's install) read-only, a private /tmp, no network."""
    task = os.path.realpath(task_dir)
    args = [bwrap or bwrap_path() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", *_root_links()]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if gpu:
        for device in [*_GPU_DEVICES, *sorted(glob.glob("/dev/nvidia[0-9]*"))]:
            args += ["--dev-bind-try", device, device]
        args += ["--ro-bind-try", "/sys", "/sys"]  # GPU drivers read their topology there
    seen = set()
    for folder in read_only:
        folder = os.path.realpath(folder)
        if folder in seen or _under(folder, "/usr") or _under(task, folder):
            continue  # /usr is there already; a folder holding the task would expose its neighbours
        seen.add(folder)
        args += ["--ro-bind", folder, folder]
    args += ["--bind", task, task]
    inputs = os.path.join(task, "inputs")
    if os.path.isdir(inputs):
        args += ["--ro-bind", inputs, inputs]
    args += ["--chdir", task, "--setenv", "HOME", task, "--setenv", "TMPDIR", "/tmp", "--"]
    return args + [os.fspath(a) for a in argv]


@functools.lru_cache(maxsize=4)
def _probe(bwrap: str, _mtime: int) -> str | None:
    """None when bwrap can build our namespace here, else why not (a container without user
    namespaces, a kernel that forbids them)."""
    with tempfile.TemporaryDirectory(prefix="pictor-sandbox-") as folder:
        argv = bwrap_argv(["true"], Path(folder), bwrap=bwrap)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=20,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)[:200]
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")[:200]


def usable_bwrap() -> str | None:
    """The bwrap to run renderers in, when it works on this machine."""
    bwrap = bwrap_path()
    if bwrap is None:
        return None
    try:
        mtime = os.stat(bwrap).st_mtime_ns
    except OSError:
        return None
    return bwrap if _probe(bwrap, mtime) is None else None


def protection() -> Protection:
    if not LINUX:
        return Protection(False, "scene paths are checked before every render; Windows and macOS have "
                                 "no sandbox for Blender: run the Worker App as its own standard user")
    bwrap = bwrap_path()
    if bwrap is None:
        return Protection(False, "scene paths are checked before every render, but renders are not "
                                 "sandboxed: install bubblewrap (apt install bubblewrap)")
    problem = _probe(bwrap, os.stat(bwrap).st_mtime_ns)
    if problem:
        return Protection(False, f"bubblewrap is installed but cannot sandbox renders here ({problem}): "
                                 "enable unprivileged user namespaces; scene paths are still checked")
    return Protection(True, "renders and upscales run in a bubblewrap sandbox (only the task folder, "
                            "no network) after a check of every path the scene uses")


def wrap(argv: list[str], task_dir: Path, read_only: Iterable[str | os.PathLike] = (),
         gpu: bool = False) -> list[str]:
    """argv sandboxed when this machine can, else argv as it is (the scene check still holds)."""
    bwrap = usable_bwrap()
    return bwrap_argv(argv, task_dir, read_only, gpu, bwrap) if bwrap else list(argv)


def stage_inputs(inputs: Mapping[str, Path], task_dir: Path) -> dict[str, Path]:
    """Inputs as files inside task_dir/inputs: the only folder a task may read. The engine puts them
    there already; a caller that passes files from elsewhere gets them hard-linked (or copied) in."""
    task = os.path.realpath(task_dir)
    staged = {}
    for name, path in inputs.items():
        path = Path(path)
        if _under(os.path.realpath(path), task):
            staged[name] = path
            continue
        dest = Path(task) / "inputs" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            try:
                os.link(path, dest)
            except OSError:
                try:
                    shutil.copyfile(path, dest)
                except OSError as exc:
                    raise RunFailed("missing_file", f"input file {name!r} cannot be read: "
                                                    f"{exc.strerror or exc}") from None
        staged[name] = dest
    return staged
