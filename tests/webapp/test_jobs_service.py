"""The jobs service: spec validation, file checks, splitting, one-transaction submission, roll-up, outputs."""

import gzip
import io
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import T0 as NOW
from webapp import money
from webapp.extensions import db
from webapp.models import Job, JobInput, JobStatus, StoredFile, Task, TaskOutput, TaskStatus, User
from webapp.services import Conflict, NotFound, ServiceError, accounts, dispatch, jobs, outputs, permissions, storage, thumbnails, uploads

from .blend_fixture import FAKE_BLEND, finish_task, image_bytes, zip_bytes


@pytest.fixture
def user(ctx, clock) -> User:
    return accounts.sign_up("creator@example.com", "correct horse battery")


def render_spec(**kw) -> dict:
    return {"type": "render", "name": "Shot 010", "frame_start": 1, "frame_end": 3, **kw}


def upscale_spec(**kw) -> dict:
    return {"type": "upscale", "name": "Stills", **kw}


def render_job(user, spec=None, data=FAKE_BLEND, filename="scene.blend") -> Job:
    return jobs.submit_render_job(user, spec or render_spec(), io.BytesIO(data), filename)


def snapshot(app):
    """Row counts and blob files: what a rejected submission must leave unchanged."""
    counts = {m.__tablename__: db.session.execute(db.select(db.func.count()).select_from(m)).scalar_one()
              for m in (Job, JobInput, Task, StoredFile)}
    blobs = Path(app.config["STORAGE_DIR"]) / "blobs"
    files = sorted(p.name for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    return counts, files


# --- Splitting --------------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,step,chunk,expected", [
    (1, 1, 1, 1, [[1]]),
    (1, 10, 1, 3, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]),
    (0, 10, 5, 1, [[0], [5], [10]]),
    (1, 10, 4, 2, [[1, 5], [9]]),
    (1, 2, 1, 100, [[1, 2]]),
    (1, 3, 10, 1, [[1]]),
    (1, 4, 1, 2, [[1, 2], [3, 4]]),
])
def test_split_frames(start, end, step, chunk, expected):
    assert jobs.split_frames(start, end, step, chunk) == expected


def test_render_job_becomes_one_task_per_chunk_with_the_documented_params(user):
    job = render_job(user, render_spec(frame_start=1, frame_end=10, frame_step=2, chunk=2, engine="BLENDER_EEVEE",
                                       samples=64, resolution_percent=50, format="JPEG", device="gpu",
                                       priority=3, max_price="0.80"))
    tasks = sorted(job.tasks, key=lambda t: t.seq)
    assert [t.params["frames"] for t in tasks] == [[1, 3], [5, 7], [9]]
    assert [t.seq for t in tasks] == [1, 2, 3]
    assert tasks[0].params == {"blend": "scene.blend", "frames": [1, 3], "engine": "BLENDER_EEVEE", "samples": 64,
                               "resolution_percent": 50, "format": "JPEG", "device": "gpu"}
    for task in tasks:
        assert task.input_names == ["scene.blend"]
        assert (task.priority, task.device, task.max_price_micros) == (3, "gpu", 800_000)
        assert task.status == TaskStatus.QUEUED and task.type.value == "render"
    assert job.software == "Blender · EEVEE"
    assert job.status == JobStatus.QUEUED and job.max_price_micros == 800_000
    assert [(i.name, i.size) for i in job.inputs] == [("scene.blend", len(FAKE_BLEND))]


# --- Validation of every field ----------------------------------------------------------------------

def test_render_spec_defaults(ctx):
    spec = jobs.validate_render_spec({"type": "render", "name": "  A  ", "frame_start": 5})
    assert spec == {"type": "render", "name": "A", "device": "any", "priority": 0, "max_price": "0.625000",
                    "frame_start": 5, "frame_end": 5, "frame_step": 1, "chunk": 1, "engine": "CYCLES",
                    "samples": 128, "resolution_percent": 100, "format": "PNG"}


