"""Verified work end to end, over the worker and creator APIs, with real Blender: honest providers
render with the Worker App's render runner and check each other with its verify runner; a cheating
provider delivers fakes by hand. What is asserted is what people see: refusals at complete, spot
checks on another account, money pending then available or reversed, a suspended cheater, and a
creator who gets the right frames and pays for none of the fakes."""

import hashlib
import io
import json
import subprocess
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FrozenClock, create_token, make_app, missing
from tests.webapp.dispatch_factories import auth, make_user, make_worker
from tray_client.runners import get_runner
from tray_client.runners.blender import find_blender
from webapp.clock import freeze
from webapp.extensions import db
from webapp.models import LedgerEntry, LedgerKind, Task, Verification
from webapp.services import outputs, storage

pytestmark = pytest.mark.slow

API = "/api/v1"
FRAMES = (1, 2, 3, 4, 5)  # one task each: the first 5 results of a new worker are all checked
SIZE = (64, 48)
RENDER = {"engine": "CYCLES", "samples": 8, "resolution_percent": 100, "format": "PNG"}
BID = "0.60"  # USD per hour, every worker
BID_MICROS = 600_000
TASK_SECONDS = 20  # the frozen clock runs this long between each claim and its complete
VERIFY_SEED = 1234

# 64x48, frames 1-5: a sphere sliding and a cube turning over a floor, a point light and a sun, so
# any crop has edges, shading and shadows in it. Variant 1 is another scene altogether (a monkey,
# another camera, other colours) at the same size: a fake that passes every check at complete.
SCENE = """
import bpy, sys
out, variant = sys.argv[sys.argv.index('--') + 1], int(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 64, 48, 100
s.frame_start, s.frame_end = 1, 5
if variant == 0:
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(-0.8, 0, 0))
else:
    bpy.ops.mesh.primitive_monkey_add(location=(0.5, 0, 0.3))
obj = bpy.context.object
obj.keyframe_insert('location', frame=1)
obj.location.x += 1.2
obj.keyframe_insert('location', frame=5)
mat = bpy.data.materials.new('m'); mat.use_nodes = True
mat.node_tree.nodes['Principled BSDF'].inputs['Base Color'].default_value = (
    (0.8, 0.2, 0.1, 1) if variant == 0 else (0.1, 0.6, 0.3, 1))
obj.data.materials.append(mat)
if variant == 0:
    bpy.ops.mesh.primitive_cube_add(size=0.9, location=(1.3, 0.8, -0.4))
    cube = bpy.context.object
    cube.rotation_euler = (0, 0, 0.3); cube.keyframe_insert('rotation_euler', frame=1)
    cube.rotation_euler = (0, 0, 1.3); cube.keyframe_insert('rotation_euler', frame=5)
    blue = bpy.data.materials.new('b'); blue.use_nodes = True
    blue.node_tree.nodes['Principled BSDF'].inputs['Base Color'].default_value = (0.1, 0.3, 0.9, 1)
    cube.data.materials.append(blue)
bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, -1))
cam = bpy.data.objects.new('Camera', bpy.data.cameras.new('Camera'))
s.collection.objects.link(cam); s.camera = cam
cam.location = (5, -5, 3) if variant == 0 else (-4, -6, 2)
cam.rotation_euler = (1.2, 0, 0.785) if variant == 0 else (1.35, 0, -0.6)
lamp = bpy.data.objects.new('L', bpy.data.lights.new('L', 'POINT'))
lamp.data.energy = 900; lamp.location = (3, -1, 3); s.collection.objects.link(lamp)
sun = bpy.data.objects.new('S', bpy.data.lights.new('S', 'SUN'))
sun.data.energy = 2; sun.rotation_euler = (0.6, 0.2, -0.5); s.collection.objects.link(sun)
s.world = bpy.data.worlds.new('W'); s.world.color = (0.2, 0.3, 0.5) if variant == 0 else (0.5, 0.4, 0.2)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


# -- the scene, rendered once for reference --------------------------------------------------------

@dataclass(frozen=True)
class Scenes:
    blend: Path
    frames: dict  # frame -> the honest PNG, rendered by the render runner
    other: dict  # frame -> the same frame of another scene, same size


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> Scenes:
    blender = find_blender() or missing("Blender not installed (apt-get install blender)")
    folder = tmp_path_factory.mktemp("verified-work")
    rendered = {}
    for variant, name in enumerate(("scene.blend", "other.blend")):
        blend = folder / name
        subprocess.run([str(blender), "-b", "--factory-startup", "--python-expr", SCENE, "--", str(blend),
                        str(variant)], check=True, capture_output=True, timeout=120)
        result = get_runner("render").run(dict(RENDER, blend=name, frames=list(FRAMES)), {name: blend},
                                          folder / f"{name}-frames")
        rendered[name] = {frame: path.read_bytes() for frame, path in zip(FRAMES, result.outputs)}
    return Scenes(folder / "scene.blend", rendered["scene.blend"], rendered["other.blend"])


# -- a small network driven over HTTP ----------------------------------------------------------------

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def micros(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


def reward_micros(seconds: float) -> int:
    """What a task earns: the bid times the compute time the portal observed, half up to a micro-USD."""
    return int((Decimal(BID_MICROS) * Decimal(repr(seconds)) / 3600).to_integral_value(ROUND_HALF_UP))


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


def frame_name(frame: int) -> str:
    return f"frame_{frame:04d}.png"


@dataclass(frozen=True)
class Node:
    """A paired worker: its id and token, and its provider account's API token."""
    id: int
    name: str
    token: str
    account_token: str


