"""A realistic demo account: workers in every status with months of tasks, earnings, mining and uptime history.

Its rows are marked `demo`: no real worker can claim a demo task (claimable(), in the dispatch query), and
the portal keeps the demo's connected workers heartbeating (pulse_all(), a periodic job), as they have no
app behind them.
"""

import io
import random
from collections import defaultdict
from datetime import datetime, timedelta

from ..clock import utcnow
from ..extensions import db
from ..models import (Job, JobInput, JobStatus, JobType, LedgerEntry, LedgerKind, MiningReport, PresenceInterval,
                      Task, TaskEvent, TaskEventKind, TaskOutput, TaskStatus, User, Worker, WorkerDailyStat,
                      WorkerState)
from ..security import hash_password, new_token, token_hash
from . import NotFound, accounts

SEED = 20240611  # the same shape every run (relative to now)
HISTORY_DAYS = 120
PREVIEW_OUTPUTS = 24  # recent render tasks that get a real (small) PNG output to preview

# (name, memory MB, driver, typical bench score)
GPUS = [
    ("NVIDIA GeForce RTX 4090", 24564, "551.86", 3900),
    ("NVIDIA GeForce RTX 4080", 16376, "551.86", 2950),
    ("NVIDIA GeForce RTX 4070 Ti", 12282, "546.33", 2300),
    ("NVIDIA GeForce RTX 3090", 24576, "535.154.05", 2250),
    ("NVIDIA GeForce RTX 3080", 10240, "546.33", 1900),
    ("NVIDIA GeForce RTX 3060", 12288, "537.58", 1050),
    ("NVIDIA RTX A5000", 24564, "535.154.05", 2100),
    ("NVIDIA GeForce RTX 2070 SUPER", 8192, "537.58", 800),
]
CPUS = ["AMD Ryzen 9 7950X 16-Core Processor", "Intel(R) Core(TM) i7-12700K", "AMD Ryzen 7 5800X 8-Core Processor",
        "Intel(R) Core(TM) i9-13900K", "AMD EPYC 7443P 24-Core Processor", "Intel(R) Xeon(R) W-2245 CPU @ 3.90GHz"]
WINDOWS = "Windows-10-10.0.22631-SP0"  # how Python names Windows 11 23H2
LINUX = "Linux-6.1.0-18-amd64-x86_64-with-glibc2.36"
COUNTRIES = ["Germany", "United States", "Vietnam", "Japan", "Brazil", "France", "Poland", "Canada", "Netherlands"]
# A name that names a GPU gets that GPU (a "Home lab 3090" with an RTX 4070 Ti reads as a bug).
HOME_NAMES = ["Studio PC", "Gaming rig", "Office workstation", "Render box", "Living-room PC", "Home lab 3090",
              "Design laptop dock", "Attic tower", "Night-shift PC", "Editing suite", "Spare 4080", "Dad's PC",
              "Basement server", "Old 2070 box", "Animation desk", "Lab bench 2", "Garage rig", "Backup workstation",
              "Loft PC", "Compositing node", "Streaming PC", "Weekend rig", "Archviz station", "Kid's gaming PC"]
JOB_NAMES = {
    "cycles": ["Forest flythrough", "Product turntable", "Archviz interior", "Car commercial shot", "Character lookdev",
               "Ocean sunset", "Kitchen render", "Watch macro", "Sci-fi corridor"],
    "eevee": ["Motion graphics intro", "Stylised village", "Logo sting", "Explainer scene", "Toon walk cycle"],
    "upscale": ["Photo archive batch", "Texture upscale", "Anime frames", "Drone stills", "Old family scans"],
}
SOFTWARE = {"cycles": "Blender · Cycles", "eevee": "Blender · EEVEE", "upscale": "Real-ESRGAN x4"}
ERROR_MESSAGES = ["Blender not found: set blender_path in Settings",
                  "3 tasks failed in a row (CUDA error: an illegal memory access was encountered)"]
