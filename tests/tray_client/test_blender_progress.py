"""Progress and failure reading on output recorded from the real Blender 3.4.1 (tests/tray_client/data):
a Cycles render with tiles captured through a terminal (lines end in \\r\\n), a Cycles one through a
pipe, an EEVEE one, and failed runs."""

import re
import sys

import pytest

from tray_client.runners.base import run_process
from tray_client.runners.blender import BlenderProgress, classify_failure

from .conftest import DATA


def recorded(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def replay(name: str, frames=(1, 2)):
    """Every Progress the runner would report for this log, in order."""
    tracker = BlenderProgress(list(frames))
    reports = []
    for line in re.split(r"[\r\n]", recorded(name)):
        if line.strip() and tracker.feed(line):
            reports.append(tracker.progress)
    return tracker, reports


@pytest.mark.parametrize("log", ["cycles_tiles_tty.log", "cycles_samples.log", "eevee.log"])
def test_progress_climbs_steadily_to_done(log):
    tracker, reports = replay(log)
    fractions = [r.fraction for r in reports]
    assert fractions == sorted(fractions), "the bar never goes back"
    assert any(0 < f < 0.5 for f in fractions), "frame 1 shows progress before it is saved"
    assert any(0.5 < f < 1 for f in fractions), "so does frame 2"
    assert reports[-1].fraction == 1.0 and reports[-1].eta_s == 0.0
    assert reports[-1].message == "Rendered 2 of 2 frames"
    assert [p.rsplit("/", 1)[-1] for p in tracker.saved] == ["frame_0001.png", "frame_0002.png"]


def test_tiles_move_the_bar_within_a_frame():
    _, reports = replay("cycles_tiles_tty.log")
    first_frame = {round(r.fraction, 3) for r in reports if r.message.startswith("Frame 1 ")}
    assert len(first_frame) >= 8  # nine tiles: the bar moves with each
    assert any("Rendered 4/9 Tiles" in r.message for r in reports)


def test_eta_comes_from_blender_and_the_frames_already_done():
    tracker = BlenderProgress([1, 2, 3])
    tracker.feed("Fra:1 Mem:9.42M (Peak 10.20M) | Time:00:10.00 | Remaining:00:30.00 | Mem:0.78M, "
                 "Peak:0.78M | Scene, ViewLayer | Sample 64/256")
    progress = tracker.progress
    assert progress.fraction == pytest.approx(0.25 / 3)
    assert progress.eta_s == pytest.approx(30 + 2 * 40)  # this frame's 30 s, then 40 s for each other
    assert progress.message == "Frame 1 (1 of 3): Sample 64/256"
    tracker.feed("Saved: '/work/frame_0001.png'")
    tracker.feed(" Time: 01:02.50 (Saving: 00:00.09)")
    assert tracker.progress.eta_s == pytest.approx(2 * 62.5)
    assert tracker.progress.fraction == pytest.approx(1 / 3)


def test_noise_lines_change_nothing():
    tracker = BlenderProgress([1])
    noise = ["Fra:1 Mem:8.88M (Peak 10.20M) | Time:00:00.03 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | "
             "Updating Scene BVH | Building BVH 0%",
             "Fra:1 Mem:8.48M (Peak 10.20M) | Time:00:00.00 | Scene, ViewLayer | Synchronizing object | Cube",
             "OIIO DEBUG: Don't know what to do with true cycles.passes.0.lightgroup",
             "EGL Error (0x3001): EGL_NOT_INITIALIZED"]
    assert not any(tracker.feed(line) for line in noise)
    assert tracker.progress.fraction == 0


def test_recorded_terminal_output_through_run_process():
    """The \\r-laden bytes, replayed by a child process, reach the parser as clean lines."""
    tracker = BlenderProgress([1, 2])
    lines = []

    def on_line(line):
        lines.append(line)
        tracker.feed(line)

    code = f"import sys; sys.stdout.buffer.write(open({str(DATA / 'cycles_tiles_tty.log')!r}, 'rb').read())"
    returncode, tail, _ = run_process([sys.executable, "-c", code], on_line=on_line)
    assert returncode == 0
    assert not any("\r" in line for line in lines)
    assert tracker.progress.fraction == 1.0
    assert "Blender quit" in tail


@pytest.mark.parametrize("log, returncode, gpu_required, kind", [
    ("no_gpu.log", 3, True, "no_device"),
    ("no_denoiser.log", 1, False, "denoiser"),
    ("unreadable.log", 1, False, "bad_input"),
])
def test_failures_are_told_apart(log, returncode, gpu_required, kind):
    failure = classify_failure(returncode, recorded(log), gpu_required,
                               gpus_found=0 if gpu_required else None)
    assert failure.kind == kind
    assert failure.message and "\n" not in failure.message


@pytest.mark.parametrize("returncode, log, kind, retryable", [
    (1, "Error: Cannot read file '/x.blend': No such file or directory", "missing_file", False),
    (-11, "Fra:1 ... Sample 3/64\nSegmentation fault (core dumped)", "crash", True),
    (-9, "Fra:1 ... Sample 3/64", "out_of_memory", True),
    (1, "Error: System is out of GPU memory", "out_of_memory", True),
    (1, "Error: Found no Cycles device of the specified type", "no_device", True),
    (1, "Read blend: /work/a.blend\nError: Cannot render, no camera", "render_error", False),
])
def test_failure_kinds(returncode, log, kind, retryable):
    failure = classify_failure(returncode, log)
    assert (failure.kind, failure.retryable) == (kind, retryable)


def test_a_gpu_job_that_ran_on_the_cpu_fails():
    log = recorded("cycles_samples.log")
    assert classify_failure(0, log) is None
    assert classify_failure(0, log, gpu_required=True, gpus_found=None).kind == "no_device"
    assert classify_failure(0, log, gpu_required=True, gpus_found=1) is None