def test_default_max_price_is_a_margin_over_the_average_bid(ctx):
    ctx.config["DEFAULT_BID"] = "0.40"
    assert jobs.validate_upscale_spec(upscale_spec())["max_price"] == "0.500000"


@pytest.mark.parametrize("field,value", [
    ("name", ""), ("name", "   "), ("name", "x" * 121), ("name", 5), ("name", None),
    ("frame_start", -1), ("frame_start", 1_000_001), ("frame_start", "abc"), ("frame_start", 1.5),
    ("frame_start", True), ("frame_start", None),
    ("frame_end", -3), ("frame_end", 1_000_001),
    ("frame_step", 0), ("frame_step", -1),
    ("chunk", 0), ("chunk", 101),
    ("engine", "OCTANE"), ("engine", "cycles"),
    ("samples", 0), ("samples", 65537),
    ("resolution_percent", 0), ("resolution_percent", 101),
    ("format", "TIFF"), ("format", "png"),
    ("device", "cpu"),
    ("priority", -11), ("priority", 11), ("priority", "high"),
    ("max_price", "0"), ("max_price", "-1"), ("max_price", "abc"), ("max_price", 0.5), ("max_price", "1000.01"),
    ("max_price", "0.0000001"), ("max_price", "NaN"),
    ("type", "upscale"),
])
def test_render_spec_rejects_each_bad_field(ctx, field, value):
    spec = render_spec(**{field: value})
    if value is None:
        del spec[field]
    with pytest.raises(jobs.SpecError) as exc:
        jobs.validate_render_spec(spec)
    assert field in exc.value.errors, exc.value.errors
    assert exc.value.status == 400 and field in exc.value.message


@pytest.mark.parametrize("changes", [
    {"frame_start": 0, "frame_end": 0}, {"frame_start": 1_000_000, "frame_end": 1_000_000},
    {"chunk": 100}, {"samples": 1}, {"samples": 65536}, {"resolution_percent": 1}, {"priority": -10},
    {"priority": 10}, {"max_price": "0.000001"}, {"max_price": 2}, {"max_price": "1000"},
    {"frame_start": "5", "frame_end": "7"},
    {"format": "OPEN_EXR", "engine": "BLENDER_WORKBENCH", "device": "gpu"},
])
def test_render_spec_accepts_the_edges(ctx, changes):
    spec = jobs.validate_render_spec(render_spec(**changes))
    for key, value in changes.items():
        if key == "max_price":  # normalised to the six-place decimal string of the JSON API
            assert spec[key] == money.fmt(money.to_micros(value))
        else:
            assert spec[key] == (int(value) if isinstance(value, str) and value.isdigit() else value)


def test_reversed_range_is_explained(ctx):
    with pytest.raises(jobs.SpecError) as exc:
        jobs.validate_render_spec(render_spec(frame_start=30, frame_end=20))
    assert "reversed" in exc.value.errors["frame_end"]


def test_absurd_ranges_hit_the_frame_and_task_caps(ctx):
    with pytest.raises(jobs.SpecError) as exc:
        jobs.validate_render_spec(render_spec(frame_start=0, frame_end=1_000_000, chunk=100))
    assert "frame_end" in exc.value.errors
    frames = jobs.MAX_TASKS + 1
    with pytest.raises(jobs.SpecError) as exc:
        jobs.validate_render_spec(render_spec(frame_start=1, frame_end=frames, chunk=1))
    assert "tasks" in exc.value.errors["chunk"]
    spec = jobs.validate_render_spec(render_spec(frame_start=1, frame_end=frames, chunk=2))
    assert len(jobs.split_frames(spec["frame_start"], spec["frame_end"], 1, 2)) <= jobs.MAX_TASKS


