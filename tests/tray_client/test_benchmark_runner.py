"""Bench Score runs the portal issues: the reference scene rendered with the portal's seed, and the
crops a verifier re-renders of it, with real Blender."""

import random
import time

import numpy as np
import pytest
from PIL import Image

from tray_client import bench, config
from tray_client.runners import InvalidParams, RunnerSettings, get_runner
from tray_client.runners.benchmark import SCENE_FOLDER
from webapp.services import result_checks as rc

RUN = {"seed": 11, "scene_version": bench.SCENE_VERSION}
CROP = {"min_x": 0.25, "max_x": 0.5, "min_y": 0.25, "max_y": 0.5}


def settings(blender):
    return RunnerSettings(blender_path=str(blender))


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("params,mentions", [
    ({"seed": 0, "scene_version": bench.SCENE_VERSION}, "seed"),
    ({"seed": 2**31, "scene_version": bench.SCENE_VERSION}, "seed"),
    ({"seed": True, "scene_version": bench.SCENE_VERSION}, "seed"),
    ({"seed": "5", "scene_version": bench.SCENE_VERSION}, "seed"),
    ({"seed": 5, "scene_version": bench.SCENE_VERSION + 1}, "update the Worker App"),
    ({"seed": 5, "scene_version": bench.SCENE_VERSION, "samples": 1}, "unknown"),
    ({"scene_version": bench.SCENE_VERSION}, "seed is required"),
    ([], "JSON object"),
])
def test_bad_benchmark_params_are_refused_before_anything_runs(params, mentions, tmp_path):
    with pytest.raises(InvalidParams, match=mentions) as exc:
        get_runner("benchmark").run(params, {}, tmp_path / "task")
    assert not exc.value.retryable and not list(tmp_path.iterdir())


@pytest.mark.parametrize("params,mentions", [
    ({"kind": "benchmark", **RUN, "crops": [CROP], "blend": "x.blend"}, "unknown"),
    ({"kind": "benchmark", **RUN, "scene_version": bench.SCENE_VERSION + 1, "crops": [CROP]},
     "update the Worker App"),
    ({"kind": "benchmark", **RUN}, "crops is required"),
    ({"kind": "benchmark", **RUN, "crops": [{**CROP, "min_x": "0; import os"}]}, "from 0 to 1"),
])
def test_bad_benchmark_check_params_are_refused(params, mentions, tmp_path):
    with pytest.raises(InvalidParams, match=mentions):
        get_runner("verify").run(params, {}, tmp_path / "task")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def runs(blender, tmp_path_factory):
    """Three runs through the runner as the engine makes them (task folders under one work folder,
    which starts empty): seed 11, seed 11 again, seed 12; each with its wall time."""
    work = tmp_path_factory.mktemp("work")
    runner = get_runner("benchmark", settings(blender))
    done = []
    for index, seed in enumerate((11, 11, 12)):
        started = time.monotonic()
        result = runner.run(dict(RUN, seed=seed), {}, work / f"task-{index}")
        done.append((result.outputs, time.monotonic() - started))
    return work, done


@pytest.mark.slow
def test_a_run_delivers_the_seeded_320x240_frame_and_builds_the_scene_once(runs):
    work, done = runs
    (outputs, _), *_ = done
    assert [p.name for p in outputs] == ["frame_0001.png"]
    rc.check_output_file(outputs[0], fmt="PNG", expected_size=bench.FRAME_SIZE)
    assert sorted(p.name for p in (work / SCENE_FOLDER).iterdir()) == [f"bench-v{bench.SCENE_VERSION}.blend"]
    # The render saw the scene only as a link inside its own task folder (the sandbox shows no other).
    assert (work / "task-0" / "inputs" / bench.PARAMS["blend"]).samefile(work / SCENE_FOLDER /
                                                                         f"bench-v{bench.SCENE_VERSION}.blend")


@pytest.mark.slow
def test_the_seed_decides_the_noise(runs):
    _, done = runs
    first, again, other = (pixels(outputs[0]) for outputs, _ in done)
    assert np.array_equal(first, again)  # same seed, same pixels: the portal's check can re-render it
    assert np.abs(first - other).mean() > 0.5  # another seed, other noise: a result can't be reused


@pytest.mark.slow
def test_a_verifier_re_renders_crops_of_the_run(blender, runs, tmp_path):
    _, done = runs
    frame, other_seed = done[0][0][0], done[2][0][0]
    crops = rc.choose_crops(*bench.FRAME_SIZE, random.Random(2), count=2, fraction=1 / 16)
    check = get_runner("verify", settings(blender)).run(
        {"kind": "benchmark", **RUN, "crops": [c.border for c in crops]}, {}, tmp_path / "task-9")
    assert [p.name for p in check.outputs] == ["crop_00.png", "crop_01.png"]
    for crop, path in zip(crops, check.outputs):
        rc.check_output_file(path, fmt="PNG", expected_size=crop.size)
        assert rc.crop_holds(rc.compare_crop(frame, path, crop), "PNG")
    right = rc.compare_crop(frame, check.outputs[0], crops[0])
    wrong = rc.compare_crop(other_seed, check.outputs[0], crops[0])
    assert wrong.psnr < right.psnr  # the other seed's frame is further off


@pytest.mark.slow
def test_timing_of_a_run_beside_pictor_worker_bench(blender, runs, tmp_path, capsys):
    """Not a pass/fail figure: what the portal's reference constant (webapp/services/benchmarks.py
    PORTAL_REFERENCE_SECONDS) rests on, printed so a change of machine or scene can be re-measured."""
    _, done = runs
    cfg = config.WorkerConfig(path=tmp_path / "worker.json", data_dir=tmp_path / "data")
    own = bench.run(cfg, None, repeat=2)["details"]  # what `pictor-worker bench` times: the render alone
    cold, *cached = [seconds for _, seconds in done]
    assert own["seconds"] > 0
    with capsys.disabled():
        print(f"\n[bench] task run from an empty folder {cold:.2f} s, scene cached "
              f"{', '.join(f'{s:.2f}' for s in cached)} s; `pictor-worker bench` render "
              f"{', '.join(f'{s:.2f}' for s in own['runs'])} s")
