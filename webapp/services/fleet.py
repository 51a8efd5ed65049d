"""Fleet operations: tags on workers, the search and filters that find them, and bulk actions over many.

A bulk action names its workers by id or by "all matching this filter"; either way the set is
computed here, inside the owner's workers (not deleted), so an id of another account's worker is
simply not in it: it is never touched and never reported. Pausing is the portal's own flag
(`Worker.paused_at`): claims refuse a paused worker at once (services/dispatch.py) and the app hears
it in its next heartbeat answer (api/worker.py), so the pause holds whatever the app does.
"""

import enum
import re
from dataclasses import dataclass

from sqlalchemy import delete as sql_delete
from sqlalchemy import false, insert, update

from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import Worker, WorkerTag
from . import ServiceError, market

TAG_MAX = 32
TAGS_PER_WORKER_MAX = 20
TAGS_PER_ACTION_MAX = 10
IDS_PER_ACTION_MAX = 10_000  # a farm's whole fleet; more ids than that in one request is not a person
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._:-]*$")


class BulkAction(str, enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"
    SET_BID = "set_bid"
    TAG = "tag"
    UNTAG = "untag"
    DELETE = "delete"


# What a confirmation says, per action ("Pause 12 workers?").
ACTION_VERBS = {
    BulkAction.PAUSE: "Pause", BulkAction.RESUME: "Resume", BulkAction.SET_BID: "Set the bid of",
    BulkAction.TAG: "Tag", BulkAction.UNTAG: "Untag", BulkAction.DELETE: "Delete",
}


@dataclass
class BulkResult:
    action: BulkAction
    matched: int  # the owner's workers the request named (others' ids are not counted)
    changed: int  # of those, how many this action changed (pausing a paused worker changes nothing)

    def to_dict(self) -> dict:
        return {"action": self.action.value, "matched": self.matched, "changed": self.changed}


# --- tags -----------------------------------------------------------------------------------------

def clean_tag(tag) -> str:
    """A tag: 1..32 of a-z 0-9 . _ : - (lower-cased, starting with a letter or digit), or a 400."""
    if not isinstance(tag, str):
        raise ServiceError("invalid_tag", "A tag is text, e.g. \"farm-a\" or \"rack-3\".")
    tag = tag.strip().lower()
    if not tag:
        raise ServiceError("invalid_tag", "A tag cannot be empty.")
    if len(tag) > TAG_MAX:
        raise ServiceError("invalid_tag", f"A tag has at most {TAG_MAX} characters.")
    if not TAG_PATTERN.match(tag):
        raise ServiceError("invalid_tag", f"{tag[:40]!r} is not a tag: use letters, digits and . _ : - "
                                          "(e.g. farm-a, rack-3).")
    return tag


def clean_tags(tags) -> list[str]:
    """A list of tags (or one comma/space separated string), cleaned, duplicates dropped, order kept."""
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    if not isinstance(tags, list) or not tags:
        raise ServiceError("invalid_tags", "Give one or more tags, e.g. [\"farm-a\", \"rack-3\"].")
    if len(tags) > TAGS_PER_ACTION_MAX:
        raise ServiceError("invalid_tags", f"At most {TAGS_PER_ACTION_MAX} tags in one action.")
    cleaned = []
    for tag in tags:
        tag = clean_tag(tag)
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def set_tags(worker: Worker, tags) -> list[str]:
    """Replace one worker's tags (an empty list clears them)."""
    tags = [] if tags == [] else clean_tags(tags)
    if len(tags) > TAGS_PER_WORKER_MAX:
        raise ServiceError("too_many_tags", f"A worker has at most {TAGS_PER_WORKER_MAX} tags.")
    begin_write_transaction(db.session)
    db.session.execute(sql_delete(WorkerTag).where(WorkerTag.worker_id == worker.id)
                       .execution_options(synchronize_session=False))
    if tags:
        db.session.execute(insert(WorkerTag), [{"worker_id": worker.id, "tag": t} for t in tags])
    db.session.commit()
    db.session.expire(worker)
    return worker.tags


def owner_tags(owner_id: int) -> list[str]:
    """Every tag on the owner's workers, for the filter menu."""
    return list(db.session.execute(
        db.select(WorkerTag.tag).join(Worker, Worker.id == WorkerTag.worker_id)
        .where(Worker.owner_id == owner_id, Worker.deleted_at.is_(None)).distinct().order_by(WorkerTag.tag)
    ).scalars())


def owner_gpu_models(owner_id: int) -> list[str]:
    """Every GPU model among the owner's workers, for the filter menu."""
    return list(db.session.execute(
        db.select(Worker.gpu_name).where(Worker.owner_id == owner_id, Worker.deleted_at.is_(None),
                                         Worker.gpu_name.is_not(None)).distinct().order_by(Worker.gpu_name)
    ).scalars())


# --- search and filters (used by services/workers.py list_workers) --------------------------------

def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def text_match(q: str):
    """SQL: a worker whose name, hostname, GPU model or one of its tags contains `q` (any case)."""
    pattern = _like(q)
    tagged = db.select(WorkerTag.worker_id).where(WorkerTag.tag.ilike(pattern, escape="\\"))
    return db.or_(Worker.name.ilike(pattern, escape="\\"), Worker.hostname.ilike(pattern, escape="\\"),
                  Worker.gpu_name.ilike(pattern, escape="\\"), Worker.id.in_(tagged))


def filter_conditions(tag: str | None = None, gpu: str | None = None) -> list:
    """SQL conditions for the tag and GPU-model filters; an unusable tag matches nothing (never a 500)."""
    conditions = []
    tag = (tag or "").strip()
    if tag:
        try:
            tag = clean_tag(tag)
        except ServiceError:
            return [false()]
        conditions.append(Worker.id.in_(db.select(WorkerTag.worker_id).where(WorkerTag.tag == tag)))
    gpu = (gpu or "").strip()[:128]
    if gpu:
        conditions.append(Worker.gpu_name == gpu)
    return conditions


# --- choosing the workers of an action ------------------------------------------------------------

def _ids(ids) -> list[int]:
    if not isinstance(ids, list) or not ids:
        raise ServiceError("invalid_ids", "Name the workers: \"ids\": [1, 2, ...], or \"all_matching\": true "
                                          "with a filter.")
    if len(ids) > IDS_PER_ACTION_MAX:
        raise ServiceError("invalid_ids", f"At most {IDS_PER_ACTION_MAX} ids in one action.")
    clean = set()
    for value in ids:
        if isinstance(value, bool):
            raise ServiceError("invalid_ids", "Worker ids are whole numbers.")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ServiceError("invalid_ids", "Worker ids are whole numbers.") from None
        if 0 < number <= 2**31 - 1:  # anything else cannot exist: left out like another's id
            clean.add(number)
    return sorted(clean)


def target_ids(owner_id: int, ids=None, all_matching: bool = False, q: str | None = None,
               status: str | None = None, tag: str | None = None, gpu: str | None = None,
               now=None) -> list[int]:
    """The owner's live workers an action applies to: those of `ids` that are theirs, or every one the
    list's filter (q, status, tag, gpu) shows."""
    from . import workers as worker_service  # the list's own filters, so "all matching" means what it showed
    if all_matching:
        filters = worker_service.list_filters(owner_id, q=q, status=status, tag=tag, gpu=gpu, now=now)
        return list(db.session.execute(db.select(Worker.id).where(*filters).order_by(Worker.id)).scalars())
    wanted = _ids(ids)
    found = []
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start:start + 500]
        found += db.session.execute(db.select(Worker.id).where(
            Worker.owner_id == owner_id, Worker.deleted_at.is_(None), Worker.id.in_(chunk))).scalars()
    return sorted(found)


