"""The render runner: locked-down command line, strict parameters, and real renders of a tiny scene."""

import shutil
import subprocess
import time

import psutil
import pytest
from PIL import Image

from tray_client.runners.base import InvalidParams, RunFailed, RunnerSettings
from tray_client.runners.blender import (BlenderRunner, blender_version, build_argv, cycles_device,
                                         frames_arg)

PARAMS = {"blend": "cube.blend", "frames": [1, 2], "engine": "CYCLES", "samples": 4,
          "resolution_percent": 100, "format": "PNG", "device": "any"}


def params(**changes):
    return {**PARAMS, **changes}


# --- the command line ----------------------------------------------------------------------------

def test_argv_is_a_locked_down_list(tmp_path):
    argv = build_argv("/usr/bin/blender", tmp_path / "in.blend", tmp_path, params(frames=[1, 2, 3, 7]))
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert argv[:5] == ["/usr/bin/blender", "-b", "--factory-startup", "--disable-autoexec", "-noaudio"]
    assert argv[argv.index("-o") + 1] == str(tmp_path / "frame_####")
    assert argv[argv.index("-f") + 1] == "1..3,7"
    assert argv[-3:] == ["--", "--cycles-device", "CPU"]
    # Everything Blender runs comes before "--"; the Python it runs is our fixed template.
    exprs = [argv[i + 1] for i, a in enumerate(argv) if a == "--python-expr"]
    assert "PICTOR_UNSAFE_SCENE" in exprs[0]  # the scene's paths are checked before anything else
    assert argv.index("--python-exit-code") < argv.index("--python-expr")  # a refusal stops Blender
    assert "resolution_percentage = 100" in exprs[1] and "samples = 4" in exprs[1]
    assert not any("in.blend" in expr for expr in exprs)


def test_gpu_jobs_ask_for_the_gpu_only(tmp_path):
    argv = build_argv("blender", tmp_path / "in.blend", tmp_path, params(device="gpu"), gpu_backend="OPTIX")
    assert argv[-1] == "OPTIX"
    assert "compute_device_type = 'OPTIX'" in argv[argv.index("--python-expr") + 3]  # after the scene check
    assert cycles_device("gpu", None) == "CUDA"
    assert cycles_device("any", "CUDA") == "CUDA+CPU"  # "any" may fall back to the CPU
    assert cycles_device("any", None) == "CPU"


def test_frames_are_written_as_short_ranges():
    assert frames_arg([5]) == "5"
    assert frames_arg([1, 2, 3, 4]) == "1..4"
    assert frames_arg([10, 1, 2, 9]) == "10,1..2,9"
    assert len(frames_arg(list(range(1000)))) < 10


# --- parameters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    params(resolution_x=1920),  # unknown key
    params(python="import os"),
    params(engine="BLENDER_EEVEE_NEXT"),
    params(engine="cycles"),
    params(format="TIFF"),
    params(device="cpu"),
    params(samples=0),
    params(samples=65537),
    params(samples="64"),
    params(samples=True),
    params(samples=64.0),
    params(resolution_percent=101),
    params(frames=[]),
    params(frames=list(range(1001))),
    params(frames=[-1]),
    params(frames=[1_000_001]),
    params(frames=[1, 1]),
    params(frames="1-10"),
    params(blend="../../etc/passwd"),
    params(blend="C:\\scene.blend"),
    params(blend=""),
    {k: v for k, v in PARAMS.items() if k != "frames"},
    ["not", "a", "dict"],
])
def test_params_outside_the_allow_list_are_refused(bad):
    with pytest.raises(InvalidParams) as caught:
        BlenderRunner().validate(bad)
    assert caught.value.kind == "invalid_params" and not caught.value.retryable


def test_valid_params_pass_and_device_defaults_to_any():
    clean = BlenderRunner().validate({k: v for k, v in PARAMS.items() if k != "device"})
    assert clean == dict(PARAMS, seed=None)  # no seed given: the scene's own
    assert BlenderRunner().validate(clean) == clean  # a clean copy validates again (the runner re-checks)


def test_a_seed_reaches_cycles_as_a_number_only():
    from tray_client.runners.blender import settings_expression
    clean = BlenderRunner().validate(dict(PARAMS, seed=4242))
    assert "scene.cycles.seed = 4242\n" in settings_expression(clean, None)
    assert "cycles.seed" not in settings_expression(dict(PARAMS, seed=None), None)
    for bad in (-1, 2**31, "7; import os", 1.5, True):
        with pytest.raises(InvalidParams):
            BlenderRunner().validate(dict(PARAMS, seed=bad))


def test_invalid_params_run_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("tray_client.runners.blender.run_process",
                        lambda *a, **k: pytest.fail("Blender must not start"))
    with pytest.raises(RunFailed) as caught:
        BlenderRunner().run(params(engine="OCTANE"), {"cube.blend": tmp_path / "x"}, tmp_path)
    assert caught.value.kind == "invalid_params"


