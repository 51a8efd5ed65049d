"""Bench Score runs the portal issues: the reference scene rendered with the portal's seed, and the
crops a verifier re-renders of it, with real Blender."""

import time

import numpy as np
import pytest
from PIL import Image

from tray_client import bench
from tray_client.runners import InvalidParams, RunnerSettings, get_runner
from webapp.services import result_checks as rc


def settings(blender):
    return RunnerSettings(blender_path=str(blender))


@pytest.mark.parametrize("params,mentions", [
    ({"seed": 0, "scene_version": bench.SCENE_VERSION}, "seed"),
    ({"seed": 5, "scene_version": bench.SCENE_VERSION + 1}, "update the Worker App"),
    ({"seed": 5, "scene_version": bench.SCENE_VERSION, "samples": 1}, "unknown"),
    ({"seed": "5", "scene_version": bench.SCENE_VERSION}, "seed"),
])
def test_bad_benchmark_params_are_refused(params, mentions):
    with pytest.raises(InvalidParams) as exc:
        get_runner("benchmark").validate(params)
    assert mentions in str(exc.value)


@pytest.mark.slow
def test_a_run_renders_the_seeded_scene_and_a_verifier_re_renders_its_crops(blender, tmp_path, capsys):
    runner = get_runner("benchmark", settings(blender))
    started = time.monotonic()
    first = runner.run({"seed": 11, "scene_version": bench.SCENE_VERSION}, {}, tmp_path / "one").outputs[0]
    cold = time.monotonic() - started
    started = time.monotonic()
    second = runner.run({"seed": 12, "scene_version": bench.SCENE_VERSION}, {}, tmp_path / "two").outputs[0]
    warm = time.monotonic() - started
    assert first.name == "frame_0001.png"
    rc.check_output_file(first, fmt="PNG", expected_size=bench.FRAME_SIZE)
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (first, second))
    assert np.abs(a - b).mean() > 0.5  # another seed, other noise: a result can't be reused
    crops = rc.choose_crops(*bench.FRAME_SIZE, __import__("random").Random(2), count=2, fraction=1 / 16)
    check = get_runner("verify", settings(blender)).run(
        {"kind": "benchmark", "seed": 11, "scene_version": bench.SCENE_VERSION, "crops": [c.border for c in crops]},
        {}, tmp_path / "check")
    assert [p.name for p in check.outputs] == ["crop_00.png", "crop_01.png"]
    for crop, path in zip(crops, check.outputs):
        assert rc.crop_holds(rc.compare_crop(first, path, crop), "PNG")
    wrong = rc.compare_crop(second, check.outputs[0], crops[0])  # the other seed's frame does not match
    assert wrong.psnr < rc.compare_crop(first, check.outputs[0], crops[0]).psnr
    with capsys.disabled():
        print(f"\n[bench run] from an empty folder {cold:.1f} s, scene cached {warm:.1f} s")