def test_all_wrong_fields_are_reported_at_once_and_unknown_fields_are_refused(ctx):
    with pytest.raises(jobs.SpecError) as exc:
        jobs.validate_render_spec({"type": "render", "name": "", "frame_start": 1, "frame_end": 2, "samples": 0,
                                   "frame_stat": 3})
    assert set(exc.value.errors) == {"name", "samples", "spec"}
    assert "frame_stat" in exc.value.errors["spec"]
    with pytest.raises(jobs.SpecError):
        jobs.validate_render_spec(["not", "a", "dict"])


def test_upscale_spec_defaults_and_each_bad_field(ctx):
    assert jobs.validate_upscale_spec(upscale_spec()) == {
        "type": "upscale", "name": "Stills", "device": "any", "priority": 0, "max_price": "0.625000",
        "scale": 4, "model": "realesr-animevideov3"}
    assert jobs.validate_upscale_spec(upscale_spec(scale=2, model="lanczos"))["scale"] == 2
    for field, value in [("scale", 3), ("scale", 8), ("scale", "x"), ("model", "waifu2x"), ("name", ""),
                         ("max_price", "0"), ("priority", 99), ("frame_start", 1), ("type", "render")]:
        with pytest.raises(jobs.SpecError) as exc:
            jobs.validate_upscale_spec(upscale_spec(**{field: value}))
        assert (field if field != "frame_start" else "spec") in exc.value.errors


def test_models_include_the_real_esrgan_pair_and_the_named_classical_fallback():
    assert {"realesr-animevideov3", "realesrgan-x4plus", "lanczos"} <= set(jobs.MODELS)


# --- .blend files -----------------------------------------------------------------------------------

def test_blend_header_check(monkeypatch):
    assert uploads.check_blend_header(FAKE_BLEND) == "plain"
    assert uploads.check_blend_header(gzip.compress(FAKE_BLEND)[:4096]) == "gzip"
    for junk in (b"hello, I am a text file", gzip.compress(b"not a blend at all"), image_bytes(), b"\x1f\x8bjunk"):
        with pytest.raises(uploads.InputError) as exc:
            uploads.check_blend_header(junk)
        assert exc.value.code == "not_a_blend" and exc.value.field == "blend"
    zstd_text = b"\x28\xb5\x2f\xfd" + b"\x00" * 20
    monkeypatch.setitem(sys.modules, "zstandard", None)  # without the module only the magic is checked
    assert uploads.check_blend_header(zstd_text) == "zstd"


def test_zstd_blend_is_decompressed_when_zstandard_is_installed():
    zstandard = pytest.importorskip("zstandard")
    assert uploads.check_blend_header(zstandard.ZstdCompressor().compress(FAKE_BLEND)) == "zstd"
    with pytest.raises(uploads.InputError):
        uploads.check_blend_header(zstandard.ZstdCompressor().compress(b"plain text, renamed to .blend"))


@pytest.mark.parametrize("kind", ["plain", "compressed"])
def test_real_blend_from_blender_is_accepted(app, user, real_blends, kind):
    data = real_blends[kind].read_bytes()
    job = render_job(user, data=data, filename=f"my shot ({kind}).blend")
    assert len(job.tasks) == 3
    [blend] = job.inputs
    assert blend.name.endswith(".blend") and "/" not in blend.name
    assert storage.path_for(blend.sha256).read_bytes() == data


def test_renamed_text_file_is_rejected_and_nothing_is_stored(app, user):
    before = snapshot(app)
    with pytest.raises(uploads.InputError) as exc:
        render_job(user, data=b"just some notes\n" * 100, filename="scene.blend")
    assert exc.value.code == "not_a_blend"
    assert snapshot(app) == before


def test_bad_spec_stores_nothing_even_with_a_good_file(app, user):
    before = snapshot(app)
    with pytest.raises(jobs.SpecError):
        render_job(user, render_spec(frame_start=9, frame_end=1))
    assert snapshot(app) == before


