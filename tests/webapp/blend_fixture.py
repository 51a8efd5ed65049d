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
