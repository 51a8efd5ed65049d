"""A creator's scene cannot touch the provider's files: crafted .blend files rendered by the real
worker are refused before a pixel is rendered and leave nothing outside the task folder; renderers run
in bubblewrap where it is installed; outputs carry no path metadata."""

import hashlib
import socket
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import missing
from tests.tray_client.conftest import DATA
from tests.tray_client.portal_fixture import FakeClient
from tray_client import compliance, config
from tray_client.engine import Engine
from tray_client.runners import blender as blender_mod, sandbox
from tray_client.runners.base import RunFailed, run_process
from tray_client.runners.blender import BlenderRunner
from tray_client.runners.metadata import strip_path_metadata
from tray_client.runners.realesrgan import RealesrganRunner
from tray_client.runners.verify import VerifyRunner

RENDER = {"blend": "hostile.blend", "frames": [1], "engine": "CYCLES", "samples": 1,
          "resolution_percent": 100, "format": "PNG", "device": "any"}


@pytest.fixture(scope="session")
def bwrap():
    return sandbox.usable_bwrap() or missing("bubblewrap (bwrap) not installed or cannot create "
                                             "namespaces here (apt-get install bubblewrap)")


def make_hostile(blender, out: Path, kind: str, path: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(blender), "-b", "--factory-startup", "-noaudio", "--python",
                    str(DATA / "make_hostile_scene.py"), "--", str(out), kind, path],
                   check=True, capture_output=True, timeout=120)
    return out


def files_outside(root: Path, task: Path) -> set[tuple[str, int]]:
    """Every file and folder under root but outside the task folder, with sizes."""
    found = set()
    for path in root.rglob("*"):
        if task != path and task not in path.parents:
            found.add((str(path), path.stat().st_size if path.is_file() else -1))
    return found


@pytest.fixture
def provider(tmp_path):
    """The provider's machine: private files beside and above the data folder, and a task folder
    where the engine would put it (data/work/task-1, the scene in its inputs/)."""
    private = tmp_path / "home" / "provider"
    private.mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(private / "secret.png")
    work = tmp_path / "data" / "work"
    work.mkdir(parents=True)
    # What another creator's finished frame waiting next to the task looks like.
    Image.new("RGB", (8, 8), (0, 255, 0)).save(work / "secret.png")
    return {"root": tmp_path, "private": private, "task": work / "task-1"}


HOSTILE = {
    "absolute texture": ("texture", lambda p: str(p["private"] / "secret.png")),
    "relative texture climbing out": ("texture", lambda p: "//../../secret.png"),
    "fluid cache outside": ("fluid", lambda p: str(p["private"] / "fluid_cache")),
    "point cache outside": ("pointcache", lambda p: str(p["private"] / "particles")),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_scene_reaching_outside_its_task_folder_is_refused(blender, provider, tmp_path, case):
    kind, path_for = HOSTILE[case]
    raw = path_for(provider)
    blend = make_hostile(blender, tmp_path / "creator" / "hostile.blend", kind, raw)
    task = provider["task"]
    before = files_outside(provider["root"], task)
    with pytest.raises(RunFailed) as caught:
        BlenderRunner().run(RENDER, {"hostile.blend": blend}, task)
    failure = caught.value
    assert failure.kind == "unsafe_scene" and failure.retryable is False
    assert raw in failure.message  # named as the scene wrote it
    assert str(provider["root"]) not in failure.message.replace(raw, "")  # nothing of ours revealed
    assert not list(task.glob("frame_*"))  # not a pixel rendered
    assert files_outside(provider["root"], task) == before  # no cache folder written anywhere


def test_the_same_scene_with_paths_inside_its_folder_renders(blender, provider, tmp_path):
    blend = make_hostile(blender, tmp_path / "creator" / "hostile.blend", "texture", "//textures/wood.png")
    result = BlenderRunner().run(RENDER, {"hostile.blend": blend}, provider["task"])
    assert [p.name for p in result.outputs] == ["frame_0001.png"]


def test_the_verify_runner_refuses_the_same_scenes(blender, provider, tmp_path):
    blend = make_hostile(blender, tmp_path / "creator" / "hostile.blend", "texture",
                         str(provider["private"] / "secret.png"))
    params = {"kind": "render", "blend": "hostile.blend", "frame": 1, "engine": "CYCLES", "samples": 1,
              "resolution_percent": 100, "format": "PNG", "device": "any",
              "crops": [{"min_x": 0, "max_x": 0.5, "min_y": 0, "max_y": 0.5}]}
    with pytest.raises(RunFailed) as caught:
        VerifyRunner().run(params, {"hostile.blend": blend}, provider["task"])
    assert caught.value.kind == "unsafe_scene"
    assert not list(provider["task"].glob("crop_*"))


def test_the_engine_reports_a_refused_scene_as_a_final_failure(blender, provider, tmp_path):
    blend = make_hostile(blender, tmp_path / "creator" / "hostile.blend", "texture",
                         str(provider["private"] / "secret.png"))
    data = blend.read_bytes()
    client = FakeClient(tasks=[{"id": 1, "job_id": 2, "type": "render", "params": RENDER, "inputs": [
        {"name": "hostile.blend", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}]}],
        files={"hostile.blend": data})
    cfg = config.WorkerConfig(path=tmp_path / "worker.json", data_dir=provider["root"] / "data",
                              server_url=client.server_url, worker_id=1, token="pwk_test")
    cfg.settings.update(auto_benchmark=False, auto_speedtest=False)
    probe = lambda *a: {"renderers": {"blender": {"version": "3.4.1"}, "realesrgan": {}}}  # noqa: E731
    assert Engine(cfg, client=client, probe=probe).run(once=True) == 1
    fail = next(c for c in client.calls if c[0] == "fail")
    assert fail[3] is False and fail[4] == "unsafe_scene" and "secret.png" in fail[2]
    assert "upload" not in client.names()


# --- the bubblewrap layer ---------------------------------------------------------------------------

def test_renders_upscales_and_verifications_run_inside_bwrap(bwrap, blender, scene, tmp_path, monkeypatch):
    seen = []

    def recording(argv, **kwargs):
        seen.append(argv)
        return run_process(argv, **kwargs)

    monkeypatch.setattr(blender_mod, "run_process", recording)
    from tray_client.runners import realesrgan
    monkeypatch.setattr(realesrgan, "run_process", recording)
    BlenderRunner().run({**RENDER, "blend": "cube.blend"}, {"cube.blend": scene}, tmp_path / "render")
    crops = {"kind": "render", "blend": "cube.blend", "frame": 1, "engine": "CYCLES", "samples": 1,
             "resolution_percent": 100, "format": "PNG", "device": "any",
             "crops": [{"min_x": 0, "max_x": 0.5, "min_y": 0, "max_y": 0.5}]}
    VerifyRunner().run(crops, {"cube.blend": scene}, tmp_path / "verify")
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "in.png")
    RealesrganRunner().run({"image": "in.png", "scale": 2, "model": "lanczos"}, {"in.png": tmp_path / "in.png"},
                           tmp_path / "upscale")
    assert len(seen) == 3 and all(argv[0] == bwrap and "--unshare-all" in argv for argv in seen)
    assert all("/home" not in argv and "/root" not in argv for argv in seen)


