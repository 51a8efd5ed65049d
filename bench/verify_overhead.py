"""Measures what spot checks add to a job's compute at the default sampling policy: real Blender
renders of a frame and of a check side by side, times the share of tasks the policy checks.

    .venv/bin/python bench/verify_overhead.py            # three settings, 5 runs each (~4 min here)
    .venv/bin/python bench/verify_overhead.py --quick    # two cheap settings, 2 runs each (~1 min)
    .venv/bin/python bench/verify_overhead.py --long     # four settings up to 1280x720, 5 runs each

1. Cost of a check. One scene of 12 subdivided objects (metal, glass, plastic), three lights and a
   floor, saved at 1280x720, rendered at a few resolution %/samples settings. A frame is rendered
   the way the render worker does (BlenderRunner, its argv); a check the way the verify worker does
   (VerifyRunner: CROPS_PER_CHECK crops of CROP_FRACTION of the frame, chosen by
   result_checks.choose_crops, one Blender run). A third run loads the scene and exits without
   rendering (the render argv without its `-f`): Blender's start and the .blend load, the part of a
   check that does not shrink with the crop. Each is the median of a few runs, interleaved so that
   load on the shared machine hits all three alike; each run is the worker's compute_seconds.
2. Share of tasks checked. Seeded simulations of honest networks using
   verification.check_probability itself: a job's tasks (one frame each, the default chunk) dealt
   at random over workers that are all new, every check passing; the verdict is known before the
   worker's next result (and, as a sensitivity row, one result later). Plus the long-run rate of an
   established worker.
3. Overhead = share checked x (check seconds / frame seconds), per setting and network.

The check/frame ratio is fixed cost plus pixels: a check pays Blender's start and scene load once
and the per-render setup (sync, BVH) once per crop, but path-traces only 2 x 1/16 = 1/8 of the
pixels. The dearer the frame, the closer the ratio falls to 1/8 (12.5%); tiny frames, like the
calibration bench's, are all fixed cost and a check there costs more than the frame itself.

Measured here (2 shared cores, Debian Blender 3.4.1, Cycles on the CPU, no denoiser; default run,
4m14s, while other sessions kept the load average at 2..7, so single wall times scattered by up to
3x; the medians agree with the CPU-second ratios within a few points):

    setting           frame s  check s  load s  setup s  check/frame  (CPU s)  fixed share of check
    320x180 16 spp       4.28     2.86    1.19     0.69         0.67     0.63         89%
    512x288 32 spp      10.57     2.76    0.79     0.40         0.26     0.29         58%
    640x360 64 spp      17.25     2.71    0.65     0.00         0.16     0.18         24%
    (load: Blender start + .blend load, once per check; setup: sync + BVH, once per crop, estimated
    from the two equations; a 1 min frame at the last one's fixed costs -> 0.13, 10 min -> 0.126)

    share of tasks checked, 200 seeded jobs:    4 workers  16 workers  64 workers
    50 tasks                                        0.508       0.967       1.000
    200 tasks                                       0.219       0.508       0.961
    1000 tasks                                      0.093       0.191       0.437
    verdicts one result late: +0.000..0.006; an established worker: 0.0496 (the 5% floor,
    reached after 186 results on average)

    overhead      50/4  50/16  50/64  200/4  200/16  200/64  1000/4  1000/16  1000/64  estab.
    320x180 16    .340   .646   .669   .146    .340    .643    .062     .128     .292   .0332
    512x288 32    .133   .252   .261   .057    .133    .251    .024     .050     .114   .0130
    640x360 64    .080   .152   .157   .034    .080    .151    .015     .030     .069   .0078
    1/8 pixels    .064   .121   .125   .027    .063    .120    .012     .024     .055   .0062

Headline, default policy (first 5 of a worker always, then 1/n to a 5% floor; 2 crops of 1/16),
on the 17 s frame: an established worker's results cost 0.78% extra compute, tending to 0.62%
(5% x 1/8) as frames grow; a 200-task job on 16 new workers 8.0%, under 10%. Over 10% are the
jobs that give each new worker only ~3 tasks (50/16, 50/64, 200/64): the "first 5 always" rule
checks nearly all of them, and at these crops even the pixels alone (1/8 of a frame) make 12%.
Cheap frames are dearer to check (13% of a 200/16 job at 10 s frames, 34% at 4 s) because the
scene load and per-crop setup are most of a check.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tray_client.runners import get_runner  # noqa: E402
from tray_client.runners.base import run_process  # noqa: E402
from tray_client.runners.blender import blender_env, blender_version, build_argv, find_blender  # noqa: E402
from webapp.services import result_checks  # noqa: E402
from webapp.services.verification import (CHECK_FIRST_TASKS, CHECK_FLOOR, CROP_FRACTION,  # noqa: E402
                                          CROPS_PER_CHECK, check_probability)

SCENE_SIZE = (1280, 720)

# Heavier than the calibration bench's scenes on purpose: subdivided meshes, glossy, metal and glass
# materials, three lights. Its BVH build and sync are part of a real check's fixed cost.
SCENE = r"""
import bpy, math, random, sys
out, w, h = sys.argv[sys.argv.index('--') + 1:]
rnd = random.Random(12)
bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = int(w), int(h), 100
s.cycles.seed = 12
adds = [bpy.ops.mesh.primitive_monkey_add, bpy.ops.mesh.primitive_uv_sphere_add,
        bpy.ops.mesh.primitive_torus_add, bpy.ops.mesh.primitive_cube_add]
