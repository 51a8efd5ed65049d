"""The portal's tables: accounts, workers and their presence, jobs and tasks, files, the ledger."""

import enum
from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Enum, Float, ForeignKey, Index, Integer,
                        String, Text, UniqueConstraint, func)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import expression
from sqlalchemy.types import TypeDecorator

from .clock import utcnow
from .extensions import db


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python on every database (SQLite keeps no offset, so store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use webapp.clock.utcnow()")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def _enum(cls):
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e],
                validate_strings=True)


class WorkerState(str, enum.Enum):
    """What the app last reported; the status shown is derived from this and the heartbeat age."""
    IDLE = "idle"
    BUSY = "busy"
    PAUSED = "paused"
    ERROR = "error"


class WorkerStatus(str, enum.Enum):
    """The derived status (services/workers.py status_expr), never stored."""
    PENDING = "pending"
    ONLINE = "online"
    BUSY = "busy"
    PAUSED = "paused"
    ERROR = "error"
    OFFLINE = "offline"
    SUSPENDED = "suspended"  # a spot check caught a wrong result: no more tasks (services/verification.py)


class JobType(str, enum.Enum):
    """A task's type. VERIFY tasks re-do a sample of another provider's result (services/verification.py)."""
    RENDER = "render"
    UPSCALE = "upscale"
    VERIFY = "verify"
    BENCHMARK = "benchmark"  # a portal-issued, portal-timed Bench Score run (services/benchmarks.py)


class VerificationState(str, enum.Enum):
    """A task's verification as creators see it; NONE = not sampled (its reward settles after a delay)."""
    NONE = "none"
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class TaskStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class TaskEventKind(str, enum.Enum):
    CLAIMED = "claimed"
    COMPLETED = "completed"
    FAILED = "failed"
    LEASE_EXPIRED = "lease_expired"
    REQUEUED = "requeued"
    CANCELED = "canceled"
    HANDED_BACK = "handed_back"


class AccountActionKind(str, enum.Enum):
    """What per-account limits count (services/limits.py)."""
    WORKER_CREATED = "worker_created"
    WORKER_PAIRED = "worker_paired"


class LedgerKind(str, enum.Enum):
    TASK_REWARD = "task_reward"
    CHECK_REWARD = "check_reward"  # a verification task's reward: paid by the network, never billed
    REVERSAL = "reversal"  # takes back one entry (a result that failed its check); nothing is deleted
    MINING = "mining"
    ADJUSTMENT = "adjustment"
    # A provider's balance (services/payouts.py): a payout request takes money out at once, a rejected
    # one gives it back with a payout_return row; nothing is deleted.
    PAYOUT = "payout"
    PAYOUT_RETURN = "payout_return"
    # A creator's credit (services/credit.py): the operator adds credit; a job's budget is held from it
    # at submission (reserve) and what it did not spend comes back when it ends (release).
    CREDIT = "credit"
    RESERVE = "reserve"
    RELEASE = "release"


class PayoutState(str, enum.Enum):
    """A payout request: pending until the operator sends the money (paid, with a reference) or refuses it."""
    PENDING = "pending"
    PAID = "paid"
    REJECTED = "rejected"


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    wallet_address: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of the login cookie's id; logging out bumps it, so a cookie copied before then stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The IANA zone (e.g. "Europe/Berlin") pages show times in, chosen on the Account page; None = the
    # browser's own zone (webapp/timezones.py).
    time_zone: Mapped[str | None] = mapped_column(String(64))

    # flask-login protocol
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version or 0}"


