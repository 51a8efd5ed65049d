"""The portal's checks of a delivered result: names, format, size, whole decode, and the crop and
tile comparisons of spot checks, on real Blender renders where it matters."""

import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import missing
from tests.webapp.blend_fixture import FAKE_BLEND
from tray_client.runners import get_runner
from tray_client.runners.blender import find_blender
from webapp.services import result_checks as rc
from webapp.services.result_checks import InvalidOutput

# A 97x61 scene (odd sizes catch rounding), lit from one side over a floor, so every window of a
# frame looks different from the same window flipped; `variant` 1 is another scene altogether.
SCENE = """
import bpy, sys
out, variant = sys.argv[sys.argv.index('--') + 1], int(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 97, 61, 100
s.frame_start, s.frame_end = 1, 2
if variant == 0:
    bpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 0))
else:
    bpy.ops.mesh.primitive_monkey_add(location=(0.5, 0, 0.3))
obj = bpy.context.object
obj.keyframe_insert('location', frame=1)
obj.location.x += 1.5
obj.keyframe_insert('location', frame=2)
mat = bpy.data.materials.new('m'); mat.use_nodes = True
mat.node_tree.nodes['Principled BSDF'].inputs['Base Color'].default_value = (
    (0.8, 0.2, 0.1, 1) if variant == 0 else (0.1, 0.6, 0.3, 1))
obj.data.materials.append(mat)
bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, -1))
cam = bpy.data.objects.new('Camera', bpy.data.cameras.new('Camera'))
s.collection.objects.link(cam); s.camera = cam
cam.location = (5, -5, 3) if variant == 0 else (-4, -6, 2)
cam.rotation_euler = (1.2, 0, 0.785) if variant == 0 else (1.35, 0, -0.6)
lamp = bpy.data.objects.new('L', bpy.data.lights.new('L', 'POINT'))
lamp.data.energy = 900; lamp.location = (3, -1, 3); s.collection.objects.link(lamp)
s.world = bpy.data.worlds.new('W'); s.world.color = (0.2, 0.3, 0.5) if variant == 0 else (0.5, 0.4, 0.2)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""

RENDER = {"engine": "CYCLES", "samples": 16, "resolution_percent": 100, "device": "any"}


def png(path: Path, size=(8, 8), color=(200, 40, 40), fmt="PNG") -> Path:
    Image.new("RGB", size, color).save(path, fmt)
    return path


def write_exr(path: Path, size=(8, 6)) -> Path:
    import OpenEXR
    w, h = size
    rgb = np.random.default_rng(1).random((h, w, 3), dtype=np.float32) * 4  # HDR values
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"RGB": rgb}).write(str(path))
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A ~60-byte PNG whose header claims width x height: a decompression bomb's calling card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


# --- names -----------------------------------------------------------------------------------------

def test_render_outputs_are_one_file_per_frame_named_like_the_worker_names_them():
    assert rc.render_output_names([1, 2, 12345], "PNG") == ["frame_0001.png", "frame_0002.png",
                                                            "frame_12345.png"]
    assert rc.render_output_names([7], "JPEG") == ["frame_0007.jpg"]
    assert rc.render_output_names([7], "OPEN_EXR") == ["frame_0007.exr"]


def test_upscale_output_is_named_after_the_input_with_the_size_times_scale():
    assert rc.upscale_output_names("holiday photo.jpg", 4) == ["holiday_photo_x4.png"]
    assert rc.upscaled_size((300, 200), 2) == (600, 400)


@pytest.mark.parametrize("declared, culprit, rule", [
    (["frame_0001.png"], "frame_0002.png", "missing"),
    (["frame_0001.png", "frame_0002.png", "evil.html"], "evil.html", "not an output"),
    (["frame_0001.png", "frame_0001.png", "frame_0002.png"], "frame_0001.png", "twice"),
    (["frame_0001.jpg", "frame_0002.png"], "frame_0001.jpg", "not an output"),
    ([], "frame_0001.png", "missing"),
])
def test_declared_outputs_must_be_exactly_the_task_files(declared, culprit, rule):
    with pytest.raises(InvalidOutput) as refused:
        rc.check_output_names(declared, ["frame_0001.png", "frame_0002.png"])
    assert refused.value.name == culprit
    assert rule in refused.value.rule


def test_the_exact_outputs_pass():
    rc.check_output_names(["frame_0002.png", "frame_0001.png"], ["frame_0001.png", "frame_0002.png"])


# --- one file ----------------------------------------------------------------------------------------

def test_a_whole_image_of_the_right_format_and_size_passes(tmp_path):
    rc.check_output_file(png(tmp_path / "frame_0001.png", (97, 61)), fmt="PNG", expected_size=(97, 61))
    rc.check_output_file(png(tmp_path / "frame_0001.jpg", (35, 22), fmt="JPEG"), fmt="JPEG",
                         expected_size=(35, 22))


def test_wrong_size_is_refused_naming_both_sizes(tmp_path):
    with pytest.raises(InvalidOutput, match=r"is 96x61 pixels; this task renders 97x61"):
        rc.check_output_file(png(tmp_path / "frame_0001.png", (96, 61)), fmt="PNG", expected_size=(97, 61))


@pytest.mark.parametrize("written, declared", [("JPEG", "PNG"), ("PNG", "JPEG"), ("GIF", "PNG"),
                                               ("PNG", "OPEN_EXR")])
def test_another_format_under_the_right_name_is_refused(tmp_path, written, declared):
    ext = {"PNG": "png", "JPEG": "jpg", "OPEN_EXR": "exr"}[declared]
    path = png(tmp_path / f"frame_0001.{ext}", (16, 16), fmt=written)
    with pytest.raises(InvalidOutput, match="not a readable"):
        rc.check_output_file(path, fmt=declared, expected_size=(16, 16))


def test_a_name_with_another_extension_is_refused(tmp_path):
    with pytest.raises(InvalidOutput, match=r"\*\.png"):
        rc.check_output_file(png(tmp_path / "frame_0001.html", (16, 16)), fmt="PNG", expected_size=(16, 16))


def test_garbage_and_truncated_files_are_refused(tmp_path):
    garbage = tmp_path / "frame_0001.png"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    whole = png(tmp_path / "whole.png", (64, 64))
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(whole)  # noise barely compresses: plenty of pixel data to cut
    data = whole.read_bytes()
    truncated = tmp_path / "frame_0002.png"
    truncated.write_bytes(data[:len(data) // 2])
    flipped = tmp_path / "frame_0003.png"
    flipped.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    jpeg = png(tmp_path / "whole.jpg", (64, 64), fmt="JPEG").read_bytes()
    cut_jpeg = tmp_path / "frame_0004.jpg"
    cut_jpeg.write_bytes(jpeg[:len(jpeg) // 2])
    for path, fmt in [(garbage, "PNG"), (truncated, "PNG"), (flipped, "PNG"), (cut_jpeg, "JPEG")]:
        with pytest.raises(InvalidOutput, match="not a readable"):
            rc.check_output_file(path, fmt=fmt, expected_size=(64, 64))
    rc.check_output_file(whole, fmt="PNG", expected_size=(64, 64), name="frame_0001.png")


def test_a_decompression_bomb_is_refused_without_decoding_it(tmp_path):
    bomb = png_claiming(tmp_path / "frame_0001.png", 60000, 60000)
    assert bomb.stat().st_size < 100
    with pytest.raises(InvalidOutput, match="decompression bomb"):
        rc.check_output_file(bomb, fmt="PNG", expected_size=(64, 64))
    smaller = png_claiming(tmp_path / "frame_0002.png", 12000, 12000)  # under Pillow's own limit
    with pytest.raises(InvalidOutput, match="is 12000x12000 pixels"):
        rc.check_output_file(smaller, fmt="PNG", expected_size=(64, 64))
    # Even a scene that claims that size: refused before a byte of pixels is decoded.
    with pytest.raises(InvalidOutput, match="beyond what the portal accepts"):
        rc.check_output_file(bomb, fmt="PNG", expected_size=(60000, 60000))


def test_an_exr_decodes_with_the_real_reader(tmp_path):
    exr = write_exr(tmp_path / "frame_0001.exr", (8, 6))
    rc.check_output_file(exr, fmt="OPEN_EXR", expected_size=(8, 6))
    with pytest.raises(InvalidOutput, match="is 8x6 pixels"):
        rc.check_output_file(exr, fmt="OPEN_EXR", expected_size=(6, 8))
    big = write_exr(tmp_path / "big.exr", (200, 120))
    data = big.read_bytes()
    cut = tmp_path / "frame_0002.exr"
    cut.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(InvalidOutput, match="not a readable OpenEXR"):
        rc.check_output_file(cut, fmt="OPEN_EXR", expected_size=(200, 120))
    rgb = rc.load_rgb(exr)
    assert rgb.shape == (6, 8, 3) and 0 <= rgb.min() and rgb.max() < 1  # the tone curve's range


# --- the scene's size, from the .blend ----------------------------------------------------------------

def test_render_settings_are_read_from_plain_and_compressed_blends(real_blends):
    for blend in real_blends.values():
        settings = rc.read_render_settings(blend)
        # Blender's factory scene, saved with frame_end = 3 by blend_fixture
        assert (settings.resolution_x, settings.resolution_y, settings.percent) == (1920, 1080, 100)
        assert (settings.frame_start, settings.frame_end) == (1, 3)
        assert settings.spot_checkable
        assert rc.expected_render_size(settings, 50) == (960, 540)


def test_a_file_that_is_no_blend_is_unreadable(tmp_path):
    for data in (FAKE_BLEND, b"not a blend at all", b""):
        path = tmp_path / "scene.blend"
        path.write_bytes(data)
        with pytest.raises(rc.UnreadableBlend, match="scene.blend"):
            rc.read_render_settings(path)


def test_expected_size_floors_like_blender_and_honours_a_cropped_region():
    settings = rc.RenderSettings("Scene", 97, 61, 100, "CYCLES", 1, 2)
    assert rc.expected_render_size(settings, 37) == (35, 22)  # 35.89, 22.57: floored
    cropped = rc.RenderSettings("Scene", 100, 50, 100, "CYCLES", 1, 2, use_border=True,
                                use_crop_to_border=True, border=(0.25, 0.75, 0.0, 0.5))
    assert rc.expected_render_size(cropped, 100) == (50, 25)
    assert not cropped.spot_checkable


# --- crops: which window, and Blender's axes ------------------------------------------------------------

def test_a_crop_border_runs_from_the_bottom_and_maps_back_to_its_window():
    crop = rc.Crop(x0=10, y0=5, x1=34, y1=21, frame_width=97, frame_height=61)
    border = crop.border
    # Rows 5..20 from the top are rows 40..55 from the bottom.
    assert int(border["min_y"] * 61) == 40 and int(border["max_y"] * 61) == 56
    assert int(border["min_x"] * 97) == 10 and int(border["max_x"] * 97) == 34
    assert rc.crop_from_border(border, 97, 61) == crop
    edge = rc.Crop(0, 0, 97, 61, 97, 61)
    assert edge.border == {"min_x": 0.0, "max_x": 1.0, "min_y": 0.0, "max_y": 1.0}


def test_chosen_crops_fit_the_frame_are_seeded_and_do_not_overlap():
    crops = rc.choose_crops(400, 300, random.Random(7), count=3, fraction=1 / 16)
    assert crops == rc.choose_crops(400, 300, random.Random(7), count=3, fraction=1 / 16)
    assert crops != rc.choose_crops(400, 300, random.Random(8), count=3, fraction=1 / 16)
    for crop in crops:
        assert crop.size == (100, 75)
        assert 0 <= crop.x0 < crop.x1 <= 400 and 0 <= crop.y0 < crop.y1 <= 300
        assert rc.crop_from_border(crop.border, 400, 300) == crop
    assert not any(rc._overlap(a, b) for i, a in enumerate(crops) for b in crops[i + 1:])
    tiny = rc.choose_crops(20, 10, random.Random(1))
    assert tiny[0].size == (16, 10)  # never smaller than SSIM needs, never beyond the frame


def test_compare_crop_reads_the_window_from_the_top_left(tmp_path):
    frame = np.random.default_rng(3).integers(0, 256, (61, 97, 3), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "frame.png")
    crop = rc.Crop(10, 5, 34, 21, 97, 61)
    Image.fromarray(frame[5:21, 10:34]).save(tmp_path / "crop.png")
    assert rc.compare_crop(tmp_path / "frame.png", tmp_path / "crop.png", crop) == rc.CropScore(100.0, 1.0)
    Image.fromarray(frame[61 - 21:61 - 5, 10:34]).save(tmp_path / "upside.png")  # y from the bottom
    assert not rc.crop_holds(rc.compare_crop(tmp_path / "frame.png", tmp_path / "upside.png", crop))
    Image.fromarray(frame[5:20, 10:34]).save(tmp_path / "short.png")
    with pytest.raises(InvalidOutput, match="short.png"):
        rc.compare_crop(tmp_path / "frame.png", tmp_path / "short.png", crop)


def test_a_jpeg_delivery_faces_a_lower_floor_than_a_lossless_one():
    # JPEG's own block errors cost an honest crop ~15 dB (see result_checks.CROP_FLOORS).
    jpeg_honest = rc.CropScore(psnr=33.0, ssim=0.93)
    assert rc.crop_holds(jpeg_honest, "JPEG")
    assert not rc.crop_holds(jpeg_honest, "PNG") and not rc.crop_holds(jpeg_honest, "OPEN_EXR")
    assert not rc.crop_holds(rc.CropScore(psnr=9.0, ssim=0.01), "JPEG")  # noise


# --- crops: thresholds on real renders ---------------------------------------------------------------

@pytest.fixture(scope="module")
def blender():
    return find_blender() or missing("Blender not installed (apt-get install blender)")


def make_scene(blender, folder: Path, variant: int) -> Path:
    import subprocess
    out = folder / f"scene{variant}.blend"
    subprocess.run([str(blender), "-b", "--factory-startup", "--python-expr", SCENE, "--", str(out),
                    str(variant)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def rendered(blender, tmp_path_factory):
    """Frame 1 of the scene rendered by the render runner, 3 crops of it rendered by the verify
    runner, and the same frame of another scene, all at the job's settings."""
    folder = tmp_path_factory.mktemp("verify")
    blend, other = make_scene(blender, folder, 0), make_scene(blender, folder, 1)
    inputs = {"scene.blend": blend, "other.blend": other}
    frame = {}
    for name, frames in [("scene.blend", [1, 2]), ("other.blend", [1])]:
        result = get_runner("render").run({"blend": name, "frames": frames, "format": "PNG", **RENDER},
                                          inputs, folder / name)
        frame[name] = result.outputs
    crops = rc.choose_crops(97, 61, random.Random(12), count=3, fraction=1 / 9)
    verified = get_runner("verify").run({"kind": "render", "blend": "scene.blend", "frame": 1,
                                         "format": "PNG", "crops": [c.border for c in crops], **RENDER},
                                        inputs, folder / "verify")
    return {"blend": blend, "frame": frame["scene.blend"][0], "frame_2": frame["scene.blend"][1],
            "other": frame["other.blend"][0], "crops": list(zip(crops, verified.outputs)),
            "folder": folder}