def parse_action(value) -> BulkAction:
    if isinstance(value, BulkAction):
        return value
    if not isinstance(value, str):
        raise ServiceError("invalid_action", "Send the action as text: "
                                             f"{', '.join(a.value for a in BulkAction)}.")
    try:
        return BulkAction(value.strip().lower())
    except ValueError:
        raise ServiceError("invalid_action", "Unknown action: use one of "
                                             f"{', '.join(a.value for a in BulkAction)}.") from None


def prepare(action, bid=None, tags=None) -> dict:
    """Check an action's arguments before anything is counted or changed; returns them cleaned."""
    action = parse_action(action)
    arguments: dict = {"action": action}
    if action == BulkAction.SET_BID:
        # "" or None: back to the network average, as on a worker's own Settings tab.
        arguments["bid_micros"] = market.parse_bid(None if bid in (None, "") else bid)
    if action in (BulkAction.TAG, BulkAction.UNTAG):
        arguments["tags"] = clean_tags(tags)
    return arguments


# --- the actions ------------------------------------------------------------------------------------

def apply(owner_id: int, worker_ids: list[int], action, bid_micros: int | None = None,
          tags: list[str] | None = None) -> BulkResult:
    """Do `action` to the owner's workers in `worker_ids` (already chosen by target_ids; the owner
    condition is applied again in every statement, so a foreign id slipped in here is still inert)."""
    action = parse_action(action)
    now = utcnow()
    ids = list(worker_ids)
    if action == BulkAction.DELETE:
        return BulkResult(action, len(ids), _delete(owner_id, ids))
    changed = 0
    begin_write_transaction(db.session)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        mine = [Worker.owner_id == owner_id, Worker.deleted_at.is_(None), Worker.id.in_(chunk)]
        if action == BulkAction.PAUSE:
            changed += _update(mine + [Worker.paused_at.is_(None)], paused_at=now, updated_at=now)
        elif action == BulkAction.RESUME:
            changed += _update(mine + [Worker.paused_at.is_not(None)], paused_at=None, updated_at=now)
        elif action == BulkAction.SET_BID:
            differs = (Worker.bid_micros.is_not(None) if bid_micros is None
                       else db.or_(Worker.bid_micros.is_(None), Worker.bid_micros != bid_micros))
            changed += _update(mine + [differs], bid_micros=bid_micros, updated_at=now)
        elif action == BulkAction.TAG:
            changed += _add_tags(mine, tags or [])
        elif action == BulkAction.UNTAG:
            chunk_mine = db.select(Worker.id).where(*mine)
            changed += db.session.execute(sql_delete(WorkerTag).where(
                WorkerTag.worker_id.in_(chunk_mine), WorkerTag.tag.in_(tags or []))
                .execution_options(synchronize_session=False)).rowcount or 0
    db.session.commit()
    db.session.expire_all()  # rows loaded before the bulk statements are stale now
    return BulkResult(action, len(ids), changed)


