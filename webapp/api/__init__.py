"""The JSON API under /api/v1: bearer-token auth, JSON errors, and the blueprints that share them."""

from datetime import timedelta
from functools import wraps

from flask import Blueprint, g, request
from flask.ctx import _AppCtxGlobals

from ..clock import utcnow
from ..database import begin_read_transaction, writes_opt_in
from ..extensions import csrf, db
from ..models import ApiToken, Worker
from ..security import token_hash
from ..services import ServiceError
from ..web import json_error as error
from ..web import load_json

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # bearer tokens, not cookies: no CSRF exposure


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    response = error(exc.code, exc.message, exc.status)
    if getattr(exc, "retry_after", None):  # a limit reached: when to ask again
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _unauthorized(message: str):
    response = error("unauthorized", message, 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="pictor"'
    return response


def _end_auth_transaction() -> None:
    """Writes start with SQLite's write lock held (webapp.database); release it before the view reads
    a request body that may be a large upload, so other writers don't wait on the network."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        db.session.commit()


def user_token_required(view):
    """A personal API token (provider and creator APIs); sets g.user."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        token = _bearer()
        if not token:
            return _unauthorized("Send 'Authorization: Bearer <API token>'; create one on your Account page.")
        row = db.session.execute(
            db.select(ApiToken).where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
        ).scalar_one_or_none()
        if row is None:
            return _unauthorized("This API token is unknown or revoked.")
        if row.last_used_at is None or utcnow() - row.last_used_at > timedelta(minutes=1):
            # In a write transaction of its own: on SQLite a read transaction that later writes fails
            # at once ("database is locked") when a worker committed in between, e.g. while a creator
            # polls a job that is rendering.
            token_id = row.id
            from ..database import begin_write_transaction
            begin_write_transaction(db.session)
            db.session.execute(db.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))
            db.session.commit()
        g.user = row.user
        _end_auth_transaction()
        return view(*args, **kwargs)
    return wrapper


# Core, not ORM: the worker API's hottest statement. With the id come what a heartbeat needs: the pause
# it answers with, and the state it may change.
_workers = Worker.__table__.c
_WORKER_BY_TOKEN = (db.select(_workers.id, _workers.paused_at, _workers.state, _workers.state_message)
                    .where(_workers.token_hash == db.bindparam("token_hash"), _workers.deleted_at.is_(None)))
# The whole row, for the views that use g.worker in the token's transaction (a claim, an upload, a complete).
_WHOLE_WORKER_BY_TOKEN = db.select(Worker).where(Worker.token_hash == db.bindparam("token_hash"),
                                                 Worker.deleted_at.is_(None))


class RequestGlobals(_AppCtxGlobals):
    """Flask's g, with the authenticated worker (g.worker) loaded from g.worker_id on first use, or set
    by the token's statement as g._worker (Flask's g sets attributes past any property setter)."""

    @property
    def worker(self) -> Worker:
        worker = self.__dict__.get("_worker")
        if worker is None:
            worker_id = self.__dict__.get("worker_id")
            if worker_id is None:
                raise AttributeError("worker")
            worker = self.__dict__["_worker"] = db.session.get(Worker, worker_id)
        return worker


def worker_token_required(view=None, *, reads_first: bool = False, loads_worker: bool = False):
    """A worker's own token (the worker API); sets g.worker_id, g.worker_auth (the id, paused_at, state
    and state_message) and g.worker on first use.

    Every worker call's writes opt in (database.writes_opt_in): its services take the write lock with
    begin_write_transaction, and any other transaction it begins is a read.
    reads_first: the view goes on in the token lookup's read transaction, as a heartbeat and an idle
    claim do (one transaction fewer on the hottest calls); other views begin a fresh one.
    loads_worker (with reads_first): the token's statement loads the whole row as g.worker, for a view
    that uses it (one statement fewer).
    """
    if view is None:
        return lambda view: worker_token_required(view, reads_first=reads_first, loads_worker=loads_worker)
    if loads_worker and not reads_first:
        raise TypeError("loads_worker goes with reads_first: a fresh transaction would load the row again")

    @wraps(view)
    def wrapper(*args, **kwargs):
        token = _bearer()
        if not token:
            return _unauthorized("Send 'Authorization: Bearer <worker token>' from the worker's config.")
        writes_opt_in()  # the worker API's services take the write lock when they write, and only then
        # Without the write lock: the hottest calls (heartbeats, idle claims) need no more, and the row
        # itself loads with it (loads_worker) or on first use of g.worker (RequestGlobals).
        begin_read_transaction(db.session)
        if loads_worker:
            row = db.session.execute(_WHOLE_WORKER_BY_TOKEN, {"token_hash": token_hash(token)}).scalar_one_or_none()
        else:
            row = db.session.connection().execute(_WORKER_BY_TOKEN, {"token_hash": token_hash(token)}).first()
        # Requests sharing an app context (a test's) each have their own worker: none left from the one before.
        g.pop("_worker", None)
        if row is None:
            return _unauthorized("This worker token is unknown or the worker was deleted: pair the app again.")
        if loads_worker:
            g._worker = row
        g.worker_id = row.id
        g.worker_auth = row
        if not reads_first:
            _end_auth_transaction()
        return view(*args, **kwargs)
    return wrapper


def json_body() -> dict:
    """The request's JSON object, or a 400 the client can act on (web.load_json says what it refuses)."""
    if not request.is_json:
        raise ServiceError("invalid_json", "Send a JSON object with 'Content-Type: application/json'.")
    data = load_json(request.get_data(cache=True))
    if not isinstance(data, dict):
        raise ServiceError("invalid_json", "Send a JSON object with 'Content-Type: application/json'.")
    return data


@bp.get("/me")
@user_token_required
def me():
    """Who this token belongs to: a cheap way for scripts to check their token."""
    return {"id": g.user.id, "email": g.user.email, "wallet_address": g.user.wallet_address}