def test_the_scene_size_read_from_the_blend_is_the_size_blender_renders(rendered):
    settings = rc.read_render_settings(rendered["blend"])
    assert (settings.resolution_x, settings.resolution_y, settings.engine) == (97, 61, "CYCLES")
    size = rc.expected_render_size(settings, 100)
    rc.check_output_file(rendered["frame"], fmt="PNG", expected_size=size)


def test_expected_size_at_an_odd_percent_matches_a_real_render(blender, rendered, tmp_path):
    result = get_runner("render").run(
        {"blend": "scene.blend", "frames": [1], "format": "OPEN_EXR", "engine": "CYCLES", "samples": 1,
         "resolution_percent": 37}, {"scene.blend": rendered["blend"]}, tmp_path)
    size = rc.expected_render_size(rc.read_render_settings(rendered["blend"]), 37)
    assert size == (35, 22)
    rc.check_output_file(result.outputs[0], fmt="OPEN_EXR", expected_size=size)


def test_honest_crops_hold(rendered):
    for crop, path in rendered["crops"]:
        score = rc.compare_crop(rendered["frame"], path, crop)
        assert rc.crop_holds(score), score
        assert score.psnr > 45 and score.ssim > 0.98  # dither only: well above the floor


def fake(folder: Path, name: str, pixels: np.ndarray) -> Path:
    path = folder / f"{name}.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_tampered_frames_fail_their_crops(rendered):
    honest = np.asarray(Image.open(rendered["frame"]).convert("RGB"))
    folder = rendered["folder"]
    rng = np.random.default_rng(5)
    tampered = {
        "black": fake(folder, "black", np.zeros_like(honest)),
        "noise": fake(folder, "noise", rng.integers(0, 256, honest.shape)),
        "flipped": fake(folder, "flipped", honest[::-1]),
        "other scene": rendered["other"],
        "another frame": rendered["frame_2"],
    }
    for kind, path in tampered.items():
        scores = [rc.compare_crop(path, crop_path, crop) for crop, crop_path in rendered["crops"]]
        assert not all(rc.crop_holds(s) for s in scores), (kind, scores)


