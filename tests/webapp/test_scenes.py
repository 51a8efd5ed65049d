"""Scenes read from the file without Blender, projects as zips, drafts: real .blend files saved by Blender."""

import io
import json
import re
import shutil
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import DraftFile, Job, JobInput, SceneDraft, StoredFile, Task, User
from webapp.services import dispatch, jobs, outputs, scenes, uploads

from .blend_fixture import FAKE_BLEND, project_zip, zip_bytes
from .test_jobs_api import api  # noqa: F401  (the fixture: a client with a user's token)

SHOT = {"scene": "Scene", "frame_start": 1, "frame_end": 4, "frame_step": 1, "resolution_x": 200,
        "resolution_y": 150, "resolution_percent": 50, "engine": "CYCLES", "samples": 8, "format": "PNG",
        "camera": "Main", "cameras": ["Main", "Side"]}


def counts():
    return {m.__tablename__: db.session.execute(db.select(db.func.count()).select_from(m)).scalar_one()
            for m in (Job, JobInput, Task, StoredFile, SceneDraft, DraftFile)}


def post_render(api, spec, **files):
    data = {"spec": json.dumps({"type": "render", "name": "Shot 10", **spec})}
    data.update({part: (io.BytesIO(body), name) for part, (name, body) in files.items()})
    return api.post("/jobs", data=data, content_type="multipart/form-data")


def test_the_portal_reads_settings_cameras_and_dependencies_of_a_real_project(app, real_project):
    with app.test_request_context():
        upload = scenes.receive("shot.zip", io.BytesIO(project_zip(real_project)))
        try:
            assert upload.main == "shot.blend" and sorted(upload.paths) == [
                "lib/props.blend", "shot.blend", "textures/green.png"]
            assert upload.reading["settings"] == SHOT
            deps = {d["path"]: (d["kind"], d["found"]) for d in upload.reading["dependencies"]}
            assert deps == {"textures/green.png": ("image", True), "lib/props.blend": ("library", True)}
            assert scenes.file_defaults(upload.reading) == {"frame_start": 1, "frame_end": 4, "frame_step": 1,
                                                            "samples": 8, "resolution_percent": 50,
                                                            "engine": "CYCLES", "format": "PNG"}
        finally:
            upload.close()
        # The compressed .blend alone: the same settings, and both files it uses are missing.
        alone = scenes.receive("shot.blend", io.BytesIO((real_project / "shot.blend").read_bytes()))
        alone.close()
        assert alone.reading["settings"] == SHOT
        assert sorted((d["path"], d["found"]) for d in alone.reading["dependencies"]) == [
            ("lib/props.blend", False), ("textures/green.png", False)]


def test_a_project_submitted_with_no_field_typed_takes_the_files_values(api, app, real_project):
    response = post_render(api, {}, project=("shot.zip", project_zip(real_project, prefix="")))
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    spec = job["spec"]
    assert {k: spec[k] for k in scenes.FILE_FIELDS} == {"frame_start": 1, "frame_end": 4, "frame_step": 1,
                                                         "samples": 8, "resolution_percent": 50,
                                                         "engine": "CYCLES", "format": "PNG"}
    assert spec["from_file"] == sorted(scenes.FILE_FIELDS) and spec["main"] == "shot.blend"
    assert sorted(job["dependencies"], key=lambda d: d["path"]) == [
        {"path": "lib/props.blend", "found": True}, {"path": "textures/green.png", "found": True}]
    assert sorted(i["name"] for i in job["inputs"]) == ["lib/props.blend", "shot.blend", "textures/green.png"]
    assert [t["params"]["frames"] for t in job["tasks"]] == [[1], [2], [3], [4]]
    assert all(t["params"]["blend"] == "shot.blend" and t["params"]["samples"] == 8 for t in job["tasks"])
    # A typed value wins over the file's; the rest still come from it.
    typed = post_render(api, {"samples": 2, "frame_end": 2}, project=("shot.zip", project_zip(real_project)))
    assert typed.status_code == 201
    assert (typed.get_json()["spec"]["samples"], typed.get_json()["spec"]["frame_end"],
            typed.get_json()["spec"]["resolution_percent"]) == (2, 2, 50)
    # No name either: the file's.
    nameless = post_render(api, {"name": None}, project=("shot.zip", project_zip(real_project)))
    assert nameless.status_code == 201 and nameless.get_json()["name"] == "shot"
    with app.app_context():  # the claimed task lists every project file at its relative path
        task = db.session.get(Task, job["tasks"][0]["id"])
        assert sorted(dispatch.task_inputs(task)) == ["lib/props.blend", "shot.blend", "textures/green.png"]


