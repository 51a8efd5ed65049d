"""The results zip's layout is stable: a file is at the same path whichever tasks have completed when it is downloaded."""

import io
import zipfile

from tests.webapp.blend_fixture import FAKE_BLEND, finish_task, image_bytes
from webapp.extensions import db
from webapp.services import accounts, jobs, outputs


def names(job) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(b"".join(outputs.stream_outputs_zip(job)))).namelist())


def test_a_name_two_tasks_will_deliver_is_prefixed_from_the_first_download(ctx, clock):
    owner = accounts.sign_up("creator@example.com", "correct horse battery")
    job = jobs.submit_upscale_job(owner, {"type": "upscale", "name": "Stills"},
                                  [("a.png", io.BytesIO(image_bytes())), ("a.jpg", io.BytesIO(image_bytes("JPEG"))),
                                   ("b.png", io.BytesIO(image_bytes(color=(9, 9, 9))))])
    first, second, third = sorted(job.tasks, key=lambda t: t.seq)
    finish_task(first, {"a_x4.png": b"one"})
    finish_task(third, {"b_x4.png": b"three"})
    db.session.commit()
    # a.jpg's task has not completed, yet a.png's output is already where it will stay.
    assert names(job) == ["b_x4.png", f"task-{first.seq:04d}/a_x4.png"]
    finish_task(second, {"a_x4.png": b"two"})
    db.session.commit()
    assert names(job) == ["b_x4.png", f"task-{first.seq:04d}/a_x4.png", f"task-{second.seq:04d}/a_x4.png"]


def test_render_frames_sit_at_the_top_level(ctx, clock):
    owner = accounts.sign_up("creator@example.com", "correct horse battery")
    job = jobs.submit_render_job(owner, {"type": "render", "name": "Shot", "frame_start": 9, "frame_end": 11,
                                         "format": "OPEN_EXR"}, io.BytesIO(FAKE_BLEND), "scene.blend")
    for task in job.tasks[:2]:
        frame = task.params["frames"][0]
        finish_task(task, {f"frame_{frame:04d}.exr": b"x%d" % frame})
    db.session.commit()
    assert names(job) == ["frame_0009.exr", "frame_0010.exr"]