class ApiToken(db.Model):
    """A personal API token: only its SHA-256 is kept; the prefix helps people tell tokens apart."""
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class Worker(db.Model):
    __tablename__ = "workers"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    pairing_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    pairing_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # What the app reports in hello (services/presence.py record_hello).
    app_version: Mapped[str | None] = mapped_column(String(32))
    os: Mapped[str | None] = mapped_column(String(128))
    hostname: Mapped[str | None] = mapped_column(String(128))
    cpu: Mapped[str | None] = mapped_column(String(128))
    ram_mb: Mapped[int | None] = mapped_column(Integer)
    gpus: Mapped[list] = mapped_column(JSON, default=list)
    gpu_name: Mapped[str | None] = mapped_column(String(128))  # first GPU, for the list and search
    renderers: Mapped[dict] = mapped_column(JSON, default=dict)
    capabilities: Mapped[dict] = mapped_column(JSON, default=dict)
    compliance: Mapped[list] = mapped_column(JSON, default=list)

    # Live state, extended by heartbeats.
    state: Mapped[WorkerState | None] = mapped_column(_enum(WorkerState))
    state_message: Mapped[str | None] = mapped_column(String(500))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Market and settings.
    bid_micros: Mapped[int | None] = mapped_column(BigInteger)  # USD/hour of compute; None = network average
    wallet_address: Mapped[str | None] = mapped_column(String(128))
    mining_config: Mapped[dict] = mapped_column(JSON, default=dict)
    mining_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # reports start no earlier
    bench_score: Mapped[int | None] = mapped_column(Integer)  # the portal's measurement (services/benchmarks.py)
    bench_details: Mapped[dict] = mapped_column(JSON, default=dict)
    benchmarked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bench_score_reported: Mapped[int | None] = mapped_column(Integer)  # the app's own: shown, never priced

    # Connection speed and location.
    download_mbps: Mapped[float | None] = mapped_column(Float)
    upload_mbps: Mapped[float | None] = mapped_column(Float)
    speed_measured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(64))
    location_override: Mapped[str | None] = mapped_column(String(128))

    # Running totals kept in the same transaction as the rows they sum, so lists sort without joins.
    earnings_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    compute_seconds: Mapped[float] = mapped_column(Float, default=0.0)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a failed spot check
    suspended_reason: Mapped[str | None] = mapped_column(String(500))
    # Paused from the portal (services/fleet.py): no claims; the app learns it from its next heartbeat answer.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Seeded by `pictor-portal demo` (services/demo.py): no app behind it; the portal keeps it heartbeating.
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())

    owner: Mapped[User] = relationship()
    # Loaded on use, not with every worker: the worker API loads a worker per call and never needs its tags;
    # the worker list asks for them in one query per page (workers.list_workers).
    tag_rows: Mapped[list["WorkerTag"]] = relationship(order_by="WorkerTag.tag", cascade="all, delete-orphan")

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]

    __table_args__ = (
        Index("ix_workers_owner_created", "owner_id", "created_at"),
        Index("ix_workers_owner_updated", "owner_id", "updated_at"),
        Index("ix_workers_owner_heartbeat", "owner_id", "last_heartbeat_at"),
    )


# The worker list sorts names case-insensitively (ORDER BY lower(name)): an expression index keeps that
# sort an index walk at 10,000 workers (17 ms -> 0.2 ms on SQLite), deep pages included (added by the
# pages issue; SQLite autogenerate skips expression indexes, so the migration creates it explicitly).
Index("ix_workers_owner_lower_name", Worker.owner_id, func.lower(Worker.name))


class PresenceInterval(db.Model):
    """A stretch of continuous online time; heartbeats extend the open one or start a new one."""
    __tablename__ = "presence_intervals"
    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_presence_worker_ended", "worker_id", "ended_at"),)


class StoredFile(db.Model):
    """A blob in content-addressed storage, named by its SHA-256."""
    __tablename__ = "stored_files"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(db.Model):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(120))
    type: Mapped[JobType] = mapped_column(_enum(JobType))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.QUEUED)
    spec: Mapped[dict] = mapped_column(JSON)  # the validated submission
    software: Mapped[str] = mapped_column(String(64))  # e.g. "Blender · Cycles", "Real-ESRGAN x4"
    priority: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(8), default="any")  # any | gpu
    max_price_micros: Mapped[int | None] = mapped_column(BigInteger)  # USD per bench-hour
    # Seeded by `pictor-portal demo`: shown, never claimed (services/demo.py claimable(); its inputs do not exist).
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    # The creator's spend limit, held from their credit (services/credit.py); None = billed on account.
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # spend reached the budget: no more claims
    paused_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outputs_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User] = relationship()
    tasks: Mapped[list["Task"]] = relationship(back_populates="job", order_by="Task.seq")
    inputs: Mapped[list["JobInput"]] = relationship(back_populates="job")

    __table_args__ = (Index("ix_jobs_owner_created", "owner_id", "created_at"),)


