"""Scenes: a creator's .blend or project zip received, read without Blender, and kept as a draft.

What the file says (frame range, resolution, engine, samples, format, cameras) becomes the default of
every render field the creator leaves empty, and the files it depends on are checked against what was
uploaded, so a texture left out is named before the job runs — not as magenta frames after it is paid.

The file is untrusted. It is read by `blend_reader.py` in a child process that limits its own memory,
CPU and file size and is killed at READ_TIMEOUT_S, so a hostile .blend costs one short-lived process;
and it is read from a private copy of the upload alone, so no path in it can reach the portal's disk.
A draft (SceneDraft) keeps the stored files and the reading for DRAFT_HOURS, owner-only, so a form
corrected after a 500 MiB upload does not upload it again; `expire_drafts` removes old ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from flask import current_app

from ..clock import utcnow
from ..extensions import db
from ..models import DraftFile, SceneDraft
from . import ServiceError, storage, uploads

READER = Path(__file__).with_name("blend_reader.py")
READ_TIMEOUT_S = 30.0  # a real scene of 500 MiB reads in a few seconds
READ_MAX_BYTES = 4 * 1024**3  # what the reader may write (a compressed .blend decompressed)
READ_OUTPUT_MAX = 1024 * 1024
DRAFT_HOURS = 24
ZIP_MAGIC = b"PK\x03\x04"

# The spec fields a file supplies, and the formats workers write (the file's others fall back to PNG).
FILE_FIELDS = ("frame_start", "frame_end", "frame_step", "samples", "resolution_percent", "engine", "format")
WORKER_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "OPEN_EXR": "OPEN_EXR", "OPEN_EXR_MULTILAYER": "OPEN_EXR"}
ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")

PACK_ADVICE = ("In Blender, File › External Data › Pack Resources puts textures and sounds inside the "
               ".blend; or upload a zip of the project folder with these files at the same relative paths.")


class MissingDependencies(ServiceError):
    """The scene uses files the upload lacks; the creator may still submit with allow_missing."""

    def __init__(self, missing: list[dict]):
        names = ", ".join(d["path"] for d in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        super().__init__("missing_dependencies", f"The scene uses {len(missing)} file(s) the upload lacks: "
                         f"{names}. {PACK_ADVICE} To render without them anyway (missing textures render "
                         "magenta), submit again with allow_missing.")
        self.missing = missing


# --- Reading ------------------------------------------------------------------------------------------

def read_scene(root: Path, main: str) -> dict:
    """{"settings", "dependencies", "truncated"} of root/main read by the bounded child, or
    {"error": message} when the file cannot be read (it may still be a .blend only Blender opens)."""
    config = current_app.config
    timeout = float(config.get("SCENE_READ_TIMEOUT_S", READ_TIMEOUT_S))
    max_bytes = int(config.get("SCENE_READ_MAX_BYTES", READ_MAX_BYTES))
    scratch = Path(tempfile.mkdtemp(prefix="read-", dir=root.parent))
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch),
           "LANG": "C.UTF-8"}  # BAT decompresses into TMPDIR: our scratch folder, removed below
    try:
        done = subprocess.run([sys.executable, "-I", str(READER), str(root), main, str(max_bytes)],
                              capture_output=True, timeout=timeout, env=env, cwd=scratch, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"reading it took longer than {timeout:g} s"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        result = json.loads(done.stdout[:READ_OUTPUT_MAX].decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = None
    if not isinstance(result, dict):
        why = "it ran out of its memory or file size limit" if done.returncode < 0 else "the reader stopped"
        return {"error": f"{why} (exit {done.returncode})"}
    return result


def file_defaults(reading: dict) -> dict:
    """The spec values the file supplies (only those a worker can use)."""
    settings = reading.get("settings") or {}
    out = {key: settings[key] for key in ("frame_start", "frame_end", "frame_step", "samples", "resolution_percent")
           if isinstance(settings.get(key), int)}
    if settings.get("engine") in ENGINES:
        out["engine"] = settings["engine"]
    if "format" in settings:
        out["format"] = WORKER_FORMATS.get(settings["format"], "PNG")
    return out


def notes(reading: dict) -> list[str]:
    """What the creator should know about the file's settings before submitting."""
    settings = reading.get("settings") or {}
    out = []
    if reading.get("main_required"):
        out.append(f"{reading['main_required']} Type its path below and submit: the zip stays uploaded.")
    if reading.get("error"):
        out.append(f"The portal could not read the scene ({reading['error']}): fill in the render settings.")
    if settings.get("engine") and settings["engine"] not in ENGINES:
        out.append(f"The file renders with {settings['engine']}, which workers do not run: choose an engine.")
    if settings.get("format") and settings["format"] not in WORKER_FORMATS:
        out.append(f"The file writes {settings['format']}; workers deliver frames, so they are rendered as PNG "
                   "unless you choose another format.")
    if settings.get("format") == "OPEN_EXR_MULTILAYER":
        out.append("The file writes multilayer EXR; workers write single-layer OpenEXR frames.")
    if settings and len(settings.get("cameras") or []) > 1:
        out.append(f"The scene has {len(settings['cameras'])} cameras; frames render from the active one "
                   f"({settings.get('camera') or 'none set'}).")
    if reading.get("truncated"):
        out.append("The scene uses more files than the portal lists; only the first ones are shown.")
    return out


