"""The New render job form in a real browser: a project zip chosen is uploaded and read at once, its
settings and files shown, and a correction after a refused value is submitted without choosing the file
again; screenshots at 1366 and 390 px, and of the job page."""

import shutil

import pytest

from tests.webapp.blend_fixture import make_project, project_zip
from webapp.extensions import db
from webapp.models import Job

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"


def sign_up(page, base):
    page.goto(f"{base}/signup")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/workers")


@pytest.fixture(scope="module")
def project_zips(tmp_path_factory):
    if shutil.which("blender") is None:
        from tests.conftest import missing
        missing("Blender is not installed (Debian package 'blender')")
    root = make_project(tmp_path_factory.mktemp("project"))
    folder = tmp_path_factory.mktemp("zips")
    (folder / "shot.zip").write_bytes(project_zip(root))
    (folder / "shot-no-texture.zip").write_bytes(project_zip(root, leave_out={"textures/green.png"}))
    return folder


def test_the_form_reads_the_project_and_keeps_it_across_a_correction(browser, portal, project_zips, screenshot):
    from playwright.sync_api import expect

    app, base = portal
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    sign_up(page, base)
    page.goto(f"{base}/jobs/new")
    # Nothing typed at all: the name and every setting come from the file.
    uploads = []
    page.on("request", lambda r: uploads.append(r.url) if r.method == "POST" else None)
    page.set_input_files("#render-blend", str(project_zips / "shot-no-texture.zip"))
    panel = page.locator("#scene-read")
    expect(panel).to_contain_text("200×150 px at 50%")
    expect(panel).to_contain_text("Main (active), Side")
    expect(panel.locator(".dep-missing")).to_contain_text("textures/green.png")
    expect(panel.locator(".dep-found")).to_contain_text("lib/props.blend")
    assert page.input_value("#render-blend") == ""  # the file went up once; the submit will not resend it
    screenshot(page, "scene-form-1366")
    # A wrong value: refused next to its field, the scene still there; then the explicit choice.
    page.fill("#render-resolution_percent", "150")
    page.click("#render button[type=submit]")
    expect(page.locator("#render-resolution_percent-error")).to_contain_text("between 1 and 100")
    expect(page.locator("#scene-read")).to_contain_text("shot-no-texture.zip is uploaded")
    page.fill("#render-resolution_percent", "")
    page.click("#render button[type=submit]")
    expect(page.locator(".scene-missing .error")).to_contain_text("tick this to render without them")
    page.check("input[name=render-allow_missing]")
    page.click("#render button[type=submit]")
    page.wait_for_url(f"{base}/jobs/*")
    expect(page.locator("body")).to_contain_text("4 task(s) queued")
    screenshot(page, "scene-job-page-1366")
    # The file was sent once: one upload request carried it, the three submits only the form.
    assert sum(1 for url in uploads if url.endswith("/jobs/new/render/scene")) == 1
    with app.app_context():
        job = db.session.execute(db.select(Job)).scalar_one()
        assert (job.name, job.spec["frame_end"], job.spec["samples"], job.spec["resolution_percent"]) == (
            "shot-no-texture", 4, 8, 50)
        assert {d["path"]: d["found"] for d in job.spec["dependencies"]} == {
            "textures/green.png": False, "lib/props.blend": True}
    context.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=1)
    page = phone.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{base}/jobs/new")
    page.set_input_files("#render-blend", str(project_zips / "shot-no-texture.zip"))
    expect(page.locator("#scene-read .dep-missing")).to_contain_text("textures/green.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "scene-form-390")
    phone.close()
