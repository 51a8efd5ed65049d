"""Worker management service: pairing, derived status in SQL and Python, search, sort, paging, delete."""

import re
from datetime import datetime, timedelta

import pytest

from tests.conftest import T0 as NOW
from webapp.extensions import db
from webapp.models import (Job, JobType, LedgerEntry, LedgerKind, Task, TaskStatus, User, Worker, WorkerState,
                           WorkerStatus)
from webapp.security import token_hash
from webapp.services import NotFound, ServiceError, permissions
from webapp.services import workers as ws

CODE = re.compile(r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{4}-[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{4}$")


def make_user(email="ada@example.com") -> User:
    user = User(email=email, password_hash="x")
    db.session.add(user)
    db.session.commit()
    return user


def make_worker(owner, name="node", **fields) -> Worker:
    worker = Worker(owner_id=owner.id, name=name, **fields)
    db.session.add(worker)
    db.session.commit()
    return worker


@pytest.fixture
def user(ctx, clock):
    return make_user()


@pytest.fixture
def any_user(any_app, clock):
    """A user on SQLite and on PostgreSQL: the list queries must behave the same on both."""
    with any_app.app_context():
        yield make_user()


# --- create and pair ------------------------------------------------------------------------------

def test_create_worker_keeps_only_hashes(user):
    worker, code, token = ws.create_worker(user, "  Render box 1  ")
    assert worker.name == "Render box 1"
    assert CODE.match(code)
    assert token.startswith("pwk_") and len(token) > 40
    db.session.expire_all()
    row = db.session.get(Worker, worker.id)
    assert row.token_hash == token_hash(token)
    assert row.pairing_code_hash == token_hash(code)
    assert row.pairing_expires_at == NOW + timedelta(minutes=15)
    stored = " ".join(str(v) for v in db.session.execute(db.select(Worker.__table__)).one())
    assert token not in stored and code not in stored
    assert ws.status_of(row, NOW) == WorkerStatus.PENDING


def test_pair_is_single_use_and_rotates_the_token(user):
    worker, code, first_token = ws.create_worker(user, "box")
    # People type codes loosely: lower case, no dash, spaces.
    paired, token = ws.pair(" " + code.replace("-", "").lower() + " ")
    assert paired.id == worker.id
    assert token != first_token and token.startswith("pwk_")
    db.session.expire_all()
    row = db.session.get(Worker, worker.id)
    assert row.token_hash == token_hash(token)  # the first config's token is dead now
    assert row.pairing_code_hash is None and row.paired_at == NOW
    with pytest.raises(ServiceError) as exc:
        ws.pair(code)
    assert exc.value.code == "invalid_code"
    assert db.session.get(Worker, worker.id).token_hash == token_hash(token)


def test_pairing_code_expires_after_15_minutes(user, clock):
    _, code, _ = ws.create_worker(user, "box")
    clock.set(NOW + timedelta(minutes=15))
    with pytest.raises(ServiceError) as exc:
        ws.pair(code)
    assert exc.value.code == "expired_code"
    clock.set(NOW + timedelta(minutes=14, seconds=59))
    assert ws.pair(code)[0].name == "box"


def test_new_pairing_code_replaces_the_old_one(user):
    worker, old, _ = ws.create_worker(user, "box")
    new = ws.regenerate_pairing_code(worker)
    assert CODE.match(new) and new != old
    with pytest.raises(ServiceError) as exc:
        ws.pair(old)
    assert exc.value.code == "invalid_code"
    assert ws.pair(new)[0].id == worker.id


@pytest.mark.parametrize("code", ["", "   ", "ZZZZ-ZZZZ", None, 12345])
def test_pair_rejects_unknown_codes(user, code):
    ws.create_worker(user, "box")
    with pytest.raises(ServiceError) as exc:
        ws.pair(code)
    assert exc.value.code == "invalid_code" and exc.value.status == 400


def test_worker_config(user):
    worker, _, token = ws.create_worker(user, "box")
    assert ws.worker_config(worker, token, "https://portal.example/") == {
        "server_url": "https://portal.example", "worker_id": worker.id, "token": token}


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "bad\nname", "tab\there", "nul\x00", 42, None])
def test_names_are_validated(user, name):
    with pytest.raises(ServiceError) as exc:
        ws.create_worker(user, name)
    assert exc.value.code == "invalid_name" and exc.value.status == 400
    assert db.session.execute(db.select(db.func.count()).select_from(Worker)).scalar_one() == 0


