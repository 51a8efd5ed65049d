"""A job's outputs: the finished tasks' files, the zip the creator downloads, and their deletion after retention.

The zip's layout is stable: a file is always at the same path, whichever tasks have completed when it is
downloaded, so a second download can be unpacked over the first. Each completed output is at the top
level under the name its task delivered it with — a render's frames `frame_0001.png`, `frame_0002.png`
... (four digits at least, the job's format's extension), an upscale's images `<input name>_x<scale>.png`
— except a name that two of the job's tasks deliver (by their params, whether they completed yet or
not, e.g. the inputs `a.png` and `a.jpg` of an upscale), which goes in `task-<seq, 4 digits>/<name>`
for every task delivering it. Files are stored as they are (no compression: renders are compressed
already); nothing else is in the zip.
"""

import zipfile
from collections import Counter
from datetime import datetime, timedelta
from typing import Iterator

from flask import current_app
from sqlalchemy.orm import selectinload

from ..clock import utcnow
from ..extensions import db
from ..models import AppRelease, DraftFile, Job, JobInput, StoredFile, Task, TaskOutput, TaskStatus, Verification, job_work
from . import NotFound, ServiceError, result_checks, storage, thumbnails


def tasks_with_outputs(job: Job, page: int | None = None, per_page: int = 50) -> list[Task]:
    query = (db.select(Task).where(Task.job_id == job.id, job_work()).options(selectinload(Task.outputs))
             .order_by(Task.seq))
    if page is not None:
        query = query.limit(per_page).offset((max(1, page) - 1) * per_page)
    return list(db.session.execute(query).scalars())


def completed_outputs(job: Job, limit: int | None = None) -> list[tuple[Task, TaskOutput]]:
    """(task, output) for every output of a completed task, in task order."""
    query = (db.select(Task, TaskOutput).join(TaskOutput, TaskOutput.task_id == Task.id)
             .where(Task.job_id == job.id, Task.status == TaskStatus.COMPLETED, job_work())
             .order_by(Task.seq, TaskOutput.name))
    if limit is not None:
        query = query.limit(limit)
    return [tuple(row) for row in db.session.execute(query).all()]


def get_output(job: Job, task_id: int, name: str) -> TaskOutput:
    """One output of one of the job's completed tasks (NotFound otherwise, or once purged)."""
    output = db.session.execute(
        db.select(TaskOutput).join(Task, TaskOutput.task_id == Task.id)
        .where(Task.id == task_id, Task.job_id == job.id, Task.status == TaskStatus.COMPLETED, job_work(),
               TaskOutput.name == name)).scalar_one_or_none()
    if output is None:
        raise NotFound("output")
    if job.outputs_purged_at is not None or not storage.path_for(output.sha256).exists():
        raise ServiceError("outputs_purged", "This output was deleted after the retention period.", 410)
    return output


class _Sink:
    """A write-only file for zipfile that hands the written bytes out in pieces (zipfile copes with no seek)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _planned_names(job: Job) -> Counter:
    """How many of the job's tasks deliver each output name, from their params (any status)."""
    planned: Counter = Counter()
    for params in db.session.execute(db.select(Task.params).where(Task.job_id == job.id, job_work())).scalars():
        params = params or {}
        if "frames" in params and params.get("format") in result_checks.FORMATS:
            planned.update(result_checks.render_output_names(params["frames"], params["format"]))
        elif isinstance(params.get("image"), str) and params.get("scale") in (2, 4):
            planned.update(result_checks.upscale_output_names(params["image"], params["scale"]))
    return planned


def zip_entries(job: Job) -> list[tuple[str, str, int, datetime]]:
    """(name in the zip, sha256, size, time) for each completed output, laid out as the module docstring
    says: prefixed with task-<seq>/ where two of the job's tasks deliver the same name."""
    rows = completed_outputs(job)
    delivered = Counter(output.name for _, output in rows)
    planned = _planned_names(job) if rows else Counter()
    counts = {name: max(n, planned[name]) for name, n in delivered.items()}
    entries = []
    for task, output in rows:
        safe = output.name.replace("\\", "/").rsplit("/", 1)[-1] or f"output-{output.id}"
        name = safe if counts[output.name] == 1 else f"task-{task.seq:04d}/{safe}"
        entries.append((name, output.sha256, output.size, output.created_at))
    return entries