def test_same_blend_uploaded_twice_is_stored_once(app, user):
    first, second = render_job(user), render_job(user)
    assert first.id != second.id
    assert first.inputs[0].sha256 == second.inputs[0].sha256
    counts, files = snapshot(app)
    assert counts["stored_files"] == 1 and len(files) == 1


def test_an_error_while_storing_rolls_back_rows_and_new_blob_files(app, user, monkeypatch):
    before = snapshot(app)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")
    monkeypatch.setattr(jobs, "_new_task", broken)
    with pytest.raises(RuntimeError):
        render_job(user, data=FAKE_BLEND + b"unique")
    assert snapshot(app) == before


def test_oversized_blend_is_refused_with_413(app, user, monkeypatch):
    monkeypatch.setattr(uploads, "BLEND_MAX_BYTES", 100)
    before = snapshot(app)
    with pytest.raises(uploads.InputError) as exc:
        render_job(user)
    assert exc.value.status == 413 and exc.value.field == "blend"
    assert snapshot(app) == before


# --- Images and archives ----------------------------------------------------------------------------

def test_upscale_job_one_task_per_image_with_safe_unique_names(user):
    files = [("../../etc/a.png", io.BytesIO(image_bytes("PNG"))),
             ("a.png", io.BytesIO(image_bytes("PNG", color=(1, 2, 3)))),
             ("photo.jpeg", io.BytesIO(image_bytes("JPEG"))), ("web.webp", io.BytesIO(image_bytes("WEBP")))]
    job = jobs.submit_upscale_job(user, upscale_spec(scale=2, model="realesrgan-x4plus"), files)
    tasks = sorted(job.tasks, key=lambda t: t.seq)
    assert [t.params["image"] for t in tasks] == ["a.png", "a-2.png", "photo.jpg", "web.webp"]
    assert tasks[0].params == {"image": "a.png", "scale": 2, "model": "realesrgan-x4plus"}
    assert [t.input_names for t in tasks] == [[t.params["image"]] for t in tasks]
    assert job.software == "Real-ESRGAN x2"
    assert jobs.submit_upscale_job(user, upscale_spec(model="lanczos"),
                                   [("x.png", io.BytesIO(image_bytes()))]).software == "Lanczos x4"


def test_identical_images_in_one_job_are_stored_once(app, user):
    data = image_bytes()
    job = jobs.submit_upscale_job(user, upscale_spec(), [("a.png", io.BytesIO(data)), ("b.png", io.BytesIO(data))])
    assert len(job.tasks) == 2
    assert snapshot(app)[0]["stored_files"] == 1


@pytest.mark.parametrize("data,code", [
    (b"GIF89a not really", "not_an_image"),
    (b"plain text named .png", "not_an_image"),
    (image_bytes("GIF"), "not_an_image"),
    (image_bytes("PNG", size=(4097, 1)), "image_too_large"),
    (image_bytes("PNG")[:40], "not_an_image"),  # truncated
])
def test_bad_images_are_rejected_and_nothing_is_stored(app, user, data, code):
    before = snapshot(app)
    with pytest.raises(uploads.InputError) as exc:
        jobs.submit_upscale_job(user, upscale_spec(),
                                [("ok.png", io.BytesIO(image_bytes())), ("bad.png", io.BytesIO(data))])
    assert exc.value.code == code and exc.value.field == "images"
    assert snapshot(app) == before


def test_upload_needs_images_or_one_archive(user):
    with pytest.raises(uploads.InputError):
        jobs.submit_upscale_job(user, upscale_spec(), [])
    with pytest.raises(uploads.InputError):
        jobs.submit_upscale_job(user, upscale_spec(), [("a.png", io.BytesIO(image_bytes()))],
                                ("a.zip", io.BytesIO(zip_bytes({"b.png": image_bytes()}))))


