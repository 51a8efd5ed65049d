"""A two-GPU node's details page in a real browser: each device with its state, current task and earnings,
and the device beside each task of the Task List; at 1366 and 390 px (nothing wider than the phone)."""

import shutil
from pathlib import Path

import pytest

from tests.webapp.dispatch_factories import make_job, make_worker
from webapp.extensions import db
from webapp.models import Task, TaskStatus, Worker
from webapp.services import accounts, dispatch

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
SHOTS = Path("/tmp/shots/device-slots")
SLOTS = [{"id": "gpu0", "kind": "CUDA", "name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564},
         {"id": "gpu1", "kind": "CUDA", "name": "NVIDIA GeForce RTX 3090", "memory_mb": 24576},
         {"id": "cpu", "kind": "CPU", "name": "AMD Ryzen 9 7950X", "memory_mb": None}]


def seed(app) -> tuple[int, int]:
    """Ada's farm box: gpu0 rendering a task, gpu1 idle after earning $1.25, the CPU slot idle."""
    with app.app_context():
        user = accounts.sign_up(EMAIL, PASSWORD)
        worker_id, _ = make_worker(owner_id=user.id, name="rack3-node01", slots=None, bench_score=1000)
        worker = db.session.get(Worker, worker_id)
        worker.capabilities = {**worker.capabilities, "slots": SLOTS}
        worker.gpu_name = SLOTS[0]["name"]
        db.session.commit()
        _, (done_id, *_rest) = make_job(tasks=3, name="spring campaign, shot 12")
        done = db.session.get(Task, done_id)
        done.status, done.worker_id, done.slot, done.reward_micros = TaskStatus.COMPLETED, worker_id, "gpu1", 1_250_000
        db.session.commit()
        running = dispatch.claim_task(db.session.get(Worker, worker_id), slot="gpu0")
        running.progress = 0.42
        db.session.commit()
        return worker_id, running.id


def shoot(page, screenshot, name):
    path = screenshot(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def test_the_details_page_shows_each_device(browser, portal, screenshot):
    app, base = portal
    worker_id, running_id = seed(app)
    for width, height in ((1366, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"{base}/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{base}/workers/{worker_id}")
        table = page.locator(".slots-table")
        assert table.locator("tbody tr").count() == 3
        gpu0 = table.locator('tr[data-slot="gpu0"]').inner_text()
        assert "Busy" in gpu0 and f"Task #{running_id}" in gpu0 and "42%" in gpu0
        gpu1 = table.locator('tr[data-slot="gpu1"]').inner_text()
        assert "Idle" in gpu1 and "$1.25" in gpu1 and "RTX 3090" in gpu1
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        table.scroll_into_view_if_needed()
        shoot(page, screenshot, f"worker-devices-{width}")
        page.goto(f"{base}/workers/{worker_id}?tab=tasks")
        devices = page.locator('#worker-tasks td[data-label="Device"]').all_inner_texts()
        assert sorted(devices) == ["gpu0", "gpu1"]
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        shoot(page, screenshot, f"worker-task-devices-{width}")
        context.close()