class JobInput(db.Model):
    __tablename__ = "job_inputs"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(ForeignKey("stored_files.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)

    job: Mapped[Job] = relationship(back_populates="inputs")
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_job_inputs_job_name"),)


class SceneDraft(db.Model):
    """A scene uploaded for a render job not submitted yet (services/scenes.py): its files are stored
    and read once, on arrival, so the rest of the form can be corrected without uploading them again.
    Owner-only; gone at expires_at (the periodic `scene_drafts` job) or when a job is made from it."""
    __tablename__ = "scene_drafts"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    filename: Mapped[str] = mapped_column(String(255))  # as uploaded (sanitised), for the form to show
    main: Mapped[str] = mapped_column(String(255))  # the .blend's path among the files
    reading: Mapped[dict] = mapped_column(JSON)  # what the file says: settings, cameras, dependencies
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    files: Mapped[list["DraftFile"]] = relationship(back_populates="draft", cascade="all, delete-orphan",
                                                    order_by="DraftFile.path")
    __table_args__ = (Index("ix_scene_drafts_owner", "owner_id", "created_at"),)


class DraftFile(db.Model):
    """One file of a draft at its relative path in the project; the blob is shared by content."""
    __tablename__ = "draft_files"
    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("scene_drafts.id"))
    path: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(ForeignKey("stored_files.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)

    draft: Mapped[SceneDraft] = relationship(back_populates="files")
    __table_args__ = (UniqueConstraint("draft_id", "path", name="uq_draft_files_draft_path"),)


class Task(db.Model):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    seq: Mapped[int] = mapped_column(Integer)  # position within the job
    type: Mapped[JobType] = mapped_column(_enum(JobType))
    params: Mapped[dict] = mapped_column(JSON)  # validated data the app turns into an argv list
    input_names: Mapped[list] = mapped_column(JSON, default=list)  # JobInput names this task needs
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.QUEUED)
    # Copied from the job so a claim is one indexed scan over tasks.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(8), default="any")
    max_price_micros: Mapped[int | None] = mapped_column(BigInteger)

    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    slot: Mapped[str | None] = mapped_column(String(32))  # the worker's device it runs on (one task per slot)
    for_worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))  # only this worker may claim it
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    eta_seconds: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(String(500))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bid_micros: Mapped[int | None] = mapped_column(BigInteger)  # the worker's bid when it claimed
    bench_score: Mapped[int | None] = mapped_column(Integer)  # the worker's portal score when it claimed
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when progress last moved forward
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    compute_seconds: Mapped[float | None] = mapped_column(Float)
    log_tail: Mapped[str | None] = mapped_column(Text)
    reward_micros: Mapped[int | None] = mapped_column(BigInteger)  # copy of its ledger entry, for lists

    job: Mapped[Job] = relationship(back_populates="tasks")
    worker: Mapped[Worker | None] = relationship(foreign_keys=[worker_id])
    outputs: Mapped[list["TaskOutput"]] = relationship(back_populates="task")

    __table_args__ = (
        Index("ix_tasks_job_seq", "job_id", "seq"),
        Index("ix_tasks_worker_created", "worker_id", "created_at"),
        Index("ix_tasks_worker_status", "worker_id", "status"),
        Index("ix_tasks_lease", "status", "lease_expires_at"),
    )


def job_work():
    """SQL: the tasks that do a creator's work, as opposed to verification tasks checking it."""
    return Task.type != JobType.VERIFY


# One running task per device slot of a worker, enforced by the database so two racing claims can't both win.
Index("uq_tasks_running_slot", Task.worker_id, Task.slot, unique=True,
      sqlite_where=Task.status == TaskStatus.RUNNING, postgresql_where=Task.status == TaskStatus.RUNNING)

# The claim order (highest priority, then oldest) as an index, so a claim reads the first eligible
# queued rows in order instead of sorting the whole queue (added by the dispatch issue).
Index("ix_tasks_queue_order", Task.status, Task.priority.desc(), Task.id)
# An idle claim's first question (dispatch._waiting_statement): is anything of my types queued at all.
Index("ix_tasks_queued_type", Task.status, Task.type)
# Does this job still have running (or queued) work: what each completion asks (dispatch.roll_up_status);
# and its latest completed tasks, read in finishing order without sorting the job (market's verified peers).
Index("ix_tasks_job_status_finished", Task.job_id, Task.status, Task.finished_at)