def test_zip_of_images_skips_folders_and_archiver_debris(user):
    archive = zip_bytes({"shots/": b"", "shots/one.png": image_bytes(), "shots/two.jpg": image_bytes("JPEG"),
                         "__MACOSX/shots/._one.png": b"\x00\x05junk", "shots/.DS_Store": b"junk",
                         "other/one.png": image_bytes(color=(0, 0, 255))})
    job = jobs.submit_upscale_job(user, upscale_spec(), archive=("shots.zip", io.BytesIO(archive)))
    assert sorted(t.params["image"] for t in job.tasks) == ["one-2.png", "one.png", "two.jpg"]


@pytest.mark.parametrize("members,symlinks,code", [
    ({"ok.png": image_bytes(), "../evil.png": image_bytes()}, (), "unsafe_archive"),
    ({"a/../../evil.png": image_bytes()}, (), "unsafe_archive"),
    ({"/etc/evil.png": image_bytes()}, (), "unsafe_archive"),
    ({"C:/evil.png": image_bytes()}, (), "unsafe_archive"),
    ({"..\\evil.png": image_bytes()}, (), "unsafe_archive"),
    ({"link.png": b"/etc/passwd"}, ("link.png",), "unsafe_archive"),
    ({"bomb.png": bytes(4 * 1024 * 1024)}, (), "unsafe_archive"),
    ({"ok.png": image_bytes(), "notes.txt": b"hello"}, (), "not_an_image"),
    ({"empty/": b""}, (), "no_images"),
])
def test_unsafe_or_bad_archives_are_rejected_and_nothing_is_stored(app, user, members, symlinks, code):
    before = snapshot(app)
    with pytest.raises(uploads.InputError) as exc:
        jobs.submit_upscale_job(user, upscale_spec(),
                                archive=("a.zip", io.BytesIO(zip_bytes(members, symlinks=symlinks))))
    assert exc.value.code == code and exc.value.field == "archive", exc.value.message
    assert snapshot(app) == before


def test_archive_limits_on_members_total_size_and_corruption(app, user, monkeypatch):
    before = snapshot(app)
    many = {f"{i}.png": image_bytes() for i in range(4)}
    monkeypatch.setattr(uploads, "ARCHIVE_MAX_MEMBERS", 3)
    with pytest.raises(uploads.InputError, match="entries"):
        jobs.submit_upscale_job(user, upscale_spec(), archive=("a.zip", io.BytesIO(zip_bytes(many))))
    monkeypatch.setattr(uploads, "ARCHIVE_MAX_MEMBERS", 1000)
    monkeypatch.setattr(uploads, "ARCHIVE_MAX_TOTAL", len(image_bytes()) * 2)
    with pytest.raises(uploads.InputError) as exc:
        jobs.submit_upscale_job(user, upscale_spec(),
                                archive=("a.zip", io.BytesIO(zip_bytes(many, zipfile.ZIP_STORED))))
    assert exc.value.code == "archive_too_large" and exc.value.status == 413
    for junk in (b"PK\x03\x04 not really a zip", zip_bytes({"a.png": image_bytes()})[:-30]):
        with pytest.raises(uploads.InputError) as exc:
            jobs.submit_upscale_job(user, upscale_spec(), archive=("a.zip", io.BytesIO(junk)))
        assert exc.value.code == "bad_archive"
    assert snapshot(app) == before


# --- Status, progress, cost -------------------------------------------------------------------------

def _statuses(job, *statuses):
    for task, status in zip(sorted(job.tasks, key=lambda t: t.seq), statuses):
        task.status = TaskStatus(status)
    db.session.flush()
    return dispatch.roll_up_status(job)