def test_a_missing_texture_is_listed_before_the_job_is_accepted(api, app, real_project):
    zipped = project_zip(real_project, leave_out={"textures/green.png"})
    with app.app_context():
        before = counts()
    refused = post_render(api, {}, project=("shot.zip", zipped))
    body = refused.get_json()
    assert refused.status_code == 400 and body["error"] == "missing_dependencies", body
    assert [d["path"] for d in body["dependencies"]] == ["textures/green.png"]
    assert "Pack Resources" in body["message"] and "add it to the zip" in body["dependencies"][0]["advice"]
    with app.app_context():
        assert counts() == before  # nothing stored
    anyway = post_render(api, {"allow_missing": True}, project=("shot.zip", zipped))
    assert anyway.status_code == 201
    assert {d["path"]: d["found"] for d in anyway.get_json()["dependencies"]} == {
        "textures/green.png": False, "lib/props.blend": True}
    # A lone .blend with unpacked files is the same story, and "allow_missing" must be a real yes.
    assert post_render(api, {"allow_missing": "yes"}, blend=("shot.blend", (real_project / "shot.blend").read_bytes())
                       ).get_json()["fields"]["allow_missing"] == "Must be true or false."


def test_a_resubmitted_project_stores_only_the_file_that_changed(api, app, real_project, tmp_path):
    assert post_render(api, {}, project=("shot.zip", project_zip(real_project))).status_code == 201
    with app.app_context():
        stored = counts()["stored_files"]
    from PIL import Image
    changed = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 250, 0)).save(changed, "PNG")
    again = project_zip(real_project, leave_out={"textures/green.png"}, extra={"textures/green.png": changed.getvalue()})
    assert post_render(api, {}, project=("shot.zip", again)).status_code == 201
    with app.app_context():
        assert counts()["stored_files"] == stored + 1


@pytest.mark.parametrize("members,spec,code,field", [
    ({"shot.blend": b"x", "../evil.png": b"x"}, {}, "unsafe_archive", "project"),
    ({"/etc/cron.d/evil": b"x", "shot.blend": b"x"}, {}, "unsafe_archive", "project"),
    ({"shot.blend": b"x", "Tex/a.png": b"1", "tex/A.png": b"2"}, {}, "bad_archive", "project"),
    ({"shot.blend": b"x", "con.png": b"1"}, {}, "bad_archive", "project"),
    ({"a.blend": b"x", "b.blend": b"x"}, {}, "main_required", "main"),
    ({"shot.blend": b"x"}, {"main": "/etc/passwd"}, "unsafe_path", "main"),
    ({"shot.blend": b"x"}, {"main": "../shot.blend"}, "unsafe_path", "main"),
    ({"shot.blend": b"x"}, {"main": "other.blend"}, "bad_request", "main"),
    ({"readme.txt": b"x"}, {}, "no_blend", "project"),
    ({"shot.blend": b"not a blend"}, {}, "not_a_blend", "main"),
])
def test_cheating_projects_are_refused_and_nothing_is_stored(api, app, members, spec, code, field):
    with app.app_context():
        before = counts()
    response = post_render(api, spec, project=("p.zip", zip_bytes(members)))
    body = response.get_json()
    assert response.status_code == 400 and body["error"] == code and field in body["fields"], body
    with app.app_context():
        assert counts() == before