def test_rename(user):
    worker = make_worker(user, "old")
    ws.rename(worker, "  Nova 3090 ✨ ")
    db.session.expire_all()
    assert db.session.get(Worker, worker.id).name == "Nova 3090 ✨"
    with pytest.raises(ServiceError):
        ws.rename(worker, "y" * 81)


# --- derived status -------------------------------------------------------------------------------

def _sql_statuses(now) -> dict[int, str]:
    return dict(db.session.execute(db.select(Worker.id, ws.status_expr(now))).all())


def test_status_rule_at_the_boundaries_sql_equals_python(any_app):
    """90 s after the last heartbeat a worker is still online; a microsecond later it is offline."""
    with any_app.app_context():
        owner = make_user()
        limit = timedelta(seconds=any_app.config["OFFLINE_AFTER_SECONDS"])
        tick = timedelta(microseconds=1)
        cases = {
            "pending": dict(last_heartbeat_at=None, state=WorkerState.BUSY),
            "online": dict(last_heartbeat_at=NOW - limit, state=WorkerState.IDLE),
            "online-null-state": dict(last_heartbeat_at=NOW, state=None),
            "offline": dict(last_heartbeat_at=NOW - limit - tick, state=WorkerState.IDLE),
            "offline-busy": dict(last_heartbeat_at=NOW - limit - tick, state=WorkerState.BUSY),
            "busy": dict(last_heartbeat_at=NOW - limit, state=WorkerState.BUSY),
            "paused": dict(last_heartbeat_at=NOW - tick, state=WorkerState.PAUSED),
            "error": dict(last_heartbeat_at=NOW, state=WorkerState.ERROR),
            "future-heartbeat": dict(last_heartbeat_at=NOW + tick, state=WorkerState.IDLE),
            # A failed spot check outranks whatever the app says: it gets no work either way.
            "suspended": dict(last_heartbeat_at=NOW, state=WorkerState.BUSY, suspended_at=NOW - tick,
                              suspended_reason="caught"),
        }
        expected = {"pending": "pending", "online": "online", "online-null-state": "online",
                    "offline": "offline", "offline-busy": "offline", "busy": "busy", "paused": "paused",
                    "error": "error", "future-heartbeat": "online", "suspended": "suspended"}
        ids = {label: make_worker(owner, label, **fields).id for label, fields in cases.items()}
        db.session.expire_all()
        sql = _sql_statuses(NOW)
        for label, worker_id in ids.items():
            python = ws.status_of(db.session.get(Worker, worker_id), NOW).value
            assert sql[worker_id] == python == expected[label], label
        counts = ws.status_counts(owner.id, now=NOW)
        assert counts == {"pending": 1, "online": 3, "busy": 1, "paused": 1, "error": 1, "offline": 2, "suspended": 1}
        offline = ws.list_workers(owner.id, status="offline", now=NOW)
        assert {w.name for w in offline.items} == {"offline", "offline-busy"} and offline.total == 2


def test_status_moves_with_the_clock(user):
    worker = make_worker(user, "w", last_heartbeat_at=NOW, state=WorkerState.BUSY)
    later = NOW + timedelta(seconds=90)
    assert ws.status_of(worker, later) == WorkerStatus.BUSY
    assert _sql_statuses(later)[worker.id] == "busy"
    later += timedelta(seconds=1)
    assert ws.status_of(worker, later) == WorkerStatus.OFFLINE
    assert _sql_statuses(later)[worker.id] == "offline"


# --- list: search, sort, paging, filter -----------------------------------------------------------

@pytest.fixture
def fleet(any_user):
    """Six workers with distinct created/updated times and statuses, plus noise that must never show."""
    rows = [
        # name, created offset (min), updated offset, heartbeat age (s) or None, state
        ("Alpha", 1, 50, 10, WorkerState.IDLE),      # online
        ("bravo", 2, 40, 10, WorkerState.BUSY),      # busy
        ("Charlie 7", 3, 60, None, None),            # pending
        ("delta", 4, 10, 500, WorkerState.IDLE),     # offline
        ("Echo_7", 5, 30, 10, WorkerState.ERROR),    # error
        ("foxtrot", 6, 20, 10, WorkerState.PAUSED),  # paused
    ]
    workers = []
    for name, created, updated, age, state in rows:
        workers.append(make_worker(
            any_user, name, created_at=NOW - timedelta(hours=10) + timedelta(minutes=created),
            last_heartbeat_at=None if age is None else NOW - timedelta(seconds=age), state=state))
    # updated_at is set on every write, so pin it afterwards with a plain UPDATE.
    for worker, row in zip(workers, rows):
        db.session.execute(db.update(Worker).where(Worker.id == worker.id).values(
            updated_at=NOW - timedelta(hours=5) + timedelta(minutes=row[2])))
    other = make_user("eve@example.com")
    make_worker(other, "Alpha (not yours)", last_heartbeat_at=NOW, state=WorkerState.IDLE)
    make_worker(any_user, "Alpha deleted", deleted_at=NOW)
    db.session.commit()
    db.session.expire_all()
    return {w.name: w.id for w in workers}