class TaskOutput(db.Model):
    __tablename__ = "task_outputs"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(ForeignKey("stored_files.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    task: Mapped[Task] = relationship(back_populates="outputs")
    __table_args__ = (UniqueConstraint("task_id", "name", name="uq_task_outputs_task_name"),)


class TaskEvent(db.Model):
    """The history of a task's attempts: who claimed it, who failed it and why (retries, blocklists)."""
    __tablename__ = "task_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    # A failure's provider account (the worker's owner then): failures count per account as well as
    # per worker, so one account's many workers can't fail a task or shut a job out (dispatch.py).
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    final: Mapped[bool | None] = mapped_column(Boolean)  # a failure the worker called not retryable
    kind: Mapped[TaskEventKind] = mapped_column(_enum(TaskEventKind))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_task_events_task", "task_id", "kind", "worker_id"),
        Index("ix_task_events_job_worker", "job_id", "worker_id", "kind"),
        Index("ix_task_events_job_provider", "job_id", "provider_id", "kind"),
    )


class LedgerEntry(db.Model):
    """Money moving: signed micro-USD. A task's reward exists once per attempt (unique task_id, attempt).

    `available_at`: when the money may be paid out; NULL while its result waits for a spot check.
    A reversal points at the entry it takes back (`reverses_id`, unique: once).
    """
    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[LedgerKind] = mapped_column(_enum(LedgerKind))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    attempt: Mapped[int | None] = mapped_column(Integer)
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    memo: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A creator's credit rows name the creator here (provider_id names whoever is paid).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    # What makes a money movement happen once ("payout:12", "hold:7:1", "credit:<uuid>"): unique.
    key: Mapped[str | None] = mapped_column(String(80), unique=True)

    __table_args__ = (
        UniqueConstraint("task_id", "attempt", name="uq_ledger_task_attempt"),
        Index("ix_ledger_worker_created", "worker_id", "created_at"),
        # A job's entries, and its cost summed from the index alone (ledger.job_cost_micros).
        Index("ix_ledger_job_cost", "job_id", "kind", "amount_micros"),
        Index("ix_ledger_provider_created", "provider_id", "created_at"),
        Index("ix_ledger_account_created", "account_id", "created_at"),
    )


class Payout(db.Model):
    """A provider's request to be paid part of their balance to a wallet (services/payouts.py).

    Its money left the balance when it was requested (a `payout` ledger row); a rejection returns it.
    (provider_id, idempotency_key) is unique, so a double-submitted form makes one request.
    """
    __tablename__ = "payouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    wallet_address: Mapped[str] = mapped_column(String(128))
    state: Mapped[PayoutState] = mapped_column(_enum(PayoutState), default=PayoutState.PENDING)
    idempotency_key: Mapped[str] = mapped_column(String(80))
    reference: Mapped[str | None] = mapped_column(String(255))  # the transaction id, once paid
    reason: Mapped[str | None] = mapped_column(String(255))  # why it was rejected
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    provider: Mapped[User] = relationship()

    __table_args__ = (
        UniqueConstraint("provider_id", "idempotency_key", name="uq_payouts_provider_key"),
        Index("ix_payouts_provider_created", "provider_id", "created_at"),
        Index("ix_payouts_state", "state", "created_at"),
    )


class MarketDay(db.Model):
    """The network's average bid for one UTC day, computed once a day (services/market.py says how)."""
    __tablename__ = "market_days"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    average_bid_micros: Mapped[int] = mapped_column(BigInteger)
    raw_bid_micros: Mapped[int | None] = mapped_column(BigInteger)  # before the daily limit; None = no data
    accounts: Mapped[int] = mapped_column(Integer, default=0)  # how many provider accounts it came from
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Verification(db.Model):
    """One spot check of one attempt of a task: a verification task re-does a sample of its result on a
    worker of another provider account, and the portal compares the two (services/verification.py)."""
    __tablename__ = "verifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))  # the task whose result is checked
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))  # who delivered the result
    provider_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verify_task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)
    # A second opinion may not run on the first verifier's account either.
    other_provider_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    # What is re-done, as the portal knows it (an upscale tile's window); never sent to the verifier.
    sample: Mapped[dict | None] = mapped_column(JSON)
    # A verification task's own input when it is not one of the job's (the tile cut from an image).
    input_sha256: Mapped[str | None] = mapped_column(ForeignKey("stored_files.sha256"))
    state: Mapped[VerificationState] = mapped_column(_enum(VerificationState), default=VerificationState.PENDING)
    scores: Mapped[list | None] = mapped_column(JSON)  # [{"psnr", "ssim"}] per crop or tile
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    task: Mapped["Task"] = relationship(foreign_keys=[task_id])
    verify_task: Mapped["Task"] = relationship(foreign_keys=[verify_task_id])

    __table_args__ = (
        Index("ix_verifications_task", "task_id", "attempt"),
        Index("ix_verifications_worker", "worker_id", "decided_at"),
    )