def test_symlinks_and_bombs_in_a_project_are_refused(api):
    link = post_render(api, {}, project=("p.zip", zip_bytes({"shot.blend": b"BLENDER", "tex.png": b"/etc/passwd"},
                                                            symlinks={"tex.png"})))
    assert link.status_code == 400 and link.get_json()["error"] == "unsafe_archive"
    bomb = post_render(api, {}, project=("p.zip", zip_bytes({"shot.blend": FAKE_BLEND, "big.png": bytes(50 << 20)})))
    assert bomb.status_code == 400 and "zip bomb" in bomb.get_json()["message"]


def test_a_hostile_blend_is_a_short_clear_refusal_never_a_hang(api, app, real_project, tmp_path):
    # Garbage after the header: unreadable, so every setting must be typed (the worker's Blender judges).
    refused = post_render(api, {}, blend=("x.blend", FAKE_BLEND))
    assert refused.status_code == 400 and set(refused.get_json()["fields"]) >= {"frame_start"}
    typed = post_render(api, {"frame_start": 1}, blend=("x.blend", FAKE_BLEND))
    assert typed.status_code == 201 and typed.get_json()["dependencies"] == []
    # A zstd bomb: a small upload that decompresses past what the reader may write.
    import zstandard
    bomb = zstandard.ZstdCompressor(level=19).compress(b"BLENDER-v304" + bytes(64 << 20))
    app.config["SCENE_READ_MAX_BYTES"] = 8 << 20
    with app.test_request_context():
        reading = scenes.receive("bomb.blend", io.BytesIO(bomb))
        reading.close()
        assert "error" in reading.reading
        # A reader that takes too long is killed, not waited for.
        app.config["SCENE_READ_TIMEOUT_S"] = 0.01
        slow = scenes.receive("shot.blend", io.BytesIO((real_project / "shot.blend").read_bytes()))
        slow.close()
        assert "longer than" in slow.reading["error"]


def test_libraries_outside_the_project_are_listed_missing_and_never_opened(app, real_project, tmp_path):
    """A scene linking a .blend by absolute path (the portal's own disk, here the test project) gets it
    listed as missing; the reader never opens it, so that file's own texture is not listed."""
    out = tmp_path / "hostile"
    script = (f"import bpy\nbpy.ops.wm.read_factory_settings(use_empty=True)\n"
              f"with bpy.data.libraries.load({str(real_project / 'shot.blend')!r}, link=True, relative=False) as (s, d):\n"
              f"    d.objects = ['Plane']\n"
              f"for ob in d.objects:\n    bpy.context.scene.collection.objects.link(ob)\n"
              f"bpy.ops.wm.save_as_mainfile(filepath={str(out / 'main.blend')!r}, relative_remap=False)\n"
              f"lib = bpy.data.libraries[0]\nlib.filepath = bpy.path.relpath(lib.filepath)\n"
              f"bpy.ops.wm.save_as_mainfile(filepath={str(out / 'climbs.blend')!r}, relative_remap=False)\n")
    out.mkdir()
    subprocess.run([shutil.which("blender"), "-b", "--factory-startup", "--python-expr", script],
                   check=True, capture_output=True, timeout=120)
    with app.test_request_context():
        upload = scenes.receive("main.blend", io.BytesIO((out / "main.blend").read_bytes()))
        upload.close()
        climbs = scenes.receive("climbs.blend", io.BytesIO((out / "climbs.blend").read_bytes()))
        climbs.close()
    deps = upload.reading["dependencies"]
    assert [(d["path"], d["found"], d["absolute"]) for d in deps] == [(str(real_project / "shot.blend"), False, True)]
    assert "absolute path" in scenes.advice(deps[0])
    [up] = climbs.reading["dependencies"]  # //../../project0/shot.blend: outside the upload's folder
    assert up["path"].startswith("//../") and not up["found"] and up["outside"]
    assert "Outside the project folder" in scenes.advice(up)


