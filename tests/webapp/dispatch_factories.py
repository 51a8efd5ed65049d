"""Rows for the dispatch tests: workers with tokens and capabilities, jobs with queued tasks and inputs."""

import hashlib
import io

from webapp import money
from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import Job, JobInput, JobType, Task, User, Worker
from webapp.security import hash_password, new_token, token_hash
from webapp.services import storage

_password_hash = None


def make_user(email: str = "provider@example.com") -> int:
    """A user row (argon2 once per process: these tests create many users)."""
    global _password_hash
    user = db.session.execute(db.select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        _password_hash = _password_hash or hash_password("correct horse battery")
        user = User(email=email, password_hash=_password_hash)
        db.session.add(user)
        db.session.commit()
    return user.id


def make_worker(owner_id: int | None = None, name: str = "node", job_types=("render", "upscale"), gpu: bool = True,
                bid: str | None = None, bench_score: int | None = None, seen: bool = True,
                slots: int | None = 16) -> tuple[int, str]:
    """A paired worker that said hello; returns (id, bearer token). It reports `slots` devices (a farm
    box by default, so a test can hold several tasks on one worker; None: one task at a time)."""
    owner_id = owner_id or make_user()
    token = new_token("pwk")
    now = utcnow()
    worker = Worker(owner_id=owner_id, name=name, token_hash=token_hash(token), paired_at=now,
                    capabilities={"job_types": list(job_types), "gpu": gpu,
                                  "devices": ["CPU"] + (["CUDA"] if gpu else []),
                                  **({"slots": [{"id": f"gpu{i}", "kind": "gpu", "name": "GPU", "memory_mb": None}
                                                for i in range(slots)]} if slots else {})},
                    gpus=[], renderers={}, compliance=[], mining_config={}, bench_details={},
                    bid_micros=money.to_micros(bid) if bid is not None else None, bench_score=bench_score,
                    last_heartbeat_at=now if seen else None, earnings_micros=0, compute_seconds=0.0)
    db.session.add(worker)
    db.session.commit()
    return worker.id, token


def make_job(owner_id: int | None = None, tasks: int = 1, type: str = "render", priority: int = 0,
             device: str = "any", max_price: str | None = None, name: str = "job",
             input_bytes: bytes | None = b"BLENDER-v300 fake scene") -> tuple[int, list[int]]:
    """A queued job of `tasks` tasks (all sharing one input); returns (job id, task ids)."""
    owner_id = owner_id or make_user("creator@example.com")
    job_type = JobType(type)
    max_price_micros = money.to_micros(max_price) if max_price is not None else None
    job = Job(owner_id=owner_id, name=name, type=job_type, spec={"type": type}, software="Blender · Cycles",
              priority=priority, device=device, max_price_micros=max_price_micros)
    db.session.add(job)
    db.session.flush()
    input_names = []
    if input_bytes is not None:
        stored = storage.put_bytes(input_bytes)
        db.session.flush()  # the blob's row before the row that refers to it
        input_name = "scene.blend" if job_type == JobType.RENDER else "photo.png"
        db.session.add(JobInput(job_id=job.id, name=input_name, sha256=stored.sha256, size=stored.size))
        input_names = [input_name]
    rows = []
    for seq in range(tasks):
        params = {"blend": "scene.blend", "frames": [seq + 1], "engine": "CYCLES", "samples": 16,
                  "resolution_percent": 50, "format": "PNG", "device": device} if job_type == JobType.RENDER \
            else {"image": "photo.png", "scale": 4, "model": "realesrgan-x4plus"}
        rows.append(Task(job_id=job.id, seq=seq, type=job_type, params=params, input_names=input_names,
                         priority=priority, device=device, max_price_micros=max_price_micros))
    db.session.add_all(rows)
    db.session.commit()
    return job.id, [t.id for t in rows]


def make_tasks_bulk(job_id: int, count: int, type: str = "render") -> None:
    """Many queued tasks in one INSERT (the race tests need thousands)."""
    job_type = JobType(type)
    db.session.execute(db.insert(Task), [
        {"job_id": job_id, "seq": i, "type": job_type, "params": {"frames": [i + 1]}, "input_names": [],
         "priority": 0, "device": "any", "status": "queued", "attempts": 0, "progress": 0.0,
         "created_at": utcnow()}
        for i in range(count)])
    db.session.commit()


def frame_png(n: int = 0, size=(32, 18)) -> bytes:
    """A real PNG frame (each `n` different): what the result checks at complete accept as a render."""
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", size, (n % 256, (n * 7) % 256, 90)).save(out, "PNG")
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
