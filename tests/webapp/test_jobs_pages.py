"""The jobs pages: list, new-job forms with per-field errors, live detail, actions, downloads, scoping."""

import io
import re
import zipfile

import pytest

from webapp.extensions import db
from webapp.models import Job, Task, TaskStatus

from .blend_fixture import FAKE_BLEND, finish_task, image_bytes


@pytest.fixture
def creator(auth, clock):
    auth.signup()
    return auth


def render_form(**overrides):
    data = {"render-name": "Shot 010", "render-frame_start": "1", "render-frame_end": "3",
            "render-frame_step": "1", "render-chunk": "1", "render-engine": "CYCLES", "render-samples": "64",
            "render-resolution_percent": "100", "render-format": "PNG", "render-device": "any",
            "render-priority": "0", "render-max_price": "",
            "render-blend": (io.BytesIO(FAKE_BLEND), "shot.blend")}
    data.update(overrides)
    return data


def submit(client, **overrides):
    return client.post("/jobs/new/render", data=render_form(**overrides), content_type="multipart/form-data")


def job_id_of(response) -> int:
    return int(re.search(r"/jobs/(\d+)$", response.headers["Location"]).group(1))


def test_pages_need_a_login(client):
    for url in ("/jobs", "/jobs/new", "/jobs/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_new_job_page_has_both_forms(client, creator):
    page = client.get("/jobs/new").get_data(as_text=True)
    assert 'action="/jobs/new/render"' in page and 'action="/jobs/new/upscale"' in page
    assert page.count('enctype="multipart/form-data"') == 2
    assert 'name="render-blend"' in page and 'name="upscale-images"' in page and "multiple" in page
    assert "Real-ESRGAN x4plus" in page and "Lanczos" in page and "OpenEXR" in page
    assert "$0.6250" in page  # the default max price: average bid + 25%


def test_submitting_a_render_job_redirects_to_its_page(client, creator):
    response = submit(client)
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Shot 010" in page and "3 task(s) queued" in page
    assert page.count('id="task-') == 3 and "Frame 2" in page
    assert 'hx-trigger="every 2s"' in page  # live while queued


def test_bad_fields_get_messages_next_to_them_and_keep_the_values(client, creator):
    response = submit(client, **{"render-frame_start": "30", "render-frame_end": "20", "render-max_price": "-1",
                                 "render-name": "Keep me", "render-blend": (io.BytesIO(b"notes " * 40), "a.blend")})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "the range is reversed" in page and "more than zero" in page and "not a Blender file" in page
    assert 'value="Keep me"' in page and 'value="30"' in page and 'value="-1"' in page
    assert 'aria-invalid="true"' in page
    with client.application.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Job)).scalar_one() == 0


