"""Test data for jobs: real .blend files made by Blender (plain and compressed), images, zips, outputs."""

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

_made: dict[str, dict[str, Path]] = {}

SCRIPT = """
import bpy, sys
out = sys.argv[sys.argv.index('--') + 1]
bpy.context.scene.frame_end = 3
bpy.ops.wm.save_as_mainfile(filepath=out + '/scene.blend', compress=False)
bpy.ops.wm.save_as_mainfile(filepath=out + '/scene-compressed.blend', compress=True)
"""

# The 12-byte header of a Blender 3.4 file and some filler: enough for header checks and API tests.
FAKE_BLEND = b"BLENDER-v304" + b"REND" + bytes(200)


def make_blends(directory: Path) -> dict[str, Path] | None:
    """{'plain': path, 'compressed': path} saved by Blender (3.x compresses with zstd), or None without it."""
    key = str(directory)
    if key in _made:
        return _made[key]
    blender = shutil.which("blender")
    if blender is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([blender, "-b", "--factory-startup", "--python-expr", SCRIPT, "--", str(directory)],
                   check=True, capture_output=True, timeout=120)
    _made[key] = {"plain": directory / "scene.blend", "compressed": directory / "scene-compressed.blend"}
    return _made[key]


# A project as artists make them: shot.blend (frames 1-4 at 200x150, 50%, Cycles 8 samples, PNG, two
# cameras) whose plane shows textures/green.png through an emission shader, and a library linked from
# lib/props.blend. A missing texture renders magenta, so a frame's colour says whether it was found.
PROJECT_SCRIPT = """
import bpy, sys, os
out = sys.argv[sys.argv.index('--') + 1]
os.makedirs(out + '/textures', exist_ok=True)
os.makedirs(out + '/lib', exist_ok=True)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add(size=0.2, location=(3, 3, 0))
bpy.context.object.name = 'Prop'
bpy.ops.wm.save_as_mainfile(filepath=out + '/lib/props.blend', compress=False)
bpy.ops.wm.read_factory_settings(use_empty=True)
img = bpy.data.images.new('green', 8, 8)
img.pixels = [0.0, 1.0, 0.0, 1.0] * 64
img.filepath_raw = out + '/textures/green.png'
img.file_format = 'PNG'
img.save()
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = 'CYCLES'
scene.render.resolution_x, scene.render.resolution_y = 200, 150
scene.render.resolution_percentage = 50
scene.frame_start, scene.frame_end, scene.frame_step = 1, 4, 1
scene.cycles.samples = 8
scene.render.image_settings.file_format = 'PNG'
bpy.ops.mesh.primitive_plane_add(size=20)
plane = bpy.context.object
mat = bpy.data.materials.new('tex')
mat.use_nodes = True
nodes = mat.node_tree.nodes
tex = nodes.new('ShaderNodeTexImage')
tex.image = bpy.data.images.load(out + '/textures/green.png')
emit = nodes.new('ShaderNodeEmission')
mat.node_tree.links.new(tex.outputs['Color'], emit.inputs['Color'])
mat.node_tree.links.new(emit.outputs['Emission'], nodes['Material Output'].inputs['Surface'])
plane.data.materials.append(mat)
for name, z in (('Main', 5), ('Side', 8)):
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    cam.location = (0, 0, z)
scene.camera = bpy.data.objects['Main']
with bpy.data.libraries.load(out + '/lib/props.blend', link=True, relative=True) as (src, dst):
    dst.objects = ['Prop']
for ob in dst.objects:
    scene.collection.objects.link(ob)
bpy.ops.wm.save_as_mainfile(filepath=out + '/shot.blend', compress=True, relative_remap=True)
"""


def make_project(directory: Path) -> Path | None:
    """The project folder above, saved by Blender (shot.blend is compressed), or None without Blender."""
    key = "project:" + str(directory)
    if key in _made:
        return _made[key]["root"]
    blender = shutil.which("blender")
    if blender is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([blender, "-b", "--factory-startup", "--python-expr", PROJECT_SCRIPT, "--", str(directory)],
                   check=True, capture_output=True, timeout=120)
    _made[key] = {"root": directory}
    return directory


def project_zip(root: Path, leave_out=(), extra: dict[str, bytes] | None = None, prefix: str = "") -> bytes:
    """The project folder as a zip (files at their relative paths), without `leave_out`, plus `extra`."""
    members = {prefix + p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
               if p.is_file() and p.relative_to(root).as_posix() not in leave_out}
    members.update(extra or {})
    return zip_bytes(members)


def image_bytes(fmt: str = "PNG", size=(8, 8), color=(200, 40, 40)) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED, symlinks=()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if name in symlinks:
                info.external_attr = (0o120777 << 16)
            zf.writestr(info, data)
    return out.getvalue()


def finish_task(task, outputs: dict[str, bytes], status="completed", reward_micros=None):
    """Mark a task done the way the dispatcher would: outputs stored, status set (caller commits)."""
    from webapp.extensions import db
    from webapp.models import LedgerEntry, LedgerKind, TaskOutput, TaskStatus
    from webapp.services import storage
    task.status = TaskStatus(status)
    task.progress = 1.0 if status == "completed" else task.progress
    for name, data in outputs.items():
        stored = storage.put_bytes(data)
        db.session.flush()
        db.session.add(TaskOutput(task=task, name=name, sha256=stored.sha256, size=stored.size))
    if reward_micros is not None:
        task.reward_micros = reward_micros
        db.session.add(LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=reward_micros,
                                   job_id=task.job_id, task_id=task.id))
