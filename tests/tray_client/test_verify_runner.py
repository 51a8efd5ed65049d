"""The verify runner: crops of a frame re-rendered by real Blender match the frame the render
runner delivered; upscale tiles come back as tile.png; bad parameters never reach Blender."""

import random

import numpy as np
import pytest
from PIL import Image

from tray_client.runners import InvalidParams, get_runner
from tray_client.runners.verify import build_crops_argv
from webapp.services import result_checks as rc

RENDER = {"engine": "CYCLES", "samples": 16, "resolution_percent": 100}
CROP = {"min_x": 0.25, "max_x": 0.5, "min_y": 0.25, "max_y": 0.5}


def verify_params(**changes):
    params = {"kind": "render", "blend": "cube.blend", "frame": 1, "format": "PNG", "crops": [CROP],
              **RENDER}
    params.update(changes)
    return params


@pytest.mark.parametrize("params, message", [
    ({"kind": "paint"}, "kind must be render, upscale or benchmark"),
    ([], "kind must be render, upscale or benchmark"),
    (verify_params(crops=[]), "list of 1 to 8"),
    (verify_params(crops=[CROP] * 9), "list of 1 to 8"),
    (verify_params(crops=[{**CROP, "max_x": 1.5}]), "from 0 to 1"),
    (verify_params(crops=[{**CROP, "min_x": float("nan")}]), "from 0 to 1"),
    (verify_params(crops=[{**CROP, "min_x": True}]), "from 0 to 1"),
    (verify_params(crops=[{**CROP, "min_y": "0.1; import os"}]), "from 0 to 1"),
    (verify_params(crops=[{**CROP, "min_x": 0.5}]), "min must be below its max"),
    (verify_params(crops=[{"min_x": 0, "max_x": 1}]), "exactly"),
    (verify_params(crops=[{**CROP, "extra": 1}]), "exactly"),
    (verify_params(engine="BLENDER_EEVEE"), "engine must be one of CYCLES"),
    (verify_params(frame=-1), "frame must be an integer"),
    (verify_params(blend="../x.blend"), "blend must be the name"),
    (verify_params(seed=3), "unknown parameter"),
    ({"kind": "upscale", "image": "a.png", "scale": 3}, "scale must be one of"),
    ({"kind": "upscale", "image": "a.png", "scale": 2, "frame": 1}, "unknown parameter"),
])
def test_bad_params_are_refused_before_anything_runs(params, message, tmp_path):
    with pytest.raises(InvalidParams, match=message):
        get_runner("verify").run(params, {}, tmp_path)
    assert not list(tmp_path.iterdir())


def test_each_crop_is_its_own_region_and_output_in_one_blender_run(tmp_path):
    crops = [CROP, {"min_x": 0, "max_x": 1, "min_y": 0.5, "max_y": 1}]
    params = get_runner("verify").validate(verify_params(crops=crops))
    argv = build_crops_argv("blender", tmp_path / "cube.blend", tmp_path, params)
    assert argv.count("-f") == 2 and argv.count("--python-expr") == 4  # scene check, settings, 2 regions
    regions = [argv[i + 1] for i, a in enumerate(argv) if a == "--python-expr"][2:]
    assert "render.border_min_y = 0.25" in regions[0] and "render.border_max_x = 1.0" in regions[1]
    assert all("color_depth = '8'" in r for r in regions)
    outputs = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"][1:]
    assert [o.rsplit("/", 1)[-1] for o in outputs] == ["crop_00_####", "crop_01_####"]
    assert argv[-2:] == ["--cycles-device", "CPU"]


@pytest.fixture(scope="module")
def delivered(blender, scene, tmp_path_factory):
    """Frame 2 of the cube scene as the render runner delivers it, in PNG and in EXR."""
    folder = tmp_path_factory.mktemp("delivered")
    frames = {}
    for fmt in ("PNG", "OPEN_EXR"):
        result = get_runner("render").run({"blend": "cube.blend", "frames": [2], "format": fmt, **RENDER},
                                          {"cube.blend": scene}, folder / fmt)
        frames[fmt] = result.outputs[0]
    return frames


def test_rendered_crops_match_the_delivered_frame(blender, scene, delivered, tmp_path):
    crops = rc.choose_crops(64, 64, random.Random(3), count=3, fraction=1 / 9)
    seen = []
    result = get_runner("verify").run(verify_params(frame=2, crops=[c.border for c in crops]),
                                      {"cube.blend": scene}, tmp_path, on_progress=seen.append)
    assert [p.name for p in result.outputs] == ["crop_00.png", "crop_01.png", "crop_02.png"]
    assert sorted(p.name for p in tmp_path.glob("crop_*")) == [p.name for p in result.outputs]
    assert seen and seen[-1].fraction == 1.0
    for crop, path in zip(crops, result.outputs):
        rc.check_output_file(path, fmt="PNG", expected_size=crop.size)
        with Image.open(path) as image:
            assert image.mode in ("RGB", "RGBA")  # 8 bits a channel
        score = rc.compare_crop(delivered["PNG"], path, crop)
        assert rc.crop_holds(score), (crop, score)
    other_frame = get_runner("verify").run(verify_params(frame=1, crops=[c.border for c in crops]),
                                           {"cube.blend": scene}, tmp_path / "frame1")
    scores = [rc.compare_crop(delivered["PNG"], p, c) for c, p in zip(crops, other_frame.outputs)]
    assert not all(rc.crop_holds(s) for s in scores), scores  # the cube turned between frames


def test_an_exr_job_gets_exr_crops_equal_to_the_frame(blender, scene, delivered, tmp_path):
    crop = rc.Crop(8, 40, 40, 60, 64, 64)
    result = get_runner("verify").run(verify_params(frame=2, format="OPEN_EXR", crops=[crop.border]),
                                      {"cube.blend": scene}, tmp_path)
    assert [p.name for p in result.outputs] == ["crop_00.exr"]
    rc.check_output_file(result.outputs[0], fmt="OPEN_EXR", expected_size=crop.size)
    # No 8-bit dither on either side: the same samples give the same floats.
    assert rc.compare_crop(delivered["OPEN_EXR"], result.outputs[0], crop).psnr >= 90


def test_an_upscale_tile_comes_back_as_tile_png(realesrgan, tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "cut.png")
    result = get_runner("verify").run({"kind": "upscale", "image": "cut.png", "scale": 2},
                                      {"cut.png": tmp_path / "cut.png"}, tmp_path / "out")
    assert [p.name for p in result.outputs] == ["tile.png"]
    rc.check_output_file(result.outputs[0], fmt="PNG", expected_size=(96, 80))