CHECKS = [
    ("Firewall", "pass", "The system firewall is on."),
    ("OS updates", "warn", "The last security update is 41 days old."),
    ("Disk encryption", "pass", "The data directory is on an encrypted volume."),
    ("Isolated workspace", "pass", "Tasks run in a private directory with an empty PYTHONPATH."),
    ("Blender auto-run scripts", "pass", "Blender starts with --disable-autoexec."),
    ("App version", "pass", "1.0.0 is the current version."),
]


# Demo workers whose last heartbeat is this recent are the "connected" ones pulse_all() keeps alive; the
# seeded offline ones were last seen at least 18 minutes before seeding.
LIVE_WITHIN = timedelta(minutes=15)


def claimable(job_id):
    """SQL condition for the dispatch query: the task's job is not demo data (its inputs do not exist, and
    a real worker failing it would count against that worker)."""
    return ~db.select(Job.id).where(Job.id == job_id, Job.demo.is_(True)).exists()


def _gpu_for(name: str, rng):
    """The GPU a worker's name promises ("Spare 4080" -> RTX 4080), else a random one."""
    for gpu in GPUS:
        model = gpu[0].split()[-2] if gpu[0].endswith("SUPER") else gpu[0].split()[-1]
        if model.isdigit() and model in name:
            return gpu
    return rng.choice(GPUS)


def _status_plan(n: int) -> list[str]:
    """How many workers of each status: every status present, most of them working."""
    shares = [("online", .28), ("busy", .25), ("offline", .19), ("pending", .1), ("paused", .09), ("error", .09),
              ("suspended", .03)]
    plan = [status for status, share in shares for _ in range(max(1, round(n * share)))] if n >= 6 else \
        [s for s, _ in shares][:n]
    while len(plan) > n:
        plan.remove("online" if plan.count("online") > 1 else "busy")
    while len(plan) < n:
        plan.append("online")
    return plan


def _wipe(user_id: int) -> None:
    """Remove the account's workers and jobs with everything hanging off them (a re-run starts clean)."""
    workers = db.select(Worker.id).where(Worker.owner_id == user_id).scalar_subquery()
    jobs = db.select(Job.id).where(Job.owner_id == user_id).scalar_subquery()
    tasks = db.select(Task.id).where(db.or_(Task.job_id.in_(jobs), Task.worker_id.in_(workers))).scalar_subquery()
    for statement in (
        db.delete(TaskOutput).where(TaskOutput.task_id.in_(tasks)),
        db.delete(TaskEvent).where(db.or_(TaskEvent.task_id.in_(tasks), TaskEvent.worker_id.in_(workers))),
        db.delete(LedgerEntry).where(db.or_(LedgerEntry.worker_id.in_(workers), LedgerEntry.job_id.in_(jobs),
                                            LedgerEntry.task_id.in_(tasks))),
        db.delete(MiningReport).where(MiningReport.worker_id.in_(workers)),
        db.delete(WorkerDailyStat).where(WorkerDailyStat.worker_id.in_(workers)),
        db.delete(PresenceInterval).where(PresenceInterval.worker_id.in_(workers)),
    ):
        db.session.execute(statement)
    db.session.execute(db.delete(Task).where(Task.id.in_(tasks)))
    db.session.execute(db.delete(JobInput).where(JobInput.job_id.in_(jobs)))
    db.session.execute(db.delete(Job).where(Job.owner_id == user_id))
    db.session.execute(db.delete(Worker).where(Worker.owner_id == user_id))


def _next_ids(*models) -> dict:
    return {m: int(db.session.execute(db.select(db.func.coalesce(db.func.max(m.id), 0))).scalar_one()) + 1
            for m in models}