@dataclass(frozen=True)
class Delivery:
    """A result the portal accepted: who, which task, and what it paid."""
    worker: str
    task_id: int
    type: str
    seconds: float  # the compute time the portal should count: min(reported, observed)
    reward: int  # micro-USD, from the complete response


@dataclass
class Network:
    """A portal with a creator, provider accounts and their workers, each calling the real API."""
    app: object
    clock: FrozenClock
    folder: Path
    blend: bytes  # the creator's scene
    accepted: list = field(default_factory=list)

    def __post_init__(self):
        self.client = self.app.test_client()
        self.app.config["VERIFY_SEED"] = VERIFY_SEED
        self.creator = create_token(self.app, "creator@example.com")
        self.accounts = {}

    def call(self, method, path, token, **kwargs):
        headers = {**kwargs.pop("headers", {}), **auth(token)}
        return getattr(self.client, method)(API + path, headers=headers, **kwargs)

    def worker(self, account: str, name: str, job_types=("render", "verify")) -> Node:
        email = f"{account}@example.com"
        with self.app.app_context():
            worker_id, token = make_worker(make_user(email), name=name, job_types=job_types, gpu=False, bid=BID)
        if email not in self.accounts:
            self.accounts[email] = create_token(self.app, email)
        return Node(worker_id, name, token, self.accounts[email])

    def submit(self, frames=FRAMES) -> dict:
        spec = {"type": "render", "name": "verified", "frame_start": frames[0], "frame_end": frames[-1],
                "max_price": "5.00", **RENDER}
        response = self.call("post", "/jobs", self.creator, content_type="multipart/form-data",
                             data={"spec": json.dumps(spec), "blend": (io.BytesIO(self.blend), "scene.blend")})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def job(self, job_id: int) -> dict:
        response = self.call("get", f"/jobs/{job_id}", self.creator)
        assert response.status_code == 200
        return response.get_json()

    def zip(self, job_id: int) -> dict[str, bytes]:
        response = self.call("get", f"/jobs/{job_id}/outputs.zip", self.creator)
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(response.data)) as zf:
            return {name: zf.read(name) for name in zf.namelist()}

    def details(self, node: Node) -> dict:
        """The worker's JSON as its provider sees it."""
        response = self.call("get", f"/workers/{node.id}", node.account_token)
        assert response.status_code == 200
        return response.get_json()

    def claim(self, node: Node) -> dict | None:
        response = self.call("post", "/worker/tasks/claim", node.token)
        assert response.status_code in (200, 204), response.get_json()
        return response.get_json() if response.status_code == 200 else None

    def upload(self, node: Node, task: dict, name: str, data: bytes):
        return self.call("put", f"/worker/tasks/{task['id']}/outputs/{name}", node.token, data=data,
                         headers={"X-Content-SHA256": sha(data)}, content_type="application/octet-stream")

    def deliver(self, node: Node, task: dict, files: dict[str, bytes], declared=None, reported: float = 5.0):
        """Upload `files`, then complete with `declared` (default: the files) as the outputs."""
        for name, data in files.items():
            response = self.upload(node, task, name, data)
            assert response.status_code == 201, response.get_json()
        declared = list(files) if declared is None else declared
        self.clock.advance(seconds=TASK_SECONDS)
        response = self.call("post", f"/worker/tasks/{task['id']}/complete", node.token, json={
            "outputs": [{"name": n, "sha256": sha(files[n]), "size": len(files[n])} for n in declared],
            "compute_seconds": reported})
        if response.status_code == 200:
            self.accepted.append(Delivery(node.name, task["id"], task["type"], min(reported, TASK_SECONDS),
                                          micros(response.get_json()["reward"])))
        return response

    def run_honestly(self, node: Node, task: dict):
        """What the Worker App does with a claimed task: download, run the real runner, deliver."""
        workdir = self.folder / node.name / str(task["id"])
        inputs = {}
        for item in task["inputs"]:
            response = self.call("get", item["url"].split(API, 1)[1], node.token)
            assert response.status_code == 200 and sha(response.data) == item["sha256"]
            inputs[item["name"]] = workdir / "inputs" / item["name"]
            inputs[item["name"]].parent.mkdir(parents=True, exist_ok=True)
            inputs[item["name"]].write_bytes(response.data)
        result = get_runner(task["type"]).run(task["params"], inputs, workdir / "work")
        response = self.deliver(node, task, {p.name: p.read_bytes() for p in result.outputs},
                                reported=result.compute_seconds)
        assert response.status_code == 200, response.get_json()
        return response

    def work(self, nodes: list[Node], rounds: int = 40) -> None:
        """The honest workers claim and run tasks in turn, a different one first each round, until none
        of them gets any."""
        for turn in range(rounds):
            busy = False
            for node in nodes[turn % len(nodes):] + nodes[:turn % len(nodes)]:
                task = self.claim(node)
                if task is not None:
                    busy = True
                    self.run_honestly(node, task)
            if not busy:
                return
        pytest.fail(f"the workers still had work after {rounds} rounds")

    def earned(self, node: Node, type: str | None = None) -> int:
        return sum(d.reward for d in self.accepted if d.worker == node.name and type in (None, d.type))

    def ledger(self, **where) -> list[LedgerEntry]:
        with self.app.app_context():
            rows = db.session.execute(db.select(LedgerEntry).filter_by(**where).order_by(LedgerEntry.id))
            return list(rows.scalars())