def test_the_form_holds_a_budget_from_the_credit_and_says_when_there_is_not_enough(client, creator):
    app = client.application
    assert app.test_cli_runner().invoke(args=["credit", "ada@example.com", "10"]).exit_code == 0
    refused = submit(client, **{"render-budget": "25.00"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "more than your available credit of $10.00" in page
    assert 'value="25.00"' in page  # kept, to correct
    accepted = submit(client, **{"render-budget": "4.00"})
    assert accepted.status_code == 302
    with app.app_context():
        job = db.session.get(Job, job_id_of(accepted))
        assert job.budget_micros == 4_000_000
    assert "$6.00" in client.get("/spend").get_data(as_text=True)  # what is still available


def test_not_a_blend_is_a_form_error(client, creator):
    response = submit(client, **{"render-blend": (io.BytesIO(b"hello\n" * 40), "notes.blend")})
    assert response.status_code == 400
    assert "not a Blender file" in response.get_data(as_text=True)
    response = submit(client, **{"render-blend": (io.BytesIO(b""), "")})
    assert response.status_code == 400 and "Upload the .blend file" in response.get_data(as_text=True)


def test_non_numeric_input_is_a_form_error_not_a_500(client, creator):
    response = submit(client, **{"render-samples": "lots"})
    assert response.status_code == 400 and "Not a valid integer value" in response.get_data(as_text=True)


def test_upscale_form_with_images_and_with_a_bad_file(client, creator):
    data = {"upscale-name": "Stills", "upscale-scale": "2", "upscale-model": "realesrgan-x4plus",
            "upscale-priority": "0", "upscale-max_price": "1.5",
            "upscale-images": [(io.BytesIO(image_bytes()), "a.png"), (io.BytesIO(image_bytes("JPEG")), "b.jpg")]}
    response = client.post("/jobs/new/upscale", data=data, content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Real-ESRGAN x2" in page and "a.png" in page and "b.jpg" in page and "$1.5000" in page
    data["upscale-images"] = [(io.BytesIO(b"text"), "c.png")]
    response = client.post("/jobs/new/upscale", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "not a readable PNG, JPEG or WebP image" in page and 'value="Stills"' in page


def test_job_list_shows_status_progress_and_cost(client, creator):
    job_id = job_id_of(submit(client))
    with client.application.app_context():
        task = db.session.execute(db.select(Task).where(Task.job_id == job_id, Task.seq == 1)).scalar_one()
        finish_task(task, {"frame_0001.png": image_bytes()}, reward_micros=125_000)
        db.session.commit()
    page = client.get("/jobs").get_data(as_text=True)
    assert "Shot 010" in page and "Blender · Cycles" in page and "badge-queued" in page
    assert "33%" in page and "$0.1250" in page and "1/3" in page
    assert 'hx-trigger="every 3s"' in page
    fragment = client.get("/jobs", headers={"HX-Request": "true"})
    assert "<html" not in fragment.get_data(as_text=True) and "Shot 010" in fragment.get_data(as_text=True)
    assert "HX-Request" in fragment.headers["Vary"]
    assert "No completed jobs" in client.get("/jobs?status=completed").get_data(as_text=True)


def test_detail_fragment_stops_polling_once_the_job_is_done(client, creator):
    job_id = job_id_of(submit(client))
    fragment = client.get(f"/jobs/{job_id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.startswith('{#') is False and 'id="job-live"' in fragment and "every 2s" in fragment
    with client.application.app_context():
        for task in db.session.execute(db.select(Task).where(Task.job_id == job_id)).scalars():
            finish_task(task, {f"frame_{task.seq:04d}.png": image_bytes(color=(task.seq, 0, 0))})
        from webapp.services import dispatch
        dispatch.roll_up_status(db.session.get(Job, job_id))
        db.session.commit()
    fragment = client.get(f"/jobs/{job_id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in fragment and "badge-completed" in fragment
    assert "Download all (zip)" in fragment and fragment.count("/thumb/") == 3


def test_cancel_and_requeue_buttons(client, creator):
    job_id = job_id_of(submit(client))
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'action="/jobs/{job_id}/cancel"' in page and "/requeue" not in page
    with client.application.app_context():
        task = db.session.execute(db.select(Task).where(Task.job_id == job_id, Task.seq == 1)).scalar_one()
        task.status = TaskStatus.FAILED
        db.session.commit()
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Requeue 1 failed task" in page
    response = client.post(f"/jobs/{job_id}/requeue", follow_redirects=True)
    assert "1 failed task(s) back in the queue" in response.get_data(as_text=True)
    response = client.post(f"/jobs/{job_id}/cancel", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Job canceled" in page and "badge-canceled" in page and "hx-trigger" not in page
    response = client.post(f"/jobs/{job_id}/cancel", follow_redirects=True)
    assert "already canceled" in response.get_data(as_text=True)


def test_downloads_zip_thumbnail_and_single_output(client, creator):
    job_id = job_id_of(submit(client))
    frame = image_bytes(size=(600, 300))
    with client.application.app_context():
        task = db.session.execute(db.select(Task).where(Task.job_id == job_id, Task.seq == 1)).scalar_one()
        finish_task(task, {"frame_0001.png": frame})
        db.session.commit()
        task_id = task.id
    response = client.get(f"/jobs/{job_id}/outputs.zip")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    assert zipfile.ZipFile(io.BytesIO(response.get_data())).read("frame_0001.png") == frame
    thumb = client.get(f"/jobs/{job_id}/thumb/{task_id}/frame_0001.png")
    assert thumb.status_code == 200 and thumb.mimetype in ("image/jpeg", "image/png")
    assert "private" in thumb.headers["Cache-Control"]
    from PIL import Image
    with Image.open(io.BytesIO(thumb.get_data())) as img:
        assert max(img.size) == 256
    one = client.get(f"/jobs/{job_id}/outputs/{task_id}/frame_0001.png")
    assert one.status_code == 200 and one.get_data() == frame
    assert client.get(f"/jobs/{job_id}/outputs/{task_id}/missing.png").status_code == 404


def test_someone_elses_job_pages_are_404(app, client, creator):
    job_id = job_id_of(submit(client))
    with app.app_context():
        task_id = db.session.execute(db.select(Task.id).where(Task.job_id == job_id, Task.seq == 1)).scalar_one()
    creator.logout()
    creator.signup("bob@example.com")
    for url in (f"/jobs/{job_id}", f"/jobs/{job_id}/outputs.zip", f"/jobs/{job_id}/thumb/{task_id}/frame_0001.png",
                f"/jobs/{job_id}/outputs/{task_id}/frame_0001.png"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert client.post(f"/jobs/{job_id}/requeue").status_code == 404
    assert "Shot 010" not in client.get("/jobs").get_data(as_text=True)
