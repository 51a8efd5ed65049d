"""OpenEXR frames get real, tone-mapped thumbnails; hostile EXR files get the placeholder, never a 500."""

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.conftest import missing
from tests.webapp.blend_fixture import finish_task
from tests.webapp.dispatch_factories import make_job
from webapp.extensions import db
from webapp.models import Job, JobStatus, Task
from webapp.services import accounts, storage, thumbnails

RENDER = """
import bpy, sys
scene = bpy.context.scene
scene.render.engine = 'BLENDER_WORKBENCH'
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 40, 30, 100
scene.render.film_transparent = True
scene.render.image_settings.file_format = 'OPEN_EXR'
scene.render.filepath = sys.argv[sys.argv.index('--') + 1]
bpy.ops.render.render(write_still=True)
"""


@pytest.fixture(scope="module")
def blender_exr(tmp_path_factory) -> bytes:
    """A 40x30 frame of the default cube, rendered by Blender to OpenEXR with a transparent film."""
    blender = shutil.which("blender")
    if blender is None:
        missing("Blender is not installed (Debian package 'blender')")
    out = tmp_path_factory.mktemp("exr") / "frame_0001.exr"
    subprocess.run([blender, "-b", "--factory-startup", "--python-expr", RENDER, "--", str(out)],
                   check=True, capture_output=True, timeout=120)
    return out.read_bytes()


def claiming_huge_size(exr: bytes) -> bytes:
    """The same file with its header's dataWindow claiming 100,000 x 100,000 pixels."""
    at = exr.index(b"dataWindow\x00box2i\x00") + len(b"dataWindow\x00box2i\x00") + 4
    return exr[:at] + struct.pack("<4i", 0, 0, 99_999, 99_999) + exr[at + 16:]


def test_a_blender_exr_gets_a_tone_mapped_thumbnail(ctx, blender_exr):
    stored = storage.put_bytes(blender_exr)
    db.session.commit()
    data = thumbnails.thumbnail(stored.sha256)
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.size, img.mode) == ("PNG", (40, 30), "RGBA")  # the film's transparency kept
        cube, background = img.getpixel((20, 15)), img.getpixel((1, 1))
    assert cube[3] == 255 and 40 < cube[0] < 230  # the lit grey cube, neither black nor blown out
    assert background[3] == 0
    assert thumbnails.thumbnail(stored.sha256) == data  # cached


def test_tone_mapping_keeps_what_fits_and_rolls_off_highlights():
    ldr = thumbnails.tone_map(np.full((2, 2, 3), 0.5, dtype=np.float32))
    assert ldr[0, 0].tolist() == [188, 188, 188]  # 0.5 linear is sRGB 188, as Blender's Standard view shows it
    hdr = np.zeros((10, 10, 3), dtype=np.float32)
    hdr[..., 0] = np.linspace(0, 16, 100).reshape(10, 10)
    mapped = thumbnails.tone_map(hdr)[..., 0].ravel()
    assert mapped[0] == 0 and np.all(np.diff(mapped.astype(int)) >= 0)  # order kept
    two, eight = mapped[12], mapped[50]  # about 2.0 and 8.0, over a white point of about 16
    assert two < eight < mapped[99] == 255  # highlights above 1.0 roll off instead of one clipped white
    junk = thumbnails.tone_map(np.array([[[np.nan, np.inf, -5.0]]], dtype=np.float32))
    assert junk[0, 0].tolist() == [0, 255, 0]  # NaN and negatives are black, infinity is white


def test_hostile_exrs_get_the_placeholder_not_a_500(app, client, auth, blender_exr):
    files = {"frame_0001.exr": claiming_huge_size(blender_exr), "frame_0002.exr": blender_exr[:len(blender_exr) // 2],
             "frame_0003.exr": b"\x76\x2f\x31\x01" + bytes(range(256)) * 8}
    auth.signup("creator@example.com")
    with app.app_context():
        user = accounts.user_by_email("creator@example.com")
        job_id, task_ids = make_job(owner_id=user.id, tasks=3)
        for task_id, (name, data) in zip(task_ids, files.items()):
            finish_task(db.session.get(Task, task_id), {name: data})
        db.session.get(Job, job_id).status = JobStatus.COMPLETED
        db.session.commit()
    for task_id, name in zip(task_ids, files):
        response = client.get(f"/jobs/{job_id}/thumb/{task_id}/{name}")
        assert response.status_code == 200 and response.mimetype == "image/png"
        with Image.open(io.BytesIO(response.data)) as img:
            assert img.size == (thumbnails.SIZE, thumbnails.SIZE)  # the placeholder
    assert client.get(f"/jobs/{job_id}").status_code == 200