def test_a_draft_is_owner_only_expires_and_its_files_are_collected(app, real_project):
    with app.test_request_context(method="POST"):
        owner = User(email="artist@example.com", password_hash="x")
        other = User(email="other@example.com", password_hash="x")
        db.session.add_all([owner, other])
        db.session.commit()
        draft = jobs.upload_scene(owner, "shot.zip", io.BytesIO(project_zip(real_project)))
        assert [f.path for f in draft.files] == ["lib/props.blend", "shot.blend", "textures/green.png"]
        with pytest.raises(uploads.InputError) as gone:
            scenes.owned_draft(other.id, draft.id)
        assert gone.value.status == 404
        # Submitted from the draft: no upload, the job gets its files and the draft is used up.
        job = jobs.submit_render_job(owner, {"type": "render", "name": "From draft"}, draft=draft)
        assert sorted(i.name for i in job.inputs) == ["lib/props.blend", "shot.blend", "textures/green.png"]
        assert db.session.get(SceneDraft, draft.id) is None
        # An abandoned draft goes after its time, and then its files.
        abandoned = jobs.upload_scene(owner, "alone.blend", io.BytesIO(FAKE_BLEND + b"abandoned"))
        sha = abandoned.files[0].sha256
        assert scenes.expire_drafts(utcnow() + timedelta(hours=1)) == 0
        assert scenes.expire_drafts(utcnow() + timedelta(hours=25)) == 1
        app.config["BLOB_GRACE_SECONDS"] = 0
        assert outputs.collect_unreferenced_blobs(utcnow() + timedelta(seconds=1)) == 1
        assert db.session.get(StoredFile, sha) is None
        with pytest.raises(uploads.InputError):
            scenes.owned_draft(owner.id, abandoned.id)


# --- The New render job form ------------------------------------------------------------------------

@pytest.fixture
def creator(auth, clock):
    auth.signup()
    return auth


def form(**fields):
    data = {"render-name": "Shot 10", "render-chunk": "1", "render-device": "any", "render-priority": "0"}
    data.update(fields)
    return data


def test_the_form_reads_the_upload_at_once_and_keeps_it_across_a_correction(app, client, creator, real_project):
    panel = client.post("/jobs/new/render/scene", data=form(**{"render-blend": (io.BytesIO(project_zip(real_project)),
                                                                                "shot.zip")}),
                        content_type="multipart/form-data", headers={"HX-Request": "true"})
    html = panel.get_data(as_text=True)
    assert panel.status_code == 200
    assert "1–4" in html and "200×150 px at 50%" in html and "Cycles, 8 samples" in html and "Main (active)" in html
    assert "textures/green.png" in html and "lib/props.blend" in html and "dep-missing" not in html
    assert 'hx-swap-oob="true"' in html  # a fresh, empty file input: the submit does not send the file again
    draft_id = re.search(r'name="render-draft" value="(\d+)"', html).group(1)
    # Choosing another file replaces the draft: the first one is forgotten.
    replaced = client.post("/jobs/new/render/scene", data=form(**{
        "render-draft": draft_id, "render-blend": (io.BytesIO(project_zip(real_project)), "shot.zip")}),
        content_type="multipart/form-data", headers={"HX-Request": "true"}).get_data(as_text=True)
    with app.app_context():
        assert db.session.get(SceneDraft, int(draft_id)) is None
    draft_id = re.search(r'name="render-draft" value="(\d+)"', replaced).group(1)
    # A wrong value is a message next to its field; the scene is still there, nothing to upload again.
    wrong = client.post("/jobs/new/render", data=form(**{"render-draft": draft_id, "render-resolution_percent": "150"}),
                        content_type="multipart/form-data")
    page = wrong.get_data(as_text=True)
    assert wrong.status_code == 400 and "Must be between 1 and 100" in page
    assert f'name="render-draft" value="{draft_id}"' in page and "the scene is still uploaded" in page
    assert 'placeholder="8 (from the file)"' in page and "From the file: Cycles" in page
    fixed = client.post("/jobs/new/render", data=form(**{"render-draft": draft_id, "render-name": ""}),
                        content_type="multipart/form-data")  # not a field typed
    assert fixed.status_code == 302
    with app.app_context():
        job = db.session.execute(db.select(Job)).scalar_one()
        assert (job.name, job.spec["frame_end"], job.spec["samples"], len(job.tasks)) == ("shot", 4, 8, 4)
        assert db.session.get(SceneDraft, int(draft_id)) is None
    # Used up, and nobody else's draft is reachable either.
    again = client.post("/jobs/new/render", data=form(**{"render-draft": draft_id}), content_type="multipart/form-data")
    assert again.status_code == 400 and "upload the file again" in again.get_data(as_text=True)


