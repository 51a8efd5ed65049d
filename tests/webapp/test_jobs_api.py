"""The creator API: submit jobs as multipart, follow, cancel, requeue, download outputs; owner scoping."""

import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.conftest import create_token
from webapp.api import openapi
from webapp.extensions import db
from webapp.models import Job, JobInput, StoredFile, Task, TaskStatus

from .blend_fixture import FAKE_BLEND, finish_task, image_bytes, zip_bytes


def _client(client, token):
    class Api:
        def __getattr__(self, method):
            def call(url, **kw):
                kw["headers"] = {"Authorization": f"Bearer {token}", **kw.get("headers", {})}
                return getattr(client, method)(f"/api/v1{url}", **kw)
            return call
    return Api()


@pytest.fixture
def api(app, client, clock):
    return _client(client, create_token(app, "ada@example.com"))


@pytest.fixture
def other_api(app):
    return _client(app.test_client(), create_token(app, "bob@example.com"))


def submit_render(api, spec=None, blend=FAKE_BLEND, filename="shot.blend"):
    spec = spec or {"type": "render", "name": "Shot 010", "frame_start": 1, "frame_end": 4, "chunk": 2}
    return api.post("/jobs", data={"spec": json.dumps(spec), "blend": (io.BytesIO(blend), filename)},
                    content_type="multipart/form-data")