def _names(page) -> list[str]:
    return [w.name for w in page.items]


def _all_pages(owner_id, **kw) -> list[str]:
    """Walk every page of 2: the order must come from the database, across page boundaries."""
    names, page = [], 1
    while True:
        result = ws.list_workers(owner_id, page=page, per_page=2, now=NOW, **kw)
        names += _names(result)
        if page >= result.pages:
            return names
        page += 1


@pytest.mark.parametrize("sort,expected", [
    ("name", ["Alpha", "bravo", "Charlie 7", "delta", "Echo_7", "foxtrot"]),  # case-insensitive
    ("created", ["Alpha", "bravo", "Charlie 7", "delta", "Echo_7", "foxtrot"]),
    ("updated", ["delta", "foxtrot", "Echo_7", "bravo", "Alpha", "Charlie 7"]),
    ("status", ["Echo_7", "bravo", "Alpha", "foxtrot", "delta", "Charlie 7"]),  # error, busy, online, ...
])
def test_sort_both_directions_across_pages(any_user, fleet, sort, expected):
    assert _all_pages(any_user.id, sort=sort, order="asc") == expected
    assert _all_pages(any_user.id, sort=sort, order="desc") == expected[::-1]


def test_sort_ties_break_on_id(user):
    ids = [make_worker(user, "same", created_at=NOW).id for _ in range(5)]
    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        walked = []
        for page in (1, 2, 3):
            walked += [w.id for w in ws.list_workers(user.id, sort="name", order=order, page=page, per_page=2,
                                                     now=NOW).items]
        assert walked == expected


def test_default_sort_is_newest_first(any_user, fleet):
    assert _names(ws.list_workers(any_user.id, now=NOW))[0] == "foxtrot"


def test_paging_numbers(any_user, fleet):
    page = ws.list_workers(any_user.id, sort="name", order="asc", page=2, per_page=4, now=NOW)
    assert (page.page, page.pages, page.total, page.per_page) == (2, 2, 6, 4)
    assert _names(page) == ["Echo_7", "foxtrot"]
    beyond = ws.list_workers(any_user.id, page=9, per_page=4, now=NOW)
    assert beyond.items == [] and beyond.total == 6
    empty = ws.list_workers(make_user("new@example.com").id, now=NOW)
    assert (empty.items, empty.pages, empty.total) == ([], 1, 0)


def test_search_by_name_and_id(any_user, fleet):
    assert _names(ws.list_workers(any_user.id, q="ALPHA", now=NOW)) == ["Alpha"]  # others' and deleted hidden
    assert set(_names(ws.list_workers(any_user.id, q="a", sort="name", now=NOW))) == {
        "Alpha", "bravo", "Charlie 7", "delta"}
    charlie = fleet["Charlie 7"]
    assert _names(ws.list_workers(any_user.id, q=f"#{charlie}", now=NOW)) == ["Charlie 7"]
    # A bare number matches the ID or a name that contains it.
    found = set(_names(ws.list_workers(any_user.id, q="7", now=NOW)))
    assert {"Charlie 7", "Echo_7"} <= found
    by_id = set(_names(ws.list_workers(any_user.id, q=str(fleet["delta"]), now=NOW)))
    assert "delta" in by_id
    # LIKE wildcards are literal characters.
    assert _names(ws.list_workers(any_user.id, q="o_7", now=NOW)) == ["Echo_7"]
    assert _names(ws.list_workers(any_user.id, q="%", now=NOW)) == []
    assert _names(ws.list_workers(any_user.id, q="#99999999999999999999", now=NOW)) == []
    # Search and status filter combine.
    assert _names(ws.list_workers(any_user.id, q="7", status="error", now=NOW)) == ["Echo_7"]