def test_missing_blender_is_explained(tmp_path):
    (tmp_path / "cube.blend").write_bytes(b"BLENDER")
    runner = BlenderRunner(RunnerSettings(blender_path=str(tmp_path / "nowhere" / "blender")))
    with pytest.raises(RunFailed) as caught:
        runner.run(PARAMS, {"cube.blend": tmp_path / "cube.blend"}, tmp_path / "work")
    assert caught.value.kind == "renderer_missing"
    assert "blender_path in Settings" in caught.value.message


def test_missing_input_is_explained(tmp_path):
    with pytest.raises(RunFailed) as caught:
        BlenderRunner().run(PARAMS, {}, tmp_path)
    assert caught.value.kind == "missing_file"


# --- real Blender -------------------------------------------------------------------------------------

def test_blender_version(blender):
    assert blender_version(blender).count(".") >= 1


@pytest.mark.parametrize("engine", ["CYCLES", "BLENDER_WORKBENCH"])
def test_real_render_writes_one_image_per_frame(blender, scene, tmp_path, engine):
    reports = []
    result = BlenderRunner().run(params(engine=engine, resolution_percent=50), {"cube.blend": scene},
                                 tmp_path, on_progress=reports.append)
    assert [p.name for p in result.outputs] == ["frame_0001.png", "frame_0002.png"]
    for path in result.outputs:
        with Image.open(path) as image:
            image.load()
            assert image.size == (32, 32)  # 64x64 at 50 %
    assert reports[-1].fraction == 1.0
    assert result.compute_seconds > 0 and "Saved:" in result.log_tail


def test_jpeg_frames_get_their_extension(blender, scene, tmp_path):
    result = BlenderRunner().run(params(engine="BLENDER_WORKBENCH", format="JPEG", frames=[2]),
                                 {"cube.blend": scene}, tmp_path)
    assert [p.name for p in result.outputs] == ["frame_0002.jpg"]
    with Image.open(result.outputs[0]) as image:
        assert image.format == "JPEG"


def test_auto_run_scripts_in_a_blend_never_run(blender, booby_trapped_scene, tmp_path):
    blend, marker = booby_trapped_scene
    text_marker, driver_marker = marker.with_suffix(".text"), marker.with_suffix(".driver")
    # Proof the trap works: with auto-run allowed, as a provider's own Blender may be set up,
    # both the text block and the driver run.
    subprocess.run([str(blender), "-b", "--factory-startup", "--enable-autoexec", "-noaudio", str(blend),
                    "-E", "BLENDER_WORKBENCH", "-o", str(tmp_path / "proof_#"), "-f", "1"],
                   check=True, capture_output=True, timeout=60)
    assert text_marker.read_text() == "text block ran"
    assert driver_marker.read_text() == "driver ran"
    text_marker.unlink()
    driver_marker.unlink()

    result = BlenderRunner().run(params(blend="trap.blend", engine="BLENDER_WORKBENCH", frames=[1]),
                                 {"trap.blend": blend}, tmp_path / "work")
    assert len(result.outputs) == 1
    assert not text_marker.exists() and not driver_marker.exists()


def test_cancel_stops_blender_within_two_seconds(blender, scene, tmp_path):
    rendering, asked_at = [], None

    def should_stop():
        nonlocal asked_at
        if rendering and asked_at is None:
            asked_at = time.monotonic()
        return asked_at is not None

    slow = params(samples=65536, frames=[1])  # minutes of work: it must be cut short
    with pytest.raises(RunFailed) as caught:
        BlenderRunner().run(slow, {"cube.blend": scene}, tmp_path,
                            on_progress=lambda p: p.fraction > 0 and rendering.append(p),
                            should_stop=should_stop)
    assert caught.value.kind == "canceled"
    assert time.monotonic() - asked_at < 2.0
    assert not [p for p in psutil.process_iter(["name", "cmdline", "status"])
                if "blender" in (p.info["name"] or "") and p.info["status"] != psutil.STATUS_ZOMBIE
                and str(tmp_path) in " ".join(p.info["cmdline"] or [])]


def test_a_gpu_job_without_a_gpu_fails_instead_of_using_the_cpu(blender, scene, tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(RunFailed) as caught:
        BlenderRunner().run(params(device="gpu", frames=[1]), {"cube.blend": scene}, tmp_path)
    assert caught.value.kind == "no_device" and caught.value.retryable
    assert not list(tmp_path.glob("frame_*"))


def test_a_gpu_job_on_eevee_needs_a_known_gpu(blender, scene, tmp_path):
    with pytest.raises(RunFailed) as caught:
        BlenderRunner().run(params(device="gpu", engine="BLENDER_EEVEE"), {"cube.blend": scene}, tmp_path)
    assert caught.value.kind == "no_device"


def test_stale_frames_from_an_earlier_try_do_not_count(blender, scene, tmp_path):
    (tmp_path / "frame_0001.png").write_bytes(b"old")
    result = BlenderRunner().run(params(engine="BLENDER_WORKBENCH", frames=[1]), {"cube.blend": scene},
                                 tmp_path)
    assert result.outputs[0].read_bytes() != b"old"