class MiningReport(db.Model):
    """A period the app mined, as the portal accepted it: the hashrate it measured (capped), and the
    portal's estimate of what that earned from the operator's rate table (services/mining.py)."""
    __tablename__ = "mining_reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))
    coin: Mapped[str] = mapped_column(String(16))
    pool: Mapped[str] = mapped_column(String(255))
    hashrate: Mapped[float] = mapped_column(Float)  # hashes per second, as counted (capped)
    period_seconds: Mapped[int] = mapped_column(Integer)
    earnings_micros: Mapped[int] = mapped_column(BigInteger)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # the period's end
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hashrate_reported: Mapped[float | None] = mapped_column(Float)
    shares_accepted: Mapped[int | None] = mapped_column(Integer)
    shares_rejected: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_mining_worker_reported", "worker_id", "reported_at"),)


class MiningRate(db.Model):
    """The operator's rate table (`pictor-portal mining-rates`): what a coin pays per MH/s per day, and
    the most one GPU can plausibly hash at its algorithm (a report above it is counted at the cap)."""
    __tablename__ = "mining_rates"
    coin: Mapped[str] = mapped_column(String(16), primary_key=True)
    micros_per_mh_day: Mapped[int] = mapped_column(BigInteger)
    max_mh_per_gpu: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountAction(db.Model):
    """One counted action of an account: what per-account limits count. In the database, so every
    portal process counts the same rows (services/limits.py)."""
    __tablename__ = "account_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[AccountActionKind] = mapped_column(_enum(AccountActionKind))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_account_actions_user_kind", "user_id", "kind", "created_at"),)


class WorkerDailyStat(db.Model):
    """Per worker and UTC day: what the charts read, rolled up from tasks, ledger and mining reports."""
    __tablename__ = "worker_daily_stats"
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    task_earnings_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    mining_earnings_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    tasks_completed: Mapped[int] = mapped_column(Integer, default=0)
    tasks_failed: Mapped[int] = mapped_column(Integer, default=0)
    compute_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class PeriodicRun(db.Model):
    """One row per (periodic job, time slot): the unique key is what makes a run happen once."""
    __tablename__ = "periodic_runs"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    runner: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(255))


class AppRelease(db.Model):
    """Builds of the Worker App the portal serves; the newest version makes 'app version current' mean something."""
    __tablename__ = "app_releases"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    platform: Mapped[str] = mapped_column(String(16), default="windows")
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkerTag(db.Model):
    """A provider's label on a worker ("farm-a", "rack-3"): filters the list, selects workers for bulk actions."""
    __tablename__ = "worker_tags"
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32), primary_key=True)  # lower-case (services/fleet.py clean_tag)

    __table_args__ = (Index("ix_worker_tags_tag", "tag", "worker_id"),)


class AlertKind(str, enum.Enum):
    """What an alert says (services/alerts.py); an incident is one of the first three, open until it ends."""
    OFFLINE = "offline"
    ERROR = "error"
    SUSPENDED = "suspended"
    RECOVERED = "recovered"
    DIGEST = "digest"


class AlertChannel(str, enum.Enum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class DeliveryState(str, enum.Enum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"
    FAILED = "failed"  # gave up after the last retry


class AlertSettings(db.Model):
    """One account's alert choices; the webhook secret is sealed with the portal's key (it must sign)."""
    __tablename__ = "alert_settings"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    on_offline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    on_error: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    on_suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    daily_digest: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    email_to: Mapped[str | None] = mapped_column(String(254))  # None = the account's address
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret_sealed: Mapped[str | None] = mapped_column(String(255))
    webhook_secret_prefix: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WorkerIncident(db.Model):
    """One outage of one worker (offline, error or suspended), open while it lasts: at most one open
    per worker and kind (a partial unique index), so one outage makes one alert and one recovery notice."""
    __tablename__ = "worker_incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_worker_incidents_owner_started", "owner_id", "started_at"),)


Index("uq_worker_incidents_open", WorkerIncident.worker_id, WorkerIncident.kind, unique=True,
      sqlite_where=WorkerIncident.ended_at.is_(None), postgresql_where=WorkerIncident.ended_at.is_(None))


class AlertDelivery(db.Model):
    """One message to one channel: its unique key ("incident:7:opened:email") makes it exist once;
    retried with back-off until sent or given up. The account page lists them (the delivery log)."""
    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("worker_incidents.id"))
    channel: Mapped[AlertChannel] = mapped_column(_enum(AlertChannel))
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind))
    key: Mapped[str] = mapped_column(String(120), unique=True)
    payload: Mapped[dict] = mapped_column(JSON)
    target: Mapped[str] = mapped_column(String(500))  # the address or URL at the time it was queued
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    response_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_alert_deliveries_user_created", "user_id", "created_at"),
        Index("ix_alert_deliveries_due", "state", "next_attempt_at"),
    )