def _update(conditions: list, **values) -> int:
    return db.session.execute(update(Worker).where(*conditions).values(**values)
                              .execution_options(synchronize_session=False)).rowcount or 0


def _add_tags(conditions: list, tags: list[str]) -> int:
    """Add each tag to each worker that lacks it, up to TAGS_PER_WORKER_MAX tags a worker."""
    workers = list(db.session.execute(db.select(Worker.id).where(*conditions)).scalars())
    if not workers:
        return 0
    existing: dict[int, set] = {w: set() for w in workers}
    for worker_id, tag in db.session.execute(
            db.select(WorkerTag.worker_id, WorkerTag.tag).where(WorkerTag.worker_id.in_(workers))):
        existing[worker_id].add(tag)
    rows = []
    full = 0
    for worker_id in workers:
        new = [t for t in tags if t not in existing[worker_id]]
        if len(existing[worker_id]) + len(new) > TAGS_PER_WORKER_MAX:
            full += 1
            continue
        rows += [{"worker_id": worker_id, "tag": t} for t in new]
    if full and not rows:
        raise ServiceError("too_many_tags", f"A worker has at most {TAGS_PER_WORKER_MAX} tags: remove some first.")
    if rows:
        db.session.execute(insert(WorkerTag), rows)
    return len({row["worker_id"] for row in rows})


def _delete(owner_id: int, ids: list[int]) -> int:
    """Delete one by one through services/workers.py delete: each revokes its token and hands back its
    running tasks, the same as the single Delete button."""
    from . import workers as worker_service
    changed = 0
    for worker_id in ids:
        worker = db.session.get(Worker, worker_id)
        if worker is None or worker.owner_id != owner_id or worker.deleted_at is not None:
            continue
        worker_service.delete(worker)
        changed += 1
    return changed


def run(owner_id: int, action, ids=None, all_matching: bool = False, filters: dict | None = None,
        bid=None, tags=None, dry_run: bool = False) -> BulkResult:
    """Check, choose and apply in one call (the API's and the confirmed form's path)."""
    arguments = prepare(action, bid=bid, tags=tags)
    chosen = target_ids(owner_id, ids=ids, all_matching=all_matching, **(filters or {}))
    if dry_run:
        return BulkResult(arguments["action"], len(chosen), 0)
    return apply(owner_id, chosen, arguments["action"], bid_micros=arguments.get("bid_micros"),
                 tags=arguments.get("tags"))


def paused_by_portal(worker: Worker) -> bool:
    """Whether the provider paused this worker from the portal (what the heartbeat answer carries)."""
    return worker.paused_at is not None