def test_inside_bwrap_only_the_task_folder_is_there_and_no_network(bwrap, provider):
    task = provider["task"]
    (task / "inputs").mkdir(parents=True)
    secret = provider["private"] / "secret.png"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    probe = (f"import os, socket\n"
             f"print('secret', os.path.exists({str(secret)!r}))\n"
             f"print('neighbour', os.path.exists({str(task.parent / 'secret.png')!r}))\n"
             f"open('written', 'w').write('ok')\n"
             f"try:\n open('inputs/x', 'w')\n print('inputs writable')\n"
             f"except OSError:\n print('inputs read-only')\n"
             f"try:\n socket.create_connection(('127.0.0.1', {port}), timeout=2); print('net open')\n"
             f"except OSError:\n print('net closed')\n")
    try:
        code, out, _ = run_process(sandbox.wrap(["/usr/bin/python3", "-c", probe], task), cwd=task)
    finally:
        listener.close()
    assert code == 0, out
    assert "secret False" in out and "neighbour False" in out
    assert "inputs read-only" in out and "net closed" in out
    assert (task / "written").read_text() == "ok"


def test_security_compliance_says_what_protects_this_machine(monkeypatch):
    check = compliance.renderer_sandbox()
    if sandbox.usable_bwrap():
        assert check["status"] == "pass" and "bubblewrap" in check["reason"]
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    check = compliance.renderer_sandbox()
    assert check["status"] == "warn" and "install bubblewrap" in check["reason"]
    monkeypatch.setattr(sandbox, "LINUX", False)
    assert "Windows" in compliance.renderer_sandbox()["reason"]


# --- output metadata --------------------------------------------------------------------------------

def png_chunks(path: Path) -> list[tuple[bytes, bytes]]:
    data, pos, chunks = path.read_bytes(), 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def test_rendered_frames_carry_no_path_metadata(blender, scene, tmp_path):
    task = tmp_path / "data" / "work" / "task-7"
    for fmt in ("PNG", "JPEG"):
        result = BlenderRunner().run({**RENDER, "blend": "cube.blend", "engine": "BLENDER_WORKBENCH",
                                      "format": fmt}, {"cube.blend": scene}, task)
        data = result.outputs[0].read_bytes()
        assert str(tmp_path).encode() not in data and b"cube.blend" not in data
        if fmt == "PNG":
            assert not [kind for kind, _ in png_chunks(result.outputs[0]) if kind in (b"tEXt", b"zTXt", b"iTXt")]


def test_stripping_keeps_every_pixel_bit_identical(blender, scene, tmp_path):
    subprocess.run([str(blender), "-b", "--factory-startup", "-noaudio", str(scene), "-E", "BLENDER_WORKBENCH",
                    "-o", str(tmp_path / "raw_#"), "-F", "PNG", "-f", "1"], check=True, capture_output=True,
                   timeout=120)
    raw = tmp_path / "raw_1.png"
    assert any(kind == b"tEXt" and str(scene).encode() in body for kind, body in png_chunks(raw))
    clean = tmp_path / "clean.png"
    clean.write_bytes(raw.read_bytes())
    assert strip_path_metadata(clean) is True
    assert [c for c in png_chunks(raw) if c[0] != b"tEXt"] == png_chunks(clean)  # IDAT untouched
    with Image.open(raw) as a, Image.open(clean) as b:
        assert a.tobytes() == b.tobytes() and a.mode == b.mode
    assert strip_path_metadata(clean) is False  # nothing left to remove