def test_filter_by_each_status(any_user, fleet):
    expected = {"online": "Alpha", "busy": "bravo", "pending": "Charlie 7", "offline": "delta", "error": "Echo_7",
                "paused": "foxtrot"}
    for status, name in expected.items():
        assert _names(ws.list_workers(any_user.id, status=status, now=NOW)) == [name]
    assert ws.list_workers(any_user.id, status="all", now=NOW).total == 6
    assert ws.status_counts(any_user.id, now=NOW) == dict(dict.fromkeys(expected, 1), suspended=0)


@pytest.mark.parametrize("kwargs,code,mentions", [
    ({"sort": "size"}, "invalid_sort", "status, name, created, updated"),
    ({"order": "sideways"}, "invalid_order", "asc, desc"),
    ({"status": "sleeping"}, "invalid_status", "pending, online, busy, paused, error, offline"),
    ({"page": 0}, "invalid_page", "1 or more"),
    ({"page": "two"}, "invalid_page", "whole number"),
    ({"per_page": 101}, "invalid_per_page", "1 to 100"),
    ({"per_page": 0}, "invalid_per_page", "1 to 100"),
])
def test_list_validates_its_arguments(user, kwargs, code, mentions):
    with pytest.raises(ServiceError) as exc:
        ws.list_workers(user.id, **kwargs)
    assert exc.value.code == code and exc.value.status == 400
    assert mentions in exc.value.message


def test_get_worker_is_owner_scoped(user):
    mine = make_worker(user, "mine")
    theirs = make_worker(make_user("eve@example.com"), "theirs")
    gone = make_worker(user, "gone", deleted_at=NOW)
    assert permissions.owned_worker(user.id, mine.id) is mine
    for worker_id in (theirs.id, gone.id, 999999, 2**40, "abc"):
        with pytest.raises(NotFound):
            permissions.owned_worker(user.id, worker_id)


# --- delete ---------------------------------------------------------------------------------------

def test_delete_revokes_token_hides_worker_keeps_history(user):
    worker, code, token = ws.create_worker(user, "doomed")
    job = Job(owner_id=user.id, name="shot", type=JobType.RENDER, spec={}, software="Blender · Cycles")
    db.session.add(job)
    db.session.flush()
    running = Task(job_id=job.id, seq=0, type=JobType.RENDER, params={}, status=TaskStatus.RUNNING,
                   worker_id=worker.id, started_at=NOW, lease_expires_at=NOW + timedelta(seconds=60))
    done = Task(job_id=job.id, seq=1, type=JobType.RENDER, params={}, status=TaskStatus.COMPLETED,
                worker_id=worker.id, reward_micros=1000)
    db.session.add_all([running, done])
    db.session.flush()
    db.session.add(LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=1000, worker_id=worker.id,
                               provider_id=user.id, job_id=job.id, task_id=done.id))
    db.session.commit()

    ws.delete(worker)
    db.session.expire_all()
    row = db.session.get(Worker, worker.id)
    assert row.deleted_at == NOW
    assert row.token_hash is None and row.pairing_code_hash is None
    assert db.session.execute(db.select(Worker.id).where(Worker.token_hash == token_hash(token))).first() is None
    with pytest.raises(ServiceError):
        ws.pair(code)
    with pytest.raises(NotFound):
        permissions.owned_worker(user.id, worker.id)
    assert ws.list_workers(user.id, now=NOW).total == 0
    # The running task went back to the queue; the finished one and its ledger entry stay.
    assert db.session.get(Task, running.id).status == TaskStatus.QUEUED
    assert db.session.get(Task, done.id).status == TaskStatus.COMPLETED
    assert db.session.execute(db.select(db.func.count()).select_from(LedgerEntry)).scalar_one() == 1


# --- JSON -----------------------------------------------------------------------------------------

def test_serialize_shape(user):
    worker = make_worker(user, "json", last_heartbeat_at=NOW - timedelta(seconds=5), state=WorkerState.BUSY,
                         earnings_micros=1_234_567, bid_micros=450_000, bench_score=1500, ram_mb=32768,
                         gpus=[{"name": "RTX 3090", "memory_mb": 24576}], gpu_name="RTX 3090",
                         country="DE", created_at=NOW - timedelta(days=2), app_version="1.0.0")
    body = ws.serialize(worker, NOW)
    for key in ("id", "name", "status", "created_at", "updated_at", "last_heartbeat_at", "gpus", "ram_mb",
                "earnings", "uptime_seconds", "uptime_percent_30d", "bid", "bench_score"):
        assert key in body
    assert body["status"] == "busy"
    assert body["earnings"] == "1.234567" and body["bid"] == "0.450000"
    assert body["last_heartbeat_at"] == "2024-05-10T11:59:55+00:00"
    assert datetime.fromisoformat(body["created_at"]) == NOW - timedelta(days=2)
    assert body["gpus"][0]["name"] == "RTX 3090" and body["ram_mb"] == 32768
    assert isinstance(body["uptime_seconds"], int) and isinstance(body["uptime_percent_30d"], float)
    assert body["location"] == "DE" and body["app_version"] == "1.0.0"
    pending = ws.serialize(make_worker(user, "new"), NOW)
    assert pending["status"] == "pending" and pending["bid"] is None and pending["last_heartbeat_at"] is None
    assert pending["earnings"] == "0.000000"
    many = ws.serialize_many([worker, db.session.get(Worker, pending["id"])], NOW)
    assert [b["id"] for b in many] == [worker.id, pending["id"]] and many[0] == body