def test_job_status_rolls_up_from_its_tasks(user):
    job = render_job(user)  # three tasks
    assert _statuses(job, "queued", "queued", "queued") == JobStatus.QUEUED
    assert _statuses(job, "running", "queued", "queued") == JobStatus.RUNNING and job.finished_at is None
    assert _statuses(job, "completed", "queued", "queued") == JobStatus.RUNNING
    assert _statuses(job, "completed", "completed", "completed") == JobStatus.COMPLETED
    assert job.finished_at == NOW
    assert _statuses(job, "completed", "failed", "completed") == JobStatus.FAILED
    assert _statuses(job, "completed", "failed", "running") == JobStatus.RUNNING and job.finished_at is None
    assert _statuses(job, "canceled", "canceled", "canceled") == JobStatus.CANCELED


def test_progress_is_the_mean_of_task_progress_with_completed_as_one(user):
    job = render_job(user)
    a, b, c = sorted(job.tasks, key=lambda t: t.seq)
    a.status, a.progress = TaskStatus.COMPLETED, 0.2  # a stale progress value must not matter
    b.status, b.progress = TaskStatus.RUNNING, 0.5
    db.session.flush()
    assert jobs.job_progress(job) == pytest.approx(0.5)


def test_cost_comes_from_the_ledger_and_the_estimate_from_finished_tasks(user):
    job = render_job(user)
    costs = jobs.cost_summary(job)
    assert costs["spent_micros"] == 0 and costs["estimate_micros"] is None and "first task" in costs["explanation"]
    a, b, c = sorted(job.tasks, key=lambda t: t.seq)
    finish_task(a, {"frame_0001.png": image_bytes()}, reward_micros=100_000)
    finish_task(b, {"frame_0002.png": image_bytes(color=(0, 9, 9))}, reward_micros=200_000)
    db.session.commit()
    costs = jobs.cost_summary(job)
    assert costs["spent_micros"] == 300_000
    assert costs["estimate_micros"] == 450_000  # 0.15 per task on average, one task to go
    data = jobs.serialize_job(job)
    assert data["cost"] == "0.300000" and data["cost_estimate"] == "0.450000"


def test_serialized_job_has_the_spec_shape(user):
    job = render_job(user)
    first = sorted(job.tasks, key=lambda t: t.seq)[0]
    finish_task(first, {"frame_0001.png": image_bytes()})
    db.session.commit()
    data = jobs.serialize_job(job)
    assert {"id", "name", "type", "status", "progress", "created_at", "tasks", "cost"} <= set(data)
    assert data["type"] == "render" and data["status"] == "queued" and data["max_price"] == "0.625000"
    assert data["progress"] == pytest.approx(1 / 3, abs=1e-3)
    task = data["tasks"][0]
    assert {"id", "status", "progress", "worker_id", "outputs"} <= set(task)
    assert task["outputs"][0]["name"] == "frame_0001.png" and len(task["outputs"][0]["sha256"]) == 64
    assert data["tasks"][1]["outputs"] == []


def test_job_listing_is_owner_scoped_and_paged(app, user):
    for _ in range(3):
        render_job(user)
    other = accounts.sign_up("other@example.com", "correct horse battery")
    render_job(other)
    page = jobs.list_jobs(user.id, per_page=2)
    assert (page.total, page.pages, len(page.items)) == (3, 2, 2)
    assert all(j.owner_id == user.id for j in page.items)
    with pytest.raises(NotFound):
        permissions.owned_job(user.id, jobs.list_jobs(other.id).items[0].id)


# --- Cancel and requeue -----------------------------------------------------------------------------

def test_cancel_stops_queued_tasks_and_cannot_be_repeated(user):
    job = render_job(user)
    a = sorted(job.tasks, key=lambda t: t.seq)[0]
    finish_task(a, {"frame_0001.png": image_bytes()})
    db.session.commit()
    dispatch.cancel(job)
    db.session.expire_all()
    assert job.status == JobStatus.CANCELED
    assert sorted(t.status.value for t in job.tasks) == ["canceled", "canceled", "completed"]
    with pytest.raises(Conflict):
        dispatch.cancel(job)