def network(app, clock, folder, scenes) -> Network:
    return Network(app, clock, folder, scenes.blend.read_bytes())


def assert_frames_are_the_honest_render(files: dict[str, bytes], scenes: Scenes) -> None:
    assert sorted(files) == [frame_name(f) for f in FRAMES]
    for frame in FRAMES:
        assert np.array_equal(pixels(files[frame_name(frame)]), pixels(scenes.frames[frame])), frame


# -- 1. honest work passes its spot checks --------------------------------------------------------

def test_an_honest_workers_frames_pass_their_spot_checks_on_another_account(any_app, clock, scenes, tmp_path):
    net = network(any_app, clock, tmp_path, scenes)
    a1, a2, b1 = net.worker("alice", "a-1"), net.worker("alice", "a-2"), net.worker("bob", "b-1")
    job = net.submit()
    assert job["spec"]["scene"]["spot_checkable"] and len(job["tasks"]) == len(FRAMES)

    while (task := net.claim(a1)) is not None:  # a-1 renders every frame; its own checks never reach it
        assert task["type"] == "render"
        net.run_honestly(a1, task)
    job = net.job(job["id"])
    assert [t["verification"] for t in job["tasks"]] == ["pending"] * len(FRAMES)
    rendered = net.earned(a1)
    assert rendered > 0
    details = net.details(a1)
    assert (micros(details["earnings"]), micros(details["earnings_pending"]), micros(details["earnings_available"])) \
        == (rendered, rendered, 0)
    assert details["record"] == {"checked": 0, "passed": 0, "failed": 0, "check_rate": 1.0}

    assert net.claim(a2) is None  # the checks of alice's results are queued, but not for alice's workers

    delivered = {o["sha256"] for t in job["tasks"] for o in t["outputs"]}
    checked_frames = []
    while (task := net.claim(b1)) is not None:
        assert task["type"] == "verify" and task["job_id"] == job["id"]
        params = task["params"]
        assert params["kind"] == "render" and params["frame"] in FRAMES and params["crops"]
        # The verifier gets the scene and the crop windows, never the result it checks.
        assert [i["name"] for i in task["inputs"]] == ["scene.blend"]
        assert not any(digest in json.dumps(task) for digest in delivered)
        net.run_honestly(b1, task)
        checked_frames.append(params["frame"])
    assert sorted(checked_frames) == list(FRAMES)  # one check per task: a new worker's first 5

    job = net.job(job["id"])
    assert job["status"] == "completed"
    assert [t["verification"] for t in job["tasks"]] == ["passed"] * len(FRAMES)
    assert micros(job["cost"]) == rendered  # the creator pays the renders, not the checks
    details = net.details(a1)
    assert (micros(details["earnings"]), micros(details["earnings_pending"]), micros(details["earnings_available"])) \
        == (rendered, 0, rendered)
    # Five passes in a row after five tasks: the next result is checked with chance 1/5.
    assert details["record"] == {"checked": 5, "passed": 5, "failed": 0, "check_rate": 0.2}
    assert details["status"] != "suspended"

    checking = net.earned(b1)
    assert checking > 0 and net.earned(b1, "verify") == checking
    details = net.details(b1)
    assert (micros(details["earnings"]), micros(details["earnings_pending"])) == (checking, checking)
    clock.advance(seconds=any_app.config["VERIFY_SETTLE_SECONDS"])  # check rewards settle like unsampled ones
    details = net.details(b1)
    assert (micros(details["earnings_pending"]), micros(details["earnings_available"])) == (0, checking)

    assert_frames_are_the_honest_render(net.zip(job["id"]), scenes)
    assert not net.ledger(kind=LedgerKind.REVERSAL)