for k in range(12):
    adds[k % 4](location=((k % 4) * 2.2 - 3.3, (k // 4) * 2.2 - 2.2, 0))
    obj = bpy.context.object
    sub = obj.modifiers.new('sub', 'SUBSURF'); sub.levels = sub.render_levels = 2
    bpy.ops.object.shade_smooth()
    mat = bpy.data.materials.new('m%d' % k); mat.use_nodes = True
    bsdf = mat.node_tree.nodes['Principled BSDF']
    bsdf.inputs['Base Color'].default_value = (rnd.random(), rnd.random(), rnd.random(), 1)
    bsdf.inputs['Metallic'].default_value = float(k % 3 == 0)
    bsdf.inputs['Roughness'].default_value = rnd.uniform(0.1, 0.6)
    if k % 5 == 4:
        bsdf.inputs['Transmission'].default_value = 1.0
    obj.data.materials.append(mat)
bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, -1))
cam = bpy.data.objects.new('Camera', bpy.data.cameras.new('Camera'))
s.collection.objects.link(cam); s.camera = cam
cam.location = (0, -11, 6); cam.rotation_euler = (math.radians(62), 0, 0)
for kind, energy, loc in [('AREA', 600, (-4, -4, 6)), ('POINT', 800, (5, -2, 4)), ('SPOT', 2000, (0, 6, 7))]:
    lamp = bpy.data.objects.new(kind, bpy.data.lights.new(kind, kind))
    lamp.data.energy = energy; lamp.location = loc; s.collection.objects.link(lamp)
    lamp.constraints.new('TRACK_TO').target = s.collection.objects[0]
s.world = bpy.data.worlds.new('W'); s.world.color = (0.05, 0.06, 0.08)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


@dataclass(frozen=True)
class Setting:
    percent: int  # the job's resolution %, of SCENE_SIZE
    samples: int

    @property
    def size(self) -> tuple[int, int]:
        # The size the portal expects and cuts its crops for (webapp/services/verification.issue_check).
        settings = result_checks.RenderSettings(scene="Scene", resolution_x=SCENE_SIZE[0],
                                                resolution_y=SCENE_SIZE[1], percent=100,
                                                engine="CYCLES", frame_start=1, frame_end=1)
        return result_checks.expected_render_size(settings, self.percent)

    @property
    def name(self) -> str:
        return f"{self.size[0]}x{self.size[1]} {self.samples} spp"


QUICK = [Setting(25, 16), Setting(40, 32)]
DEFAULT = [Setting(25, 16), Setting(40, 32), Setting(50, 64)]
LONG = [*DEFAULT, Setting(100, 32)]
NETWORKS = [(tasks, workers) for tasks in (50, 200, 1000) for workers in (4, 16, 64)]
HEADLINE = (200, 16)  # the network the headline quotes; the setting is the dearest one measured


@dataclass
class Cost:
    setting: Setting
    frame: float  # median wall seconds
    check: float
    load: float  # Blender's start and scene load, no render
    frame_cpu: float  # median CPU seconds (user + system) of the same runs: steadier on a busy machine
    check_cpu: float

    @property
    def ratio(self) -> float:
        return self.check / self.frame

    @property
    def render_setup(self) -> float:
        """Per-render fixed cost (sync, BVH build), from frame = load + S + P and check =
        load + crops*S + P*pixel_share: both shrink together only if S is zero."""
        share = CROPS_PER_CHECK * CROP_FRACTION
        frame_render, check_render = self.frame - self.load, self.check - self.load
        return max(0.0, (check_render - share * frame_render) / (CROPS_PER_CHECK - share))

    @property
    def fixed_share_of_check(self) -> float:
        return min(1.0, (self.load + CROPS_PER_CHECK * self.render_setup) / self.check)

    def ratio_at(self, frame_seconds: float) -> float:
        """The check/frame ratio this scene's fixed costs predict for a frame of `frame_seconds`."""
        setup = self.load + self.render_setup
        pixels = max(0.0, frame_seconds - setup)
        check = self.load + CROPS_PER_CHECK * self.render_setup + CROPS_PER_CHECK * CROP_FRACTION * pixels
        return check / frame_seconds


# -- 1. what a frame and a check cost ------------------------------------------------------------

def measure(blender: Path, blend: Path, folder: Path, setting: Setting, runs: int, rng: random.Random) -> Cost:
    params = {"frames": [1], "engine": "CYCLES", "samples": setting.samples,
              "resolution_percent": setting.percent, "format": "PNG", "device": "any"}
    inputs = {blend.name: blend}
    frames, checks, loads, frame_cpu, check_cpu = [], [], [], [], []
    for run in range(runs):
        # Fresh crops each run: a window over the floor renders faster than one over glass.
        crops = result_checks.choose_crops(*setting.size, rng, count=CROPS_PER_CHECK, fraction=CROP_FRACTION)
        check = {"kind": "render", "blend": blend.name, "frame": 1, "engine": "CYCLES",
                 "samples": setting.samples, "resolution_percent": setting.percent, "format": "PNG",
                 "device": "any", "crops": [c.border for c in crops]}
        loads.append(load_only(blender, blend, folder / "load", params))
        cpu = children_cpu()
        frames.append(get_runner("render").run({**params, "blend": blend.name}, inputs,
                                               folder / "frame").compute_seconds)
        frame_cpu.append(children_cpu() - cpu)
        cpu = children_cpu()
        checks.append(get_runner("verify").run(check, inputs, folder / "check").compute_seconds)
        check_cpu.append(children_cpu() - cpu)
        print(f"  {setting.name}: run {run + 1}/{runs}  frame {frames[-1]:.2f}s ({frame_cpu[-1]:.1f} CPU s)  "
              f"check {checks[-1]:.2f}s ({check_cpu[-1]:.1f} CPU s)  load {loads[-1]:.2f}s", flush=True)
    median = statistics.median
    return Cost(setting, median(frames), median(checks), median(loads), median(frame_cpu), median(check_cpu))


def children_cpu() -> float:
    """CPU seconds of all finished child processes so far: the runners wait for Blender, so a
    difference around one run is that run's Blender."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_only(blender: Path, blend: Path, workdir: Path, params: dict) -> float:
    """The render worker's command without its `-f`: Blender starts, loads the scene, applies the
    job's settings and quits, rendering nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = build_argv(blender, blend, workdir, params)
    at = argv.index("-f")
    del argv[at:at + 2]
    started = time.monotonic()
    returncode, tail, _ = run_process(argv, env=blender_env(workdir), cwd=workdir)
    if returncode != 0:
        raise RuntimeError(f"Blender failed to load the scene:\n{tail}")
    return time.monotonic() - started


# -- 2. what share of tasks the policy checks ----------------------------------------------------

def simulate_job(tasks: int, workers: int, rng: random.Random, lag: int = 0) -> int:
    """Checks one job of `tasks` one-frame tasks costs on `workers` new honest workers.

    Each task goes to a random worker (speeds differ; who claims next is anyone's guess). A check's
    pass counts in the worker's streak `lag` results later: 0 = decided before its next result."""
    completed = [0] * workers
    streak = [0] * workers
    undecided: list[list[int]] = [[] for _ in range(workers)]  # results left until each pass counts
    checks = 0
    for _ in range(tasks):
        w = rng.randrange(workers)
        if rng.random() < check_probability(completed[w], streak[w]):
            checks += 1
            undecided[w].append(lag)
        completed[w] += 1
        # One more result delivered: verdicts due by now join the streak.
        due = [left for left in undecided[w] if left <= 0]
        streak[w] += len(due)
        undecided[w] = [left - 1 for left in undecided[w] if left > 0]
    return checks


def check_share(tasks: int, workers: int, trials: int, seed: int, lag: int = 0) -> float:
    rng = random.Random(seed)
    return sum(simulate_job(tasks, workers, rng, lag) for _ in range(trials)) / (trials * tasks)


def established_rate(tasks: int, seed: int) -> float:
    """One worker's check rate from its 1000th result on, long after its record reached the floor."""
    rng = random.Random(seed)
    streak = checks = 0
    for done in range(tasks):
        checked = rng.random() < check_probability(done, streak)
        streak += checked
        checks += checked and done >= 1000
    return checks / (tasks - 1000)


def results_to_floor(workers: int, seed: int) -> float:
    """Mean number of results a new honest worker delivers before its check rate is the floor."""
    rng = random.Random(seed)
    total = 0
    for _ in range(workers):
        done = streak = 0
        while check_probability(done, streak) > CHECK_FLOOR:
            streak += rng.random() < check_probability(done, streak)
            done += 1
        total += done
    return total / workers


# -- the report ----------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="two cheap settings, 2 runs each")
    size.add_argument("--long", action="store_true", help="adds a full 1280x720 frame, 5 runs each")
    parser.add_argument("--runs", type=int, help="runs per measurement (median); default 5, 2 with --quick")
    parser.add_argument("--trials", type=int, default=200, help="simulated jobs per network")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="keep the scene and renders in this folder")
    args = parser.parse_args()
    settings = QUICK if args.quick else LONG if args.long else DEFAULT
    runs = args.runs or (2 if args.quick else 5)

    blender = find_blender()
    if blender is None:
        print("Blender not found: apt-get install blender", file=sys.stderr)
        return 2
    started = time.monotonic()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pictor-overhead-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        blend = folder / "scene.blend"
        subprocess.run([str(blender), "-b", "--factory-startup", "--python-expr", SCENE, "--", str(blend),
                        *map(str, SCENE_SIZE)], check=True, capture_output=True, timeout=300)
        print(f"Blender {blender_version(blender)}, Cycles CPU; policy: first {CHECK_FIRST_TASKS} always, "
              f"then 1/n to {CHECK_FLOOR:.0%}; {CROPS_PER_CHECK} crops of {CROP_FRACTION:.4f} per check")
        rng = random.Random(args.seed)
        costs = [measure(blender, blend, folder, s, runs, rng) for s in settings]
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"\n1. Cost of a check (median of {runs}, compute seconds as the worker reports them)")
    print(f"{'setting':<22}{'frame s':>8}{'check s':>9}{'load s':>8}{'setup s':>9}{'check/frame':>13}"
          f"{'(CPU s)':>9}{'fixed share of check':>22}")
    for c in costs:
        print(f"{c.setting.name:<22}{c.frame:>8.2f}{c.check:>9.2f}{c.load:>8.2f}{c.render_setup:>9.2f}"
              f"{c.ratio:>13.2f}{c.check_cpu / c.frame_cpu:>9.2f}{c.fixed_share_of_check:>21.0%}")
    print("load = Blender start + .blend load, paid once per check; setup = sync + BVH per render, paid "
          f"once per crop;\nthe rest is path tracing, of which a check does {CROPS_PER_CHECK * CROP_FRACTION:.1%}.")
    dearest = costs[-1]
    print(f"With {dearest.setting.name}'s fixed costs, a frame of 1 min would see a check cost "
          f"{dearest.ratio_at(60):.2f} of it, 10 min {dearest.ratio_at(600):.3f}, "
          f"the limit is {CROPS_PER_CHECK * CROP_FRACTION:.3f}.")

    print(f"\n2. Share of tasks checked (mean of {args.trials} seeded jobs, honest workers, all new)")
    worker_counts = sorted({w for _, w in NETWORKS})
    print(f"{'':<16}" + "".join(f"{f'{w} workers':>13}" for w in worker_counts))
    shares, late = {}, {}
    for tasks in sorted({t for t, _ in NETWORKS}):
        row = ""
        for workers in worker_counts:
            shares[tasks, workers] = check_share(tasks, workers, args.trials, args.seed)
            late[tasks, workers] = check_share(tasks, workers, args.trials, args.seed, lag=1)
            row += f"{shares[tasks, workers]:>13.3f}"
        print(f"{f'{tasks} tasks':<16}{row}")
    print(f"{'verdict 1 late':<16}" + "  ".join(
        f"{t}/{w}: {late[t, w]:.3f}" for t, w in NETWORKS))
    rate = established_rate(200_000, args.seed)
    print(f"established worker: {rate:.4f} of its results checked (floor {CHECK_FLOOR:.0%}, reached after "
          f"{results_to_floor(1000, args.seed):.0f} results on average)")

    print("\n3. Overhead = share checked x check/frame (extra compute / the job's compute)")
    header = "".join(f"{f'{t}/{w}':>9}" for t, w in NETWORKS) + f"{'estab.':>9}"
    print(f"{'setting':<22}{header}")
    for c in costs:
        print(f"{c.setting.name:<22}" + "".join(f"{shares[n] * c.ratio:>9.3f}" for n in NETWORKS)
              + f"{rate * c.ratio:>9.4f}")
    print(f"{'1/8 of pixels, limit':<22}" + "".join(f"{shares[n] / 8:>9.3f}" for n in NETWORKS) + f"{rate / 8:>9.4f}")

    head = shares[HEADLINE] * dearest.ratio
    verdict = "under" if head < 0.10 else "OVER"
    print(f"\nHeadline (default policy, {dearest.setting.name}, {dearest.frame:.1f} s frames): "
          f"established worker {rate * dearest.ratio:.2%} of the job's compute; a {HEADLINE[0]}-task job "
          f"on {HEADLINE[1]} new workers {head:.1%} ({verdict} 10%).")
    over = [f"{t}/{w}" for t, w in NETWORKS if shares[t, w] * dearest.ratio >= 0.10]
    print(f"Networks over 10% at this setting (tasks/new workers): {', '.join(over) or 'none'}; "
          f"there the first {CHECK_FIRST_TASKS} always-checked tasks of each worker dominate.")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