def rows(app):
    with app.app_context():
        blobs = Path(app.config["STORAGE_DIR"]) / "blobs"
        return ([db.session.execute(db.select(db.func.count()).select_from(m)).scalar_one()
                 for m in (Job, JobInput, Task, StoredFile)],
                sorted(p.name for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else [])


def test_submit_render_job_returns_201_and_the_job(api):
    response = submit_render(api)
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    assert (job["type"], job["status"], job["progress"], job["cost"]) == ("render", "queued", 0.0, "0.000000")
    assert [t["params"]["frames"] for t in job["tasks"]] == [[1, 2], [3, 4]]
    assert job["inputs"][0]["name"] == "shot.blend"
    assert api.get(f"/jobs/{job['id']}").get_json()["tasks"] == job["tasks"]


def test_real_compressed_blend_is_accepted_through_the_api(api, real_blends):
    response = submit_render(api, blend=real_blends["compressed"].read_bytes(), filename="scene.blend")
    assert response.status_code == 201, response.get_json()


def test_spec_can_be_a_json_file_part(api):
    spec = {"type": "upscale", "name": "Stills", "scale": 2}
    response = api.post("/jobs", data={"spec": (io.BytesIO(json.dumps(spec).encode()), "spec.json"),
                                       "images": [(io.BytesIO(image_bytes()), "a.png"),
                                                  (io.BytesIO(image_bytes("JPEG")), "b.jpg")]},
                        content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert [t["params"] for t in job["tasks"]] == [
        {"image": "a.png", "scale": 2, "model": "realesr-animevideov3"},
        {"image": "b.jpg", "scale": 2, "model": "realesr-animevideov3"}]


def test_submit_upscale_archive(api):
    archive = zip_bytes({"in/a.png": image_bytes(), "in/b.webp": image_bytes("WEBP")})
    response = api.post("/jobs", data={"spec": json.dumps({"type": "upscale", "name": "Zip", "model": "lanczos"}),
                                       "archive": (io.BytesIO(archive), "in.zip")},
                        content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["software"] == "Lanczos x4"


@pytest.mark.parametrize("data,code,field", [
    ({}, "missing_spec", None),
    ({"spec": "{not json"}, "invalid_json", None),
    ({"spec": "[1, 2]"}, "invalid_spec", None),
    ({"spec": json.dumps({"type": "video", "name": "x"})}, "invalid_spec", "type"),
    ({"spec": json.dumps({"type": "render", "name": "x", "frame_start": 5, "frame_end": 1}),
      "blend": (io.BytesIO(FAKE_BLEND), "a.blend")}, "invalid_spec", "frame_end"),
    ({"spec": json.dumps({"type": "render", "name": "x", "frame_start": 1, "engine": "OCTANE"}),
      "blend": (io.BytesIO(FAKE_BLEND), "a.blend")}, "invalid_spec", "engine"),
    ({"spec": json.dumps({"type": "render", "name": "x", "frame_start": 1, "max_price": "0"}),
      "blend": (io.BytesIO(FAKE_BLEND), "a.blend")}, "invalid_spec", "max_price"),
    ({"spec": json.dumps({"type": "render", "name": "x", "frame_start": 1})}, "missing_file", "blend"),
    ({"spec": json.dumps({"type": "render", "name": "x", "frame_start": 1}),
      "blend": (io.BytesIO(b"a text file\n" * 50), "a.blend")}, "not_a_blend", "blend"),
    ({"spec": json.dumps({"type": "upscale", "name": "x", "model": "waifu"}),
      "images": (io.BytesIO(image_bytes()), "a.png")}, "invalid_spec", "model"),
    ({"spec": json.dumps({"type": "upscale", "name": "x"}),
      "images": (io.BytesIO(b"not an image"), "a.png")}, "not_an_image", "images"),
    ({"spec": json.dumps({"type": "upscale", "name": "x"}),
      "archive": (io.BytesIO(zip_bytes({"../../evil.png": image_bytes()})), "a.zip")}, "unsafe_archive", "archive"),
    ({"spec": json.dumps({"type": "upscale", "name": "x"}),
      "archive": (io.BytesIO(zip_bytes({"bomb.png": bytes(8 * 1024 * 1024)})), "a.zip")}, "unsafe_archive", "archive"),
])
def test_bad_submissions_get_a_json_4xx_and_store_nothing(app, api, data, code, field):
    before = rows(app)
    response = api.post("/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == code and body["message"]
    if field:
        assert field in body["fields"]
    assert rows(app) == before


def test_list_is_owner_scoped_and_paged(api, other_api):
    for _ in range(3):
        assert submit_render(api).status_code == 201
    assert submit_render(other_api).status_code == 201
    page = api.get("/jobs?per_page=2").get_json()
    assert (page["total"], page["pages"], len(page["items"])) == (3, 2, 2)
    assert "tasks" not in page["items"][0] and page["items"][0]["status"] == "queued"
    assert api.get("/jobs?status=completed").get_json()["total"] == 0
    assert api.get("/jobs?status=bogus").status_code == 400


def test_someone_elses_job_is_404_everywhere(api, other_api):
    job_id = submit_render(api).get_json()["id"]
    for method, url in [("get", f"/jobs/{job_id}"), ("post", f"/jobs/{job_id}/cancel"),
                        ("post", f"/jobs/{job_id}/requeue"), ("get", f"/jobs/{job_id}/outputs.zip"),
                        ("get", f"/jobs/{job_id}/tasks/1/outputs/frame_0001.png"), ("get", "/jobs/99999")]:
        response = getattr(other_api, method)(url)
        assert response.status_code == 404, url
        assert response.get_json()["error"] == "not_found"


def test_requires_a_token(client):
    response = client.get("/api/v1/jobs")
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_cancel_then_cancel_again_is_409(api):
    job_id = submit_render(api).get_json()["id"]
    response = api.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "canceled" and {t["status"] for t in body["tasks"]} == {"canceled"}
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 409


def test_requeue_failed_tasks(app, api):
    job_id = submit_render(api).get_json()["id"]
    assert api.post(f"/jobs/{job_id}/requeue").status_code == 409  # nothing failed yet
    with app.app_context():
        task = db.session.execute(db.select(Task).where(Task.job_id == job_id, Task.seq == 1)).scalar_one()
        task.status = TaskStatus.FAILED
        db.session.commit()
    body = api.post(f"/jobs/{job_id}/requeue").get_json()
    assert body["requeued"] == 1 and {t["status"] for t in body["tasks"]} == {"queued"}


def test_outputs_zip_and_single_output_download(app, api):
    job_id = submit_render(api).get_json()["id"]
    frame = image_bytes(color=(9, 9, 9))
    with app.app_context():
        first, second = db.session.execute(
            db.select(Task).where(Task.job_id == job_id).order_by(Task.seq)).scalars().all()
        finish_task(first, {"frame_0001.png": frame, "frame_0002.png": image_bytes()})
        finish_task(second, {"frame_0003.png": b"unverified"}, status="running")
        db.session.commit()
        first_id, second_id = first.id, second.id
    response = api.get(f"/jobs/{job_id}/outputs.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert sorted(archive.namelist()) == ["frame_0001.png", "frame_0002.png"]
    one = api.get(f"/jobs/{job_id}/tasks/{first_id}/outputs/frame_0001.png")
    assert one.status_code == 200 and one.get_data() == frame
    assert api.get(f"/jobs/{job_id}/tasks/{second_id}/outputs/frame_0003.png").status_code == 404
    job = api.get(f"/jobs/{job_id}").get_json()
    assert job["progress"] == 0.5 and [o["name"] for o in job["tasks"][0]["outputs"]] == ["frame_0001.png",
                                                                                         "frame_0002.png"]


def test_openapi_describes_the_creator_api():
    document = openapi.build_document()
    for path in ("/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/requeue",
                 "/jobs/{job_id}/outputs.zip"):
        assert path in document["paths"], path
    assert "multipart/form-data" in document["paths"]["/jobs"]["post"]["requestBody"]["content"]
    assert "JobSpec" in document["components"]["schemas"]