def _fix_sequences(*models) -> None:
    """PostgreSQL: explicit ids leave the serial sequences behind; move them past the new rows."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    for model in models:
        table = model.__tablename__
        db.session.execute(db.text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 1) FROM {table}))"))


def _spans(rng, start: datetime, end: datetime, live: bool, now: datetime) -> list[tuple[datetime, datetime]]:
    """Online stretches from start to end; a live worker's last one is still open (ends now)."""
    spans = []
    t = start
    while t < end:
        length = timedelta(hours=min(200, max(1.0, rng.expovariate(1 / 40))))
        stop = min(t + length, end)
        spans.append((t, stop))
        t = stop + timedelta(hours=min(60, max(0.1, rng.expovariate(1 / 7))))
    if live:
        session_start = now - timedelta(hours=rng.uniform(0.5, 60))
        spans = [(a, min(b, session_start - timedelta(minutes=10))) for a, b in spans if a < session_start - timedelta(minutes=20)]
        spans.append((session_start, now))
    return [(a, b) for a, b in spans if b > a]


def _png(label: int, rng) -> bytes:
    from PIL import Image, ImageDraw
    image = Image.new("RGB", (320, 180))
    draw = ImageDraw.Draw(image)
    top, bottom = [rng.randint(20, 235) for _ in range(3)], [rng.randint(20, 235) for _ in range(3)]
    for y in range(180):
        mix = y / 179
        draw.line([(0, y), (319, y)], fill=tuple(int(a + (b - a) * mix) for a, b in zip(top, bottom)))
    draw.ellipse([120 + label % 60, 50, 200 + label % 60, 130], fill=(250, 240, 220))
    draw.text((10, 160), f"frame {label:04d}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def seed(email: str, password: str, workers: int = 36, days: int = HISTORY_DAYS, now: datetime | None = None) -> User:
    """Create (or refresh) the demo account `email` with `workers` workers and `days` days of history."""
    now = now or utcnow()
    rng = random.Random(SEED)
    try:
        user = accounts.user_by_email(email)
        user.password_hash = hash_password(password)
        _wipe(user.id)
        db.session.commit()
    except NotFound:
        user = accounts.sign_up(email, password)
    if not user.wallet_address:
        user.wallet_address = "0x7a3F9c2E41d0B5a8C6e19D2f04B7e3A1c5D8f260"

    ids = _next_ids(Worker, Job, Task, LedgerEntry, MiningReport, TaskEvent, PresenceInterval)
    worker_rows, presence_rows, task_rows, ledger_rows, event_rows, mining_rows = [], [], [], [], [], []
    daily = defaultdict(lambda: {"task_earnings_micros": 0, "mining_earnings_micros": 0, "tasks_completed": 0,
                                 "tasks_failed": 0, "compute_seconds": 0.0})
    profiles = []
    farm_no = 0
    home_names = list(HOME_NAMES)
    rng.shuffle(home_names)

    # --- workers and their online history -----------------------------------------------------------
    for index, status in enumerate(_status_plan(workers)):
        worker_id = ids[Worker] + index
        farm = index % 3 == 2
        if farm:
            farm_no += 1
            name = f"farm-a-node{farm_no:02d}"
        else:
            name = home_names.pop() if home_names else f"Workstation {index + 1}"
        gpu = GPUS[3] if farm else _gpu_for(name, rng)
        gpu_count = rng.choice([2, 4]) if farm else 1
        cpu_only = not farm and index % 11 == 7 and not any(ch.isdigit() for ch in name)
        gpus = [] if cpu_only else [{"name": gpu[0], "memory_mb": gpu[1], "driver": gpu[2],
                                     "utilization": 0, "temperature": rng.randint(38, 52)}] * gpu_count
        bench = int((300 if cpu_only else gpu[3] * (1 + 0.8 * (gpu_count - 1))) * rng.uniform(.9, 1.1))
        bid = rng.choice([300_000, 350_000, 400_000, 450_000, 500_000, 600_000, 750_000, 900_000])
        age_days = rng.uniform(6, 20) if status == "pending" else rng.uniform(min(20, days / 2), days)
        created = now - timedelta(days=age_days)
        row = {
            "id": worker_id, "owner_id": user.id, "name": name, "created_at": created, "updated_at": created,
            "token_hash": token_hash(new_token("pwk")), "gpus": [], "renderers": {}, "capabilities": {},
            "compliance": [], "mining_config": {}, "bench_details": {}, "earnings_micros": 0, "compute_seconds": 0.0,
            "state": None, "state_message": None, "last_heartbeat_at": None,
            "suspended_at": None, "suspended_reason": None, "demo": True,
        }
        profiles.append({"id": worker_id, "status": status, "bench": bench, "bid": bid, "row": row,
                         "mining": not cpu_only and rng.random() < .45, "spans": []})
        worker_rows.append(row)
        if status == "pending":
            continue
        paired = created + timedelta(minutes=rng.uniform(5, 90))
        live = status != "offline"
        end = now if live else now - timedelta(hours=rng.uniform(.3, 24 * 9))
        spans = _spans(rng, paired, end, live, now)
        profiles[-1]["spans"] = spans
        windows = rng.random() < .5 and not farm
        last_seen = now - timedelta(seconds=rng.uniform(1, 12)) if live else spans[-1][1]
        state = {"online": WorkerState.IDLE, "busy": WorkerState.BUSY, "paused": WorkerState.PAUSED,
                 "error": WorkerState.ERROR, "suspended": WorkerState.IDLE,
                 "offline": rng.choice([WorkerState.IDLE, WorkerState.BUSY])}[status]
        checks = [{"check": c, "status": s, "reason": r} for c, s, r in CHECKS]
        if windows:
            checks[1] = {"check": "OS updates", "status": "pass", "reason": "Windows Update ran 3 days ago."}
        if status == "error":
            checks[5] = {"check": "App version", "status": "warn", "reason": "0.9.2 is older than the current 1.0.0."}
        if index % 7 == 4:
            checks[2] = {"check": "Disk encryption", "status": "fail", "reason": "The data directory is not encrypted."}
        country = None if index % 9 == 5 else rng.choice(COUNTRIES)
        row.update({
            "paired_at": paired, "app_version": "0.9.2" if status == "error" else "1.0.0",
            "os": WINDOWS if windows else LINUX,
            "hostname": name.lower().replace(" ", "-").replace("'", "") if not farm else name,
            "cpu": rng.choice(CPUS[4:] if farm else CPUS[:4]),
            "ram_mb": rng.choice([131072, 262144]) if farm else rng.choice([16384, 32768, 32768, 65536]),
            "gpus": gpus, "gpu_name": gpus[0]["name"] if gpus else None,
            "renderers": {"blender": {"version": "3.4.1"}, **({} if cpu_only else {"realesrgan": {"version": "0.2.0"}})},
            "capabilities": {"job_types": ["render"] + ([] if cpu_only else ["upscale"]), "gpu": not cpu_only,
                             "devices": ["CPU"] + ([] if cpu_only else ["CUDA", "OPTIX"])},
            "compliance": checks,
            "state": state,
            "state_message": {"paused": "Paused from the tray menu",
                              "error": ERROR_MESSAGES[index % 2]}.get(status),
            "last_heartbeat_at": last_seen, "updated_at": last_seen,
            "suspended_at": now - timedelta(hours=3) if status == "suspended" else None,
            "suspended_reason": "Frame 12 of task 4181 does not match a re-render by another provider."
            if status == "suspended" else None,
            "bid_micros": None if index % 4 == 0 else bid, "bench_score": bench,
            "benchmarked_at": paired + timedelta(minutes=4),
            "bench_details": {"scene": "pictor-bench-1", "seconds": round(60_000 / max(bench, 1), 2)},
            "download_mbps": round(rng.uniform(40, 940), 1), "upload_mbps": round(rng.uniform(10, 400), 1),
            "speed_measured_at": paired + timedelta(minutes=5),
            "ip_address": "192.168.1.23" if country is None else f"203.0.113.{index + 10}",
            "country": country,
            "wallet_address": None,
            "mining_config": {"enabled": profiles[-1]["mining"], "coin": "ETC", "pool": "stratum+tcp://etc.2miners.com:1010"}
            if profiles[-1]["mining"] else {},
        })
        for a, b in spans:
            presence_rows.append({"id": ids[PresenceInterval] + len(presence_rows), "worker_id": worker_id,
                                  "started_at": a, "ended_at": b})

    # --- tasks: generated per worker along its online time, then grouped into jobs ------------------------
    attempts = []  # (start, worker profile, seconds, fails)
    for p in profiles:
        speed = max(p["bench"], 300) / 1000
        for a, b in p["spans"]:
            t = a + timedelta(minutes=rng.uniform(1, 30))
            while True:
                seconds = rng.uniform(90, 1500) / speed ** .5
                if t + timedelta(seconds=seconds) >= b:
                    break
                attempts.append((t, p, seconds, rng.random() < .03))
                # Faster machines win more of the market's work (a CPU-only box waits longest): the wait
                # between tasks shrinks with speed, so the top earners are the big GPUs.
                t += timedelta(seconds=seconds + rng.expovariate(1 / 4200) / speed ** 1.5)
    attempts.sort(key=lambda item: item[0])

    job_rows, jobs_open = [], []
    job_counts = defaultdict(int)

    def new_job(at: datetime) -> dict:
        kind = rng.choices(["cycles", "eevee", "upscale"], weights=[55, 20, 25])[0]
        job = {"id": ids[Job] + len(job_rows), "owner_id": user.id, "name": f"{rng.choice(JOB_NAMES[kind])} "
               f"v{rng.randint(1, 6)}", "type": JobType.UPSCALE if kind == "upscale" else JobType.RENDER,
               "status": JobStatus.COMPLETED, "software": SOFTWARE[kind], "kind": kind, "priority": 0,
               "device": "any", "created_at": at - timedelta(minutes=rng.uniform(1, 40)), "updated_at": at,
               "finished_at": at, "size": rng.randint(10, 160), "frame": rng.choice([1, 1, 101, 1001]), "demo": True}
        spec = ({"type": "upscale", "name": job["name"], "scale": 4, "model": "realesr-animevideov3"}
                if kind == "upscale" else
                {"type": "render", "name": job["name"], "frame_start": job["frame"], "frame_end": job["frame"] + job["size"] - 1,
                 "frame_step": 1, "chunk": 1, "engine": "CYCLES" if kind == "cycles" else "BLENDER_EEVEE",
                 "samples": 128 if kind == "cycles" else 64, "resolution_percent": 100, "format": "PNG",
                 "device": "any", "priority": 0})
        job["spec"] = spec
        job_rows.append(job)
        return job

    failures = []
    for start, p, seconds, fails in attempts:
        if not jobs_open or rng.random() < .03:
            jobs_open = [j for j in jobs_open[-5:] if job_counts[j["id"]] < j["size"]
                         and start - j["created_at"] < timedelta(hours=30)]
            jobs_open.append(new_job(start))
        job = rng.choice(jobs_open)
        if job_counts[job["id"]] >= job["size"] or start - job["created_at"] > timedelta(hours=30):
            jobs_open.remove(job)
            job = new_job(start)
            jobs_open.append(job)
        if fails and job_counts[job["id"]]:
            failures.append((start + timedelta(seconds=seconds * rng.uniform(.1, .9)), p, job))
            continue
        seq = job_counts[job["id"]]
        job_counts[job["id"]] += 1
        task_id = ids[Task] + len(task_rows)
        finished = start + timedelta(seconds=seconds)
        reward = round(p["bid"] * seconds / 3600)
        params = ({"image": f"img_{seq + 1:04d}.jpg", "scale": 4, "model": "realesr-animevideov3"}
                  if job["kind"] == "upscale" else
                  {"blend": "scene.blend", "frames": [job["frame"] + seq], "engine": job["spec"]["engine"],
                   "samples": job["spec"]["samples"], "resolution_percent": 100, "format": "PNG", "device": "any"})
        task_rows.append({"id": task_id, "job_id": job["id"], "seq": seq, "type": job["type"], "params": params,
                          "input_names": [params.get("image") or "scene.blend"], "status": TaskStatus.COMPLETED,
                          "priority": 0, "device": "any", "worker_id": p["id"], "attempts": 1, "progress": 1.0,
                          "bid_micros": p["bid"], "created_at": job["created_at"], "started_at": start,
                          "finished_at": finished, "compute_seconds": round(seconds, 3), "reward_micros": reward,
                          "eta_seconds": None, "message": None, "lease_expires_at": None, "log_tail": None,
                          "max_price_micros": None})
        job["finished_at"] = max(job["finished_at"], finished)
        job["updated_at"] = job["finished_at"]
        ledger_rows.append({"id": ids[LedgerEntry] + len(ledger_rows), "kind": LedgerKind.TASK_REWARD,
                            "amount_micros": reward, "worker_id": p["id"], "provider_id": user.id,
                            "job_id": job["id"], "task_id": task_id, "memo": f"Task {task_id} of job {job['id']}",
                            "attempt": 1, "available_at": finished, "created_at": finished})
        event_rows.append({"id": ids[TaskEvent] + len(event_rows), "task_id": task_id, "job_id": job["id"],
                           "worker_id": p["id"], "kind": TaskEventKind.COMPLETED, "reason": None, "created_at": finished})
        day = daily[(p["id"], finished.strftime("%Y-%m-%d"))]
        day["task_earnings_micros"] += reward
        day["tasks_completed"] += 1
        day["compute_seconds"] += round(seconds, 3)
        p["row"]["earnings_micros"] += reward
        p["row"]["compute_seconds"] += round(seconds, 3)

    # A failed attempt is remembered against the worker that failed; another worker finished the task.
    job_task_ids = defaultdict(list)
    for task in task_rows:
        job_task_ids[task["job_id"]].append((task["id"], task["worker_id"]))
    for at, p, job in failures:
        others = [tid for tid, wid in job_task_ids[job["id"]] if wid != p["id"]]
        if not others:
            continue
        event_rows.append({"id": ids[TaskEvent] + len(event_rows), "task_id": rng.choice(others), "job_id": job["id"],
                           "worker_id": p["id"], "kind": TaskEventKind.FAILED, "created_at": at,
                           "reason": rng.choice(["Blender exited with code 139 (segmentation fault)",
                                                 "CUDA out of memory while building the BVH",
                                                 "Output frame_0001.png was not written"])})
        daily[(p["id"], at.strftime("%Y-%m-%d"))]["tasks_failed"] += 1

    # --- what is happening right now: running tasks on busy workers, failures on erroring ones --------
    live_job = new_job(now - timedelta(minutes=35))
    live_job.update({"name": "Forest flythrough v7", "status": JobStatus.RUNNING, "finished_at": None,
                     "kind": "cycles", "software": SOFTWARE["cycles"], "type": JobType.RENDER, "size": 240, "frame": 1})
    live_job["spec"].update({"type": "render", "name": live_job["name"], "engine": "CYCLES", "samples": 128,
                             "frame_start": 1, "frame_end": 240})
    live_job["spec"].pop("model", None), live_job["spec"].pop("scale", None)
    seq = 0
    for p in profiles:
        if p["status"] not in ("busy", "error"):
            continue
        count = 1 if p["status"] == "busy" else 2
        for _ in range(count):
            task_id = ids[Task] + len(task_rows)
            started = now - timedelta(minutes=rng.uniform(1, 14))
            running = p["status"] == "busy"
            task_rows.append({
                "id": task_id, "job_id": live_job["id"], "seq": seq, "type": JobType.RENDER,
                "params": {"blend": "scene.blend", "frames": [seq + 1], "engine": "CYCLES", "samples": 128,
                           "resolution_percent": 100, "format": "PNG", "device": "any"},
                "input_names": ["scene.blend"], "status": TaskStatus.RUNNING if running else TaskStatus.FAILED,
                "priority": 0, "device": "any", "worker_id": p["id"], "attempts": 1,
                "progress": round(rng.uniform(.08, .92), 3) if running else round(rng.uniform(0, .2), 3),
                "eta_seconds": rng.randint(30, 600) if running else None,
                "message": f"Rendering sample {rng.randint(10, 120)}/128" if running else "Blender was not found",
                "lease_expires_at": now + timedelta(seconds=60) if running else None, "bid_micros": p["bid"],
                "created_at": live_job["created_at"], "started_at": started,
                "finished_at": None if running else started + timedelta(seconds=3),
                "compute_seconds": None, "reward_micros": None, "max_price_micros": None,
                "log_tail": None if running else (
                    "Pictor Worker 0.9.2\nChecking renderer...\nError: Blender not found: set blender_path in "
                    "Settings (looked in PATH and C:\\Program Files\\Blender Foundation)\n"),
            })
            if not running:
                event_rows.append({"id": ids[TaskEvent] + len(event_rows), "task_id": task_id,
                                   "job_id": live_job["id"], "worker_id": p["id"], "kind": TaskEventKind.FAILED,
                                   "reason": "Blender not found", "created_at": started + timedelta(seconds=3)})
                daily[(p["id"], now.strftime("%Y-%m-%d"))]["tasks_failed"] += 1
            seq += 1
    for frame in range(seq, seq + 40):  # the rest of the job waits in the queue
        task_rows.append({
            "id": ids[Task] + len(task_rows), "job_id": live_job["id"], "seq": frame, "type": JobType.RENDER,
            "params": {"blend": "scene.blend", "frames": [frame + 1], "engine": "CYCLES", "samples": 128,
                       "resolution_percent": 100, "format": "PNG", "device": "any"},
            "input_names": ["scene.blend"], "status": TaskStatus.QUEUED, "priority": 0, "device": "any",
            "worker_id": None, "attempts": 0, "progress": 0.0, "eta_seconds": None, "message": None,
            "lease_expires_at": None, "bid_micros": None, "created_at": live_job["created_at"], "started_at": None,
            "finished_at": None, "compute_seconds": None, "reward_micros": None, "max_price_micros": None,
            "log_tail": None})

    # --- mining estimates on NVIDIA workers that enabled it (every 6 hours online) ---------------------
    for p in profiles:
        if not p["mining"]:
            continue
        for a, b in p["spans"]:
            t = a + timedelta(hours=6)
            while t <= b:
                micros = int(rng.uniform(.012, .05) * p["bench"] / 1000 * 1_000_000)
                mining_rows.append({"id": ids[MiningReport] + len(mining_rows), "worker_id": p["id"], "coin": "ETC",
                                    "pool": "stratum+tcp://etc.2miners.com:1010",
                                    "hashrate": round(p["bench"] * 18_000.0 * rng.uniform(.9, 1.1), 1),
                                    "period_seconds": 6 * 3600, "earnings_micros": micros, "reported_at": t})
                ledger_rows.append({"id": ids[LedgerEntry] + len(ledger_rows), "kind": LedgerKind.MINING,
                                    "amount_micros": micros, "worker_id": p["id"], "provider_id": user.id,
                                    "job_id": None, "task_id": None, "memo": "Mining ETC on etc.2miners.com",
                                    "attempt": None, "available_at": t, "created_at": t})
                daily[(p["id"], t.strftime("%Y-%m-%d"))]["mining_earnings_micros"] += micros
                t += timedelta(hours=6)

    # --- write it all with bulk inserts -------------------------------------------------------------
    for job in job_rows:
        for key in ("kind", "size", "frame"):
            job.pop(key, None)
    job_status = {}
    for task in task_rows:
        job_status.setdefault(task["job_id"], set()).add(task["status"])
    for job in job_rows:
        statuses = job_status.get(job["id"], set())
        if TaskStatus.RUNNING in statuses or TaskStatus.QUEUED in statuses:
            job["status"], job["finished_at"] = JobStatus.RUNNING, None
        elif TaskStatus.FAILED in statuses:
            job["status"] = JobStatus.FAILED
        elif not statuses:
            job["status"] = JobStatus.CANCELED
    inserts = [(Worker, worker_rows), (Job, job_rows), (Task, task_rows), (LedgerEntry, ledger_rows),
               (TaskEvent, event_rows), (MiningReport, mining_rows), (PresenceInterval, presence_rows)]
    for model, rows in inserts:
        keys = set().union(*rows) if rows else set()
        for row in rows:  # one executemany needs the same keys in every row
            for key in keys - row.keys():
                row[key] = None
        for i in range(0, len(rows), 5000):
            db.session.execute(model.__table__.insert(), rows[i:i + 5000])  # Core: no ORM bookkeeping
    stats_rows = [{"worker_id": w, "day": d, **values} for (w, d), values in daily.items()]
    for i in range(0, len(stats_rows), 5000):
        db.session.execute(WorkerDailyStat.__table__.insert(), stats_rows[i:i + 5000])
    _add_previews(rng, task_rows, job_rows)
    _fix_sequences(Worker, Job, Task, LedgerEntry, TaskEvent, MiningReport, PresenceInterval, TaskOutput)
    db.session.commit()
    return user


def _add_previews(rng, task_rows: list[dict], job_rows: list[dict]) -> None:
    """Real PNG outputs for the most recent render tasks, so previews and downloads work in the demo."""
    from . import storage
    render_jobs = {j["id"] for j in job_rows if j["type"] == JobType.RENDER}
    recent = [t for t in task_rows if t["status"] == TaskStatus.COMPLETED and t["job_id"] in render_jobs]
    recent.sort(key=lambda t: t["finished_at"], reverse=True)
    for task in recent[:PREVIEW_OUTPUTS]:
        frame = task["params"]["frames"][0]
        stored = storage.put_bytes(_png(frame, rng))
        db.session.flush()
        db.session.add(TaskOutput(task_id=task["id"], name=f"frame_{frame:04d}.png", sha256=stored.sha256,
                                  size=stored.size, created_at=task["finished_at"]))


def pulse(email: str, now: datetime | None = None) -> int:
    """Keep one demo account alive: heartbeat its connected workers and move running tasks along.
    Returns how many workers it refreshed."""
    return _pulse(Worker.owner_id == accounts.user_by_email(email).id, now)


def pulse_all(now: datetime | None = None) -> int:
    """The periodic job (webapp/tasks.py): every demo account's connected workers stay connected while
    the portal runs, so a demo left open does not turn offline worker by worker."""
    return _pulse(Worker.demo.is_(True), now)


def _pulse(which, now: datetime | None) -> int:
    now = now or utcnow()
    live = db.session.scalars(db.select(Worker).where(
        which, Worker.demo.is_(True), Worker.deleted_at.is_(None), Worker.last_heartbeat_at.is_not(None),
        Worker.last_heartbeat_at >= now - LIVE_WITHIN)).all()
    if not live:
        return 0
    for worker in live:
        worker.last_heartbeat_at = now
        interval = db.session.scalars(db.select(PresenceInterval).where(PresenceInterval.worker_id == worker.id)
                                      .order_by(PresenceInterval.ended_at.desc()).limit(1)).first()
        if interval is not None:
            interval.ended_at = now
    for task in db.session.scalars(db.select(Task).where(
            Task.worker_id.in_([w.id for w in live]), Task.status == TaskStatus.RUNNING)):
        task.progress = min(0.99, round((task.progress or 0) + 0.01, 3))
        task.lease_expires_at = now + timedelta(seconds=60)
    db.session.commit()
    return len(live)