def test_requeue_puts_failed_tasks_back(user):
    job = render_job(user)
    with pytest.raises(Conflict):
        dispatch.requeue_failed(job)
    tasks = sorted(job.tasks, key=lambda t: t.seq)
    finish_task(tasks[0], {"frame_0001.png": image_bytes()})
    tasks[1].status, tasks[2].status = TaskStatus.FAILED, TaskStatus.FAILED
    tasks[1].message = "Blender crashed"
    db.session.flush()
    dispatch.roll_up_status(job)
    db.session.commit()
    assert job.status == JobStatus.FAILED
    assert dispatch.requeue_failed(job) == 2
    db.session.expire_all()
    assert sorted(t.status.value for t in job.tasks) == ["completed", "queued", "queued"]
    assert job.status == JobStatus.RUNNING and job.finished_at is None


# --- Outputs: zip, purge, thumbnails ----------------------------------------------------------------

def _zip_of(job) -> zipfile.ZipFile:
    pieces = list(outputs.stream_outputs_zip(job))
    assert all(isinstance(p, bytes) and p for p in pieces)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    return archive


def test_outputs_zip_holds_exactly_the_completed_outputs(user):
    job = render_job(user)
    a, b, c = sorted(job.tasks, key=lambda t: t.seq)
    one, two = image_bytes(color=(1, 1, 1)), image_bytes(color=(2, 2, 2))
    finish_task(a, {"frame_0001.png": one})
    finish_task(b, {"frame_0002.png": two, "frame_0002.log.png": one})
    finish_task(c, {"frame_0003.png": b"partial upload before the task failed"}, status="failed")
    db.session.commit()
    archive = _zip_of(job)
    assert sorted(archive.namelist()) == ["frame_0001.png", "frame_0002.log.png", "frame_0002.png"]
    assert archive.read("frame_0002.png") == two


def test_outputs_zip_prefixes_names_two_tasks_share(user):
    job = jobs.submit_upscale_job(user, upscale_spec(), [("a.png", io.BytesIO(image_bytes())),
                                                          ("b.png", io.BytesIO(image_bytes(color=(3, 3, 3))))])
    a, b = sorted(job.tasks, key=lambda t: t.seq)
    finish_task(a, {"out_x4.png": b"one"})
    finish_task(b, {"out_x4.png": b"two"})
    db.session.commit()
    archive = _zip_of(job)
    assert archive.read("task-0001/out_x4.png") == b"one" and archive.read("task-0002/out_x4.png") == b"two"


def test_purge_deletes_old_outputs_but_keeps_shared_blobs(app, user):
    old, recent = render_job(user), render_job(user)
    shared, unique = image_bytes(color=(5, 5, 5)), image_bytes(color=(6, 6, 6))
    finish_task(old.tasks[0], {"frame_0001.png": shared, "frame_0001b.png": unique})
    finish_task(recent.tasks[0], {"frame_0001.png": shared})
    old.finished_at = NOW - timedelta(days=31)
    recent.finished_at = NOW - timedelta(days=29)
    db.session.commit()
    unique_sha = db.session.execute(db.select(TaskOutput.sha256).where(TaskOutput.name == "frame_0001b.png")).scalar()
    thumbnails.thumbnail(unique_sha)
    assert outputs.purge_old_outputs(now=NOW) == 1
    assert old.outputs_purged_at == NOW and recent.outputs_purged_at is None
    assert not storage.path_for(unique_sha).exists()
    assert storage.path_for(old.tasks[0].outputs[0].sha256).exists()  # still the recent job's output
    assert old.inputs[0].sha256 and storage.path_for(old.inputs[0].sha256).exists()  # inputs are not outputs
    assert not thumbnails._cache_path(unique_sha).exists()
    assert outputs.purge_old_outputs(now=NOW) == 0
    with pytest.raises(ServiceError) as exc:
        outputs.stream_outputs_zip(old)
    assert exc.value.status == 410