def stream_outputs_zip(job: Job) -> Iterator[bytes]:
    """The completed tasks' outputs as a zip, produced piece by piece (never whole in memory).

    Everything is looked up now, so the returned generator needs no app context while it streams.
    """
    if job.outputs_purged_at is not None:
        raise ServiceError("outputs_purged", "This job's outputs were deleted after the retention period.", 410)
    entries = [(name, storage.path_for(sha), size, when) for name, sha, size, when in zip_entries(job)]

    def generate():
        sink = _Sink()
        # Renders are already compressed (PNG, JPEG, EXR's own codecs): store, don't deflate.
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, path, size, when in entries:
                info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6] if when.year >= 1980
                                       else (1980, 1, 1, 0, 0, 0))
                info.file_size = size
                info.external_attr = 0o644 << 16
                with path.open("rb") as src, zf.open(info, "w", force_zip64=size > 2**31) as dst:
                    while chunk := src.read(storage.CHUNK):
                        dst.write(chunk)
                        yield sink.drain()
                yield sink.drain()
        yield sink.drain()
    return (piece for piece in generate() if piece)


def purge_old_outputs(now: datetime | None = None) -> int:
    """Delete the output files of jobs finished more than OUTPUT_RETENTION_DAYS ago; returns how many jobs.

    A blob still referenced by another job's input or by an output of a job that is kept stays on disk.
    The rows stay too (names, sizes and hashes are history); the job records when its files went.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=int(current_app.config.get("OUTPUT_RETENTION_DAYS", 30)))
    jobs = list(db.session.execute(db.select(Job).where(
        Job.finished_at.is_not(None), Job.finished_at < cutoff, Job.outputs_purged_at.is_(None))).scalars())
    if not jobs:
        return 0
    job_ids = [j.id for j in jobs]
    shas = set(db.session.execute(
        db.select(TaskOutput.sha256).join(Task, TaskOutput.task_id == Task.id).where(Task.job_id.in_(job_ids))
    ).scalars())
    kept_by_outputs = set(db.session.execute(
        db.select(TaskOutput.sha256).join(Task, TaskOutput.task_id == Task.id).join(Job, Task.job_id == Job.id)
        .where(TaskOutput.sha256.in_(shas), Task.job_id.not_in(job_ids), Job.outputs_purged_at.is_(None))
    ).scalars()) if shas else set()
    kept_by_inputs = set(db.session.execute(
        db.select(JobInput.sha256).where(JobInput.sha256.in_(shas))).scalars()) if shas else set()
    for job in jobs:
        job.outputs_purged_at = now
    db.session.commit()  # record first: a crash below leaves files to delete, never a link to a missing one
    for sha in shas - kept_by_outputs - kept_by_inputs:
        storage.delete_blob(sha)
        thumbnails.forget(sha)
    return len(jobs)


def collect_unreferenced_blobs(now: datetime | None = None) -> int:
    """Delete stored blobs nothing refers to any more — uploads that were not declared outputs, results
    refused or taken back — once BLOB_GRACE_SECONDS old, so an upload still on its way is never
    collected; returns how many. Run by the scheduler."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=int(current_app.config.get("BLOB_GRACE_SECONDS", 3600)))
    from ..database import begin_write_transaction
    begin_write_transaction(db.session)
    referenced = db.union(db.select(JobInput.sha256), db.select(TaskOutput.sha256), db.select(AppRelease.sha256),
                          db.select(DraftFile.sha256),  # a scene uploaded, its job not submitted yet
                          db.select(Verification.input_sha256).where(Verification.input_sha256.is_not(None)))
    gone = list(db.session.execute(db.select(StoredFile.sha256).where(
        StoredFile.created_at < cutoff, StoredFile.sha256.not_in(referenced)).limit(1000)).scalars())
    if gone:
        db.session.execute(db.delete(StoredFile).where(StoredFile.sha256.in_(gone)))
    db.session.commit()  # rows first: a crash below leaves a file to collect again, never a row without one
    for sha in gone:
        storage.delete_blob(sha)
        thumbnails.forget(sha)
    return len(gone)