# --- upscale tiles ---------------------------------------------------------------------------------

def test_a_tile_is_padded_where_there_is_room_and_maps_to_the_output():
    tile = rc.choose_tile(300, 200, random.Random(2), scale=4, size=64, margin=16)
    assert (tile.x1 - tile.x0, tile.y1 - tile.y0) == (64, 64)
    assert tile.pad_x0 == max(0, tile.x0 - 16) and tile.pad_y1 == min(200, tile.y1 + 16)
    assert tile.output_box == (tile.x0 * 4, tile.y0 * 4, tile.x1 * 4, tile.y1 * 4)
    cx0, cy0, cx1, cy1 = tile.centre_in_tile_box
    assert (cx1 - cx0, cy1 - cy0) == (256, 256) and cx0 == (tile.x0 - tile.pad_x0) * 4
    small = rc.choose_tile(40, 30, random.Random(2), scale=2)
    assert small.input_box == (0, 0, 40, 30)  # compared whole


def test_a_re_upscaled_tile_matches_the_delivered_output_and_a_fake_does_not(tmp_path):
    photo = np.random.default_rng(4).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(photo).resize((140, 100), Image.Resampling.BICUBIC))
    source = tmp_path / "photo.png"
    Image.fromarray(photo).save(source)
    inputs = {"photo.png": source}
    delivered = get_runner("upscale").run({"image": "photo.png", "scale": 2, "model": "lanczos"},
                                          inputs, tmp_path / "delivered").outputs[0]
    rc.check_output_file(delivered, fmt="PNG", expected_size=rc.upscaled_size((140, 100), 2),
                         name=rc.upscale_output_names("photo.png", 2)[0])
    tile = rc.choose_tile(140, 100, random.Random(9), scale=2, size=48)
    cut = rc.cut_tile(source, tile, tmp_path / "cut.png")
    result = get_runner("verify").run({"kind": "upscale", "image": "cut.png", "scale": 2, "model": "lanczos"},
                                      {"cut.png": cut}, tmp_path / "verify")
    assert [p.name for p in result.outputs] == ["tile.png"]
    score = rc.compare_tile(delivered, result.outputs[0], tile)
    assert rc.tile_holds(score), score
    blurred = tmp_path / "blurred.png"
    Image.open(source).resize((140, 100)).resize((280, 200), Image.Resampling.NEAREST).save(blurred)
    assert not rc.tile_holds(rc.compare_tile(blurred, result.outputs[0], tile))