def test_the_form_lists_missing_files_and_needs_the_explicit_choice(app, client, creator, real_project):
    zipped = project_zip(real_project, leave_out={"textures/green.png"})
    refused = client.post("/jobs/new/render", data=form(**{"render-blend": (io.BytesIO(zipped), "shot.zip")}),
                          content_type="multipart/form-data")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "dep-missing" in page and "Pack Resources" in page
    assert "tick this to render without them" in page and 'name="render-allow_missing"' in page
    draft_id = re.search(r'name="render-draft" value="(\d+)"', page).group(1)
    anyway = client.post("/jobs/new/render", data=form(**{"render-draft": draft_id, "render-allow_missing": "y"}),
                         content_type="multipart/form-data")
    assert anyway.status_code == 302
    # A refused file is a message in the panel, not an error page.
    bad = client.post("/jobs/new/render/scene", data=form(**{"render-blend": (io.BytesIO(b"hello" * 99), "a.blend")}),
                      content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert bad.status_code == 200 and "not a Blender file" in bad.get_data(as_text=True)


def test_someone_elses_draft_is_not_usable(app, client, creator, real_project):
    with app.test_request_context(method="POST"):
        stranger = User(email="stranger@example.com", password_hash="x")
        db.session.add(stranger)
        db.session.commit()
        theirs = jobs.upload_scene(stranger, "shot.zip", io.BytesIO(project_zip(real_project))).id
    response = client.post("/jobs/new/render", data=form(**{"render-draft": str(theirs)}),
                           content_type="multipart/form-data")
    assert response.status_code == 400 and "upload the file again" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Job)).scalar_one() == 0


def test_a_project_from_a_draft_on_sqlite_and_postgresql(any_app, real_project):
    with any_app.test_request_context(method="POST"):
        owner = User(email="artist@example.com", password_hash="x")
        db.session.add(owner)
        db.session.commit()
        draft = jobs.upload_scene(owner, "shot.zip", io.BytesIO(project_zip(real_project)))
        job = jobs.submit_render_job(owner, {"type": "render", "name": None, "frame_end": 1}, draft=draft)
        assert (job.name, job.spec["samples"], [t.input_names for t in job.tasks]) == (
            "shot", 8, [["lib/props.blend", "shot.blend", "textures/green.png"]])
        assert db.session.execute(db.select(db.func.count()).select_from(SceneDraft)).scalar_one() == 0


def test_naming_the_blend_of_a_zip_with_several_is_a_correction_not_a_new_upload(app, client, creator, real_project):
    shots = project_zip(real_project, extra={"other.blend": (real_project / "lib/props.blend").read_bytes()})
    refused = client.post("/jobs/new/render", data=form(**{"render-blend": (io.BytesIO(shots), "shots.zip")}),
                          content_type="multipart/form-data")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "name the one to render" in page and "the zip stays uploaded" in page
    draft_id = re.search(r'name="render-draft" value="(\d+)"', page).group(1)
    named = client.post("/jobs/new/render", data=form(**{"render-draft": draft_id, "render-main": "shot.blend"}),
                        content_type="multipart/form-data")
    assert named.status_code == 302
    with app.app_context():
        job = db.session.execute(db.select(Job)).scalar_one()
        assert (job.spec["main"], job.spec["samples"], len(job.inputs)) == ("shot.blend", 8, 4)