def test_thumbnail_is_small_cached_and_exr_gets_a_placeholder(app, ctx):
    from PIL import Image
    stored = storage.put_bytes(image_bytes(size=(1024, 512)))
    db.session.commit()
    data = thumbnails.thumbnail(stored.sha256)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (256, 128)
    assert thumbnails.content_type(data) == "image/jpeg"
    storage.delete_blob(stored.sha256)
    assert thumbnails.thumbnail(stored.sha256) == data  # served from the cache
    exr = storage.put_bytes(b"\x76\x2f\x31\x01" + bytes(100))
    with Image.open(io.BytesIO(thumbnails.thumbnail(exr.sha256))) as img:
        assert img.format == "PNG" and img.size == (256, 256)


def test_the_whole_lifecycle_on_sqlite_and_postgresql(any_app, clock):
    """Submit, roll up, list, zip and purge with the same code on both databases."""
    with any_app.app_context():
        owner = accounts.sign_up("pg@example.com", "correct horse battery")
        job = render_job(owner, render_spec(frame_end=4, chunk=2))
        duplicate = render_job(owner)
        assert duplicate.inputs[0].sha256 == job.inputs[0].sha256
        with pytest.raises(uploads.InputError):
            jobs.submit_upscale_job(owner, upscale_spec(),
                                    archive=("a.zip", io.BytesIO(zip_bytes({"../x.png": image_bytes()}))))
        first, second = sorted(job.tasks, key=lambda t: t.seq)
        finish_task(first, {"frame_0001.png": b"one", "frame_0002.png": b"two"}, reward_micros=70_000)
        db.session.flush()
        assert dispatch.roll_up_status(job) == JobStatus.RUNNING
        finish_task(second, {"frame_0003.png": b"three"}, status="failed")
        db.session.flush()
        assert dispatch.roll_up_status(job) == JobStatus.FAILED
        db.session.commit()
        summary = jobs.job_summaries([job.id])[job.id]
        assert (summary["done"], summary["failed"], summary["total"], summary["cost_micros"]) == (1, 1, 2, 70_000)
        assert summary["progress"] == pytest.approx(0.5)
        archive = zipfile.ZipFile(io.BytesIO(b"".join(outputs.stream_outputs_zip(job))))
        assert sorted(archive.namelist()) == ["frame_0001.png", "frame_0002.png"]
        assert outputs.purge_old_outputs(now=NOW + timedelta(days=31)) == 1
        assert jobs.list_jobs(owner.id, status="failed").total == 1


def test_a_worker_runs_the_job_through_the_dispatcher(user):
    """The task params written here are what a claiming worker gets; its reward is the job's cost."""
    dispatch = pytest.importorskip("webapp.services.dispatch")
    from webapp.models import Worker
    job = render_job(user, render_spec(frame_start=1, frame_end=1, engine="BLENDER_WORKBENCH"))
    worker = Worker(owner_id=user.id, name="rig", capabilities={"job_types": ["render"], "gpu": False},
                    bench_score=1000)
    db.session.add(worker)
    db.session.commit()
    task = dispatch.claim_task(worker, now=NOW)
    assert task is not None and task.job_id == job.id
    assert task.params["frames"] == [1] and task.params["engine"] == "BLENDER_WORKBENCH"
    frame = image_bytes(color=(7, 7, 7))
    stored = storage.put_bytes(frame)
    db.session.commit()
    dispatch.record_output(worker, task.id, "frame_0001.png", stored.sha256, stored.size)
    reward = dispatch.complete_task(worker, task.id, [{"name": "frame_0001.png", "sha256": stored.sha256,
                                                       "size": stored.size}], 1800, now=NOW + timedelta(hours=1))
    db.session.expire_all()
    assert reward > 0 and job.status == JobStatus.COMPLETED
    assert jobs.serialize_job(job)["cost"] == jobs.money.fmt(reward)
    assert _zip_of(job).read("frame_0001.png") == frame