# -- 2 and 3. a cheating provider among honest ones ------------------------------------------------

@dataclass
class Caught:
    """One run of the cheating scenario, for the tests below to examine."""
    net: Network
    job_id: int
    honest: list
    refused: dict  # case -> (worker, task id, complete's status and JSON, the job's JSON right after)
    fakes: dict  # case -> (worker, task id, reward, worker JSON right after complete)
    extra_uploads: dict  # name -> the response to a PUT of a file the task doesn't deliver
    cheaters: dict  # name -> Node
    own_check_claim: dict  # what the second cheater got while the first one's check was queued
    after_refusals: dict | None  # what the refused worker got when it claimed a fourth time
    now: datetime  # the frozen clock when the scenario ended


REPLACED = b"<b>uploaded, then replaced</b>"
EXTRA_FILES = {"evil.html": b"<script>steal()</script>",
               "x.svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="steal()"/>'}


def deliver_fakes(net: Network, scenes: Scenes) -> Caught:
    honest = [net.worker("alice", "a-1"), net.worker("bob", "b-1")]
    refuser, black, other = (net.worker("carol", name) for name in ("c-refused", "c-black", "c-other"))
    job = net.submit()
    refused = {}

    def refuse(case, files, declared=None):
        task = net.claim(refuser)
        frame = task["params"]["frames"][0]
        response = net.deliver(refuser, task, files(frame), declared(frame) if declared else None)
        refused[case] = (refuser, task["id"], response.status_code, response.get_json(), net.job(job["id"]))

    refuse("random bytes", lambda f: {frame_name(f): hashlib.sha512(b"not a frame").digest() * 40})
    refuse("wrong size", lambda f: {frame_name(f): png(Image.open(io.BytesIO(scenes.frames[f])).resize((32, 24)))})
    refuse("not the job's format", lambda f: {frame_name(f): jpeg(Image.open(io.BytesIO(scenes.frames[f])))})

    after_refusals = net.claim(refuser)  # three refused tasks of this job: blocklisted on it

    fakes = {}
    task = net.claim(black)
    frame = task["params"]["frames"][0]
    # Files the task doesn't deliver are refused at upload, before a byte is stored.
    extra_uploads = {name: net.upload(black, task, name, data) for name, data in EXTRA_FILES.items()}
    # Right size, right name, uploaded over an earlier upload of that name, which is no longer the result.
    assert net.upload(black, task, frame_name(frame), REPLACED).status_code == 201
    response = net.deliver(black, task, {frame_name(frame): png(Image.new("RGB", SIZE))})
    assert response.status_code == 200, response.get_json()
    fakes["black"] = (black, task["id"], micros(response.get_json()["reward"]), net.details(black))

    task = net.claim(other)  # carol's black frame awaits its check: not a check carol may run
    own_check_claim = task
    frame = task["params"]["frames"][0]
    response = net.deliver(other, task, {frame_name(frame): scenes.other[frame]})
    assert response.status_code == 200, response.get_json()
    fakes["other scene"] = (other, task["id"], micros(response.get_json()["reward"]), net.details(other))

    net.work(honest)
    return Caught(net, job["id"], honest, refused, fakes, extra_uploads, {n.name: n for n in (refuser, black, other)},
                  own_check_claim, after_refusals, net.clock.now)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def caught(request, scenes, tmp_path_factory):
    """The cheating scenario, run once per database; each test below re-freezes its clock."""
    folder = tmp_path_factory.mktemp(f"caught-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    app = make_app(folder, url)
    clock = FrozenClock()
    yield deliver_fakes(network(app, clock, folder, scenes), scenes)
    freeze(None)
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def scenario(caught):
    caught.net.clock.set(caught.now)  # another test's teardown may have released the clock
    yield caught
    freeze(None)


@pytest.mark.parametrize("case,culprit,rule", [
    ("random bytes", "frame_0001.png", "is not a readable PNG image"),
    ("wrong size", "frame_0002.png", "is 32x24 pixels; this task renders 64x48"),
    ("not the job's format", "frame_0003.png", "is not a readable PNG image"),
])
def test_a_broken_result_is_refused_at_complete_naming_the_file(scenario, case, culprit, rule):
    worker, task_id, status, body, job = scenario.refused[case]
    assert 400 <= status < 500 and body["error"] == "invalid_output"
    assert culprit in body["message"] and rule in body["message"]
    refused = next(t for t in job["tasks"] if t["id"] == task_id)
    # Back in the queue for someone else, and nothing of the refused result is shown to the creator.
    assert refused["status"] == "queued" and refused["worker_id"] is None and refused["outputs"] == []
    assert refused["reward"] is None
    assert not scenario.net.ledger(worker_id=worker.id)
    details = scenario.net.details(worker)
    assert (details["earnings"], details["earnings_pending"], details["earnings_available"]) == ("0.000000",) * 3


def test_a_refused_result_counts_as_a_failed_attempt_of_its_worker(scenario):
    # Each refused task went back to the head of the queue, yet the worker never got it again; after
    # three it gets nothing more of this job although most of it is still queued.
    claimed = [task_id for _, task_id, _, _, _ in scenario.refused.values()]
    assert len(set(claimed)) == 3
    assert scenario.after_refusals is None
    _, _, _, _, job = scenario.refused["not the job's format"]
    assert job["task_counts"]["queued"] == len(FRAMES)


def test_files_a_task_does_not_deliver_are_refused_at_upload(scenario):
    for name, response in scenario.extra_uploads.items():
        body = response.get_json()
        assert response.status_code == 409 and body["error"] == "unexpected_output", body
        assert name in body["message"] and "frame_" in body["message"]  # it says what the task delivers
    with scenario.net.app.app_context():
        assert not any(storage.path_for(sha(data)).exists() for data in EXTRA_FILES.values())


def test_an_upload_replaced_before_complete_is_deleted(scenario):
    """c-black uploaded its frame over an earlier upload of the same name: the blob collector deletes
    the replaced one once its grace period is over, and keeps every file still referred to."""
    net = scenario.net
    with net.app.app_context():
        assert storage.path_for(sha(REPLACED)).exists()
        net.clock.advance(seconds=net.app.config["BLOB_GRACE_SECONDS"] + 1)
        outputs.collect_unreferenced_blobs()
        assert not storage.path_for(sha(REPLACED)).exists()
    assert len(net.zip(scenario.job_id)) == len(FRAMES)  # the job's frames are all still there


@pytest.mark.parametrize("case", ["black", "other scene"])
def test_a_fake_of_the_right_size_is_caught_by_a_spot_check(scenario, case):
    net = scenario.net
    worker, task_id, reward, at_complete = scenario.fakes[case]
    # Paid at complete, but only as pending money: the result waits for its check.
    assert reward > 0
    assert (micros(at_complete["earnings_pending"]), micros(at_complete["earnings_available"])) == (reward, 0)

    (credit,) = net.ledger(worker_id=worker.id, kind=LedgerKind.TASK_REWARD)
    (reversal,) = net.ledger(worker_id=worker.id, kind=LedgerKind.REVERSAL)
    assert (credit.task_id, credit.amount_micros) == (task_id, reward)
    assert (reversal.reverses_id, reversal.amount_micros) == (credit.id, -reward)

    details = net.details(worker)
    assert details["status"] == "suspended" and f"task {task_id}" in details["suspended_reason"]
    assert (details["earnings"], details["earnings_pending"], details["earnings_available"]) == ("0.000000",) * 3
    assert details["record"] == {"checked": 1, "passed": 0, "failed": 1, "check_rate": 1.0}

    task = next(t for t in net.job(scenario.job_id)["tasks"] if t["id"] == task_id)
    assert task["status"] == "completed" and task["worker_id"] in {n.id for n in scenario.honest}
    assert task["verification"] == "passed"  # the honest re-render, checked in turn


def test_a_check_never_goes_to_the_account_whose_result_it_checks(scenario):
    # c-other claimed while c-black's check was queued above every render: it got a render.
    assert scenario.own_check_claim["type"] == "render"
    carol = {n.id for n in scenario.cheaters.values()}
    with scenario.net.app.app_context():
        rows = db.session.execute(db.select(Verification.provider_id, Task.worker_id)
                                  .join(Task, Task.id == Verification.verify_task_id)).all()
    assert rows and all(verifier not in carol for _, verifier in rows)


def test_the_job_completes_with_the_honest_frames_and_bills_no_fake(scenario, scenes):
    net = scenario.net
    job = net.job(scenario.job_id)
    honest = {n.id for n in scenario.honest}
    assert job["status"] == "completed"
    assert all(t["status"] == "completed" and t["worker_id"] in honest for t in job["tasks"])
    assert [t["verification"] for t in job["tasks"]] == ["passed"] * len(FRAMES)
    files = net.zip(scenario.job_id)
    assert_frames_are_the_honest_render(files, scenes)  # no evil.html, x.svg, replaced upload, black or other scene
    # The creator pays each frame once, at the honest worker's reward, and neither fake.
    renders = [d for d in net.accepted if d.type == "render" and d.worker in {n.name for n in scenario.honest}]
    assert sorted(d.task_id for d in renders) == sorted(t["id"] for t in job["tasks"])
    assert micros(job["cost"]) == sum(d.reward for d in renders) == sum(micros(t["reward"]) for t in job["tasks"])


def test_honest_workers_lose_nothing(scenario):
    net = scenario.net
    for node in scenario.honest:
        delivered = [d for d in net.accepted if d.worker == node.name]
        assert delivered and all(d.reward == reward_micros(d.seconds) for d in delivered)
        details = net.details(node)
        assert details["status"] != "suspended" and details["suspended_reason"] is None
        assert micros(details["earnings"]) == sum(reward_micros(d.seconds) for d in delivered)
        assert details["record"]["failed"] == 0 and details["record"]["passed"] == details["record"]["checked"] > 0
        assert not net.ledger(worker_id=node.id, kind=LedgerKind.REVERSAL)
    net.clock.advance(seconds=net.app.config["VERIFY_SETTLE_SECONDS"])
    for node in scenario.honest:
        details = net.details(node)
        assert details["earnings_pending"] == "0.000000" and details["earnings_available"] == details["earnings"]


def test_a_suspended_worker_gets_no_more_work(scenario):
    net = scenario.net
    job = net.submit(frames=(1,))
    for name in ("c-black", "c-other"):
        assert net.claim(scenario.cheaters[name]) is None
    # The same account's worker that was only refused (not caught) still gets the new job's task.
    refuser = scenario.cheaters["c-refused"]
    task = net.claim(refuser)
    assert task is not None and task["job_id"] == job["id"]
    assert net.call("post", f"/worker/tasks/{task['id']}/hand-back", refuser.token).status_code == 200