# --- a worker's tasks -----------------------------------------------------------------------------

def test_list_tasks_search_sort_filter(user):
    worker = make_worker(user, "w")
    other = make_worker(user, "other")
    jobs = {}
    for name in ("Zebra shot", "apple shot", "Mango"):
        jobs[name] = Job(owner_id=user.id, name=name, type=JobType.RENDER, spec={}, software="Blender · Cycles")
        db.session.add(jobs[name])
    db.session.flush()
    specs = [("Zebra shot", TaskStatus.COMPLETED, 1), ("apple shot", TaskStatus.RUNNING, 2),
             ("Mango", TaskStatus.FAILED, 3), ("apple shot", TaskStatus.QUEUED, 4)]
    tasks = []
    for i, (job_name, status, minute) in enumerate(specs):
        task = Task(job_id=jobs[job_name].id, seq=i, type=JobType.RENDER, params={}, status=status,
                    worker_id=worker.id, created_at=NOW + timedelta(minutes=minute),
                    started_at=NOW + timedelta(minutes=minute), progress=0.5)
        if status == TaskStatus.COMPLETED:
            task.finished_at = task.started_at + timedelta(seconds=90)
            task.reward_micros = 12_500
        tasks.append(task)
    db.session.add_all(tasks)
    db.session.add(Task(job_id=jobs["Mango"].id, seq=9, type=JobType.RENDER, params={}, worker_id=other.id))
    db.session.commit()

    def ids(**kw):
        return [t.id for t in ws.list_tasks(worker, **kw).items]

    t = [task.id for task in tasks]
    assert ids() == [t[3], t[2], t[1], t[0]]
    assert ids(sort="created", order="asc") == t
    assert ids(sort="name", order="asc") == [t[1], t[3], t[2], t[0]]
    assert ids(sort="name", order="desc") == [t[0], t[2], t[3], t[1]]
    assert ids(sort="status", order="asc") == [t[1], t[3], t[2], t[0]]  # running, queued, failed, completed
    assert ids(q="APPLE") == [t[3], t[1]]
    assert set(ids(q=str(jobs["Mango"].id))) >= {t[2]}
    assert ids(q=f"#{t[0]}") == [t[0]]
    assert ids(status="failed") == [t[2]]
    page = ws.list_tasks(worker, per_page=3, page=2)
    assert (page.total, page.pages, [x.id for x in page.items]) == (4, 2, [t[0]])
    with pytest.raises(ServiceError):
        ws.list_tasks(worker, sort="reward")
    body = ws.serialize_task(tasks[0], NOW)
    assert body["job_name"] == "Zebra shot" and body["job_type"] == "render"
    assert body["software"] == "Blender · Cycles" and body["reward"] == "0.012500"
    assert body["duration_seconds"] == 90.0 and body["status"] == "completed"
    running = ws.serialize_task(tasks[1], NOW + timedelta(minutes=3))
    assert running["duration_seconds"] == 60.0 and running["finished_at"] is None and running["reward"] is None


def test_serialize_uptime_comes_from_heartbeats(user):
    from webapp.services import presence
    worker = make_worker(user, "steady", created_at=NOW - timedelta(minutes=4))
    for seconds_ago in (120, 60, 0):
        presence.record_heartbeat(worker, "idle", None, now=NOW - timedelta(seconds=seconds_ago))
    body = ws.serialize(db.session.get(Worker, worker.id), NOW)
    assert body["status"] == "online"
    assert body["uptime_seconds"] == 120
    assert body["uptime_percent_30d"] == 50.0  # online 2 of its 4 minutes
    assert ws.serialize(db.session.get(Worker, worker.id), NOW + timedelta(minutes=10))["uptime_seconds"] == 0
