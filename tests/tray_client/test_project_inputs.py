"""Projects on the worker: input paths from the portal checked before anything is written, and a real
project zip rendered by the real Worker App and Blender with its texture found (no magenta)."""

import io
import json
import sqlite3
import threading
from datetime import datetime, timezone

import pytest
from PIL import Image

from tray_client import config
from tray_client.engine import Engine
from tray_client.untrusted import BadTask, check_task
from tests.tray_client.portal_fixture import Portal, pair_worker
from tests.webapp.blend_fixture import make_project, project_zip

SHA = "a" * 64
SERVER = "http://127.0.0.1:5000"


def claim(*names):
    return {"id": 7, "type": "render", "inputs": [{"name": n, "sha256": SHA, "size": 1} for n in names]}


def test_relative_paths_are_accepted_and_every_way_out_is_refused():
    inputs = check_task(claim("shot.blend", "textures/wood.png", "lib/props.blend"), SERVER, lambda t, n: f"/x/{n}")
    assert [i.name for i in inputs] == ["shot.blend", "textures/wood.png", "lib/props.blend"]
    for names in (["../x.png"], ["/etc/passwd"], ["textures/../../x"], ["C:/Windows/x"], ["a\\b.png"],
                  ["textures//x.png"], ["./x.png"], ["con.png"], ["tex/NUL"], ["a" * 256], ["/".join("a" * 17)],
                  ["Tex/a.png", "tex/A.png"], ["textures", "textures/a.png"], ["a/b.png", "a"]):
        with pytest.raises(BadTask):
            check_task(claim(*names), SERVER, lambda t, n: f"/x/{n}")


# --- a real project through the real worker ------------------------------------------------------------

def magenta_share(data: bytes) -> tuple[float, tuple[int, int]]:
    """The share of pixels Cycles paints for a missing texture (pink: red and blue high, green low)."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        pixels = list(rgb.getdata())
        size = rgb.size
    return sum(1 for r, g, b in pixels if r > 180 and b > 180 and g < 90) / len(pixels), size


@pytest.mark.slow
def test_a_project_zip_renders_with_its_texture_through_a_real_worker(blender, tmp_path):
    root = make_project(tmp_path / "project")
    portal = Portal(tmp_path / "portal").start()
    try:
        worker, config_path, data_dir = pair_worker(portal, tmp_path / "home", "project-node")
        # Measured already, so the portal issues no Bench Score run first (another test covers those).
        with sqlite3.connect(portal.root / "portal.sqlite3") as db:
            db.execute("UPDATE workers SET bench_score = 1000, benchmarked_at = ? WHERE id = ?",
                       (datetime.now(timezone.utc).replace(tzinfo=None).isoformat(" "), worker["id"]))
        # Nothing typed but the frames and samples (kept tiny); the rest comes from the file: 200x150 at 50%.
        spec = {"type": "render", "name": "textured", "frame_end": 2, "samples": 4, "chunk": 2}
        textured = portal.api("POST", "/jobs", data={"spec": json.dumps(spec)},
                              files={"project": ("shot.zip", project_zip(root), "application/zip")})
        assert {d["path"]: d["found"] for d in textured["dependencies"]} == {
            "textures/green.png": True, "lib/props.blend": True}
        # The same scene without its texture, submitted anyway: magenta, which the check below must see.
        untextured = portal.api("POST", "/jobs", data={"spec": json.dumps(
            {**spec, "name": "untextured", "frame_end": 1, "chunk": 1, "allow_missing": True})},
            files={"project": ("shot.zip", project_zip(root, leave_out={"textures/green.png"}), "application/zip")})
        engine = Engine(config.load(config_path, data_dir), idle_backoff=(0.2, 1.0))
        thread = threading.Thread(target=engine.run, daemon=True)
        thread.start()
        try:
            portal.wait_for(lambda: all(portal.job(j["id"])["status"] in ("completed", "failed")
                                        for j in (textured, untextured)), timeout=180, what="both jobs to finish")
        finally:
            engine.stop()
            thread.join(30)
        done = portal.job(textured["id"])
        assert done["status"] == "completed", done
        frames = [(t["id"], o["name"]) for t in done["tasks"] for o in t["outputs"]]
        assert sorted(name for _, name in frames) == ["frame_0001.png", "frame_0002.png"]
        for task_id, name in frames:
            share, size = magenta_share(portal.download_output(textured["id"], task_id, name))
            assert size == (100, 75) and share == 0, (name, share)
        missing = portal.job(untextured["id"])
        assert missing["status"] == "completed", missing
        task = missing["tasks"][0]
        share, _ = magenta_share(portal.download_output(untextured["id"], task["id"], task["outputs"][0]["name"]))
        assert share > 0.5  # the detector sees a missing texture
        # Each distinct file was downloaded once for the tasks of both jobs (they share the .blend and the
        # library; the texture is in one of them).
        assert engine.cache.downloads == 3
    finally:
        portal.close()