def job_name(filename: str) -> str:
    """A job's name when the creator gives none: the uploaded file's, without its extension."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return stem[:120] or "Render"


def missing(reading: dict) -> list[dict]:
    return [d for d in reading.get("dependencies") or [] if not d.get("found")]


def advice(dependency: dict) -> str:
    """What to do about one missing file, in the creator's words."""
    if dependency.get("absolute"):
        return ("An absolute path: workers refuse scenes that reach outside their folder, so this task would "
                "fail. Pack it (File › External Data › Pack Resources), or make paths relative (File › External "
                "Data › Make Paths Relative) and add the file to the zip.")
    if dependency.get("outside"):
        return ("Outside the project folder (a '..' path): workers refuse it. Move the file into the project "
                "folder, or pack it.")
    return "Not in the upload: add it to the zip at this path, or pack it into the .blend."


def public_dependencies(reading: dict) -> list[dict]:
    """The job JSON's `dependencies`: path and whether the upload holds it."""
    return [{"path": d["path"], "found": bool(d.get("found"))} for d in reading.get("dependencies") or []]


# --- Receiving an upload ---------------------------------------------------------------------------------

@dataclass
class Upload:
    """An uploaded scene spooled into a private folder and read, not stored yet."""
    root: Path
    filename: str
    main: str
    reading: dict
    paths: list[str] = field(default_factory=list)

    def store(self, put) -> list[tuple[str, str, int]]:
        """(path, sha256, size) of each file, stored by `put(stream, max_bytes)`."""
        stored = []
        for path in self.paths:
            with (self.root / path).open("rb") as fp:
                blob = put(fp, uploads.BLEND_MAX_BYTES)
            stored.append((path, blob.sha256, blob.size))
        return stored

    def close(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)


def _workspace() -> Path:
    base = storage.root() / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="scene-", dir=base))
    (folder / "project").mkdir()
    return folder / "project"


def receive(filename: str | None, stream: BinaryIO, main: str | None = None, field_name: str = "blend",
            unchosen_ok: bool = False) -> Upload:
    """A .blend or a project zip (told apart by content), checked, spooled and read; else InputError.
    With unchosen_ok (a draft), a zip with several .blend files and no `main` is kept unread until one
    is chosen (choose_main). The caller closes the Upload once it is stored."""
    head = stream.read(4096)
    if not head:
        raise uploads.InputError("missing_file", "The uploaded file is empty.", field_name)
    rest = uploads.PrefixedStream(head, stream)
    if head.startswith(ZIP_MAGIC):
        return _receive_project(filename, rest, main, unchosen_ok)
    uploads.check_blend_header(head)
    if main:
        raise uploads.InputError("bad_request", "'main' names the .blend inside a project zip; this upload is a "
                                 "single .blend.", "main")
    name = uploads.input_name(filename, "scene", ".blend")
    root = _workspace()
    try:
        cap = min(current_app.config.get("MAX_CONTENT_LENGTH") or uploads.BLEND_MAX_BYTES, uploads.BLEND_MAX_BYTES)
        _spool(rest, root / name, cap, "blend")
        return Upload(root, name, name, read_scene(root, name), [name])
    except BaseException:
        shutil.rmtree(root.parent, ignore_errors=True)
        raise


def _spool(stream, dest: Path, cap: int, field_name: str) -> None:
    size = 0
    with dest.open("wb") as out:
        while chunk := stream.read(storage.CHUNK):
            size += len(chunk)
            if size > cap:
                raise uploads.InputError("too_large", f"The file is larger than {cap // (1024 * 1024)} MiB.",
                                         field_name, 413)
            out.write(chunk)


def _receive_project(filename: str | None, stream, main: str | None, unchosen_ok: bool = False) -> Upload:
    cap = current_app.config.get("MAX_CONTENT_LENGTH") or uploads.ARCHIVE_MAX_TOTAL
    fp = uploads.seekable_upload(stream, cap, "project", "The project zip")
    members = uploads.check_project_archive(fp)
    paths = [m.filename for m in members]
    unchosen = None
    try:
        main = _main_blend(paths, main)
    except uploads.InputError as exc:
        if not (unchosen_ok and exc.code == "main_required"):
            raise
        main, unchosen = "", exc.message
    root = _workspace()
    try:
        zf = zipfile.ZipFile(fp)
        for info in members:
            dest = root.joinpath(*PurePosixPath(info.filename).parts)
            if not dest.resolve().is_relative_to(root.resolve()):  # checked names cannot, but never write outside
                raise uploads.InputError("unsafe_archive", f"{info.filename!r} points outside the project.", "project")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                # ZipExtFile never yields more than the declared size, which check_project_archive bounded.
                with zf.open(info) as member, dest.open("wb") as out:
                    shutil.copyfileobj(member, out, storage.CHUNK)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
                if isinstance(exc, OSError) and exc.errno == 28:
                    raise
                raise uploads.InputError("bad_archive", f"The project entry {info.filename!r} is corrupt.",
                                         "project") from None
        name = uploads.input_name(filename, "project", ".zip")
        reading = {"main_required": unchosen} if unchosen else _read_main(root, main)
        return Upload(root, name, main, reading, paths)
    except BaseException:
        shutil.rmtree(root.parent, ignore_errors=True)
        raise


def _read_main(root: Path, main: str) -> dict:
    with (root / main).open("rb") as blend:
        try:
            uploads.check_blend_header(blend.read(4096))
        except uploads.InputError:
            raise uploads.InputError("not_a_blend", f"{main!r} in the zip is not a Blender file.", "main") from None
    return read_scene(root, main)


def choose_main(draft: SceneDraft, main: str | None) -> None:
    """Point a draft at another .blend among its files and read that one (the caller commits): the
    .blend to render is corrected without uploading the project again."""
    main = _main_blend([f.path for f in draft.files], main)
    if main == draft.main:
        return
    root = _workspace()
    try:
        for item in draft.files:  # the stored files at their paths: hard links, no copies
            dest = root.joinpath(*PurePosixPath(item.path).parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(storage.path_for(item.sha256), dest)
            except OSError:
                shutil.copyfile(storage.path_for(item.sha256), dest)
        draft.reading, draft.main = _read_main(root, main), main
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def _main_blend(paths: list[str], main: str | None) -> str:
    """The .blend to render: `main` as given, or the only .blend at the top of the project."""
    blends = [p for p in paths if p.lower().endswith(".blend")]
    if main is not None:
        if not isinstance(main, str) or not main.strip():
            raise uploads.InputError("bad_request", "'main' must name the .blend inside the zip.", "main")
        main = main.strip().replace("\\", "/")
        if main.startswith("/") or (len(main) > 1 and main[1] == ":") or ".." in main.split("/"):
            raise uploads.InputError("unsafe_path", f"'main' must be a path inside the zip, like "
                                     f"{(blends or ['shot.blend'])[0]!r} (got {main!r}).", "main")
        if main not in paths:
            raise uploads.InputError("bad_request", f"The zip has no {main!r}; its .blend files: "
                                     f"{', '.join(blends[:10])}.", "main")
        if not main.lower().endswith(".blend"):
            raise uploads.InputError("bad_request", f"{main!r} is not a .blend file.", "main")
        return main
    depth = min(p.count("/") for p in blends)
    top = [p for p in blends if p.count("/") == depth]
    if len(top) > 1:
        raise uploads.InputError("main_required", f"The zip has several .blend files ({', '.join(top[:10])}): "
                                 "name the one to render (main).", "main")
    return top[0]


# --- Drafts -----------------------------------------------------------------------------------------------

def save_draft(owner, upload: Upload, put) -> SceneDraft:
    """The upload's files stored (by `put`) and a draft row for them; the caller commits."""
    hours = float(current_app.config.get("SCENE_DRAFT_HOURS", DRAFT_HOURS))
    now = utcnow()
    draft = SceneDraft(owner_id=owner.id, filename=upload.filename, main=upload.main, reading=upload.reading,
                       created_at=now, expires_at=now + timedelta(hours=hours))
    db.session.add(draft)
    for path, sha256, size in upload.store(put):
        draft.files.append(DraftFile(path=path, sha256=sha256, size=size))
    return draft


def owned_draft(owner_id: int, draft_id) -> SceneDraft:
    """The creator's unexpired draft; anyone else's, or one gone, is the same 'upload it again'."""
    try:
        draft = db.session.get(SceneDraft, int(draft_id))
    except (TypeError, ValueError):
        draft = None
    if draft is None or draft.owner_id != owner_id or draft.expires_at <= utcnow():
        raise uploads.InputError("draft_gone", "The uploaded scene is no longer kept (drafts last "
                                 f"{DRAFT_HOURS} hours): upload the file again.", "blend", 404)
    return draft


def discard_draft(owner_id: int, draft_id) -> None:
    """Forget the creator's draft (another file replaced it); anyone else's, or none, is left alone."""
    try:
        draft = owned_draft(owner_id, draft_id)
    except uploads.InputError:
        return
    db.session.delete(draft)
    db.session.commit()


def expire_drafts(now=None) -> int:
    """Delete drafts past their time (their blobs go with the next blob collection); returns how many."""
    now = now or utcnow()
    old = list(db.session.execute(db.select(SceneDraft).where(SceneDraft.expires_at <= now).limit(500)).scalars())
    for draft in old:
        db.session.delete(draft)
    db.session.commit()
    return len(old)
