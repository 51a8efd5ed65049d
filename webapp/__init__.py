"""The Worker Portal application factory: wiring only."""

import errno
import logging
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from . import config
from .extensions import csrf, db, htmx, limiter, login_manager, migrate, talisman
from .services import ServiceError

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

# Scripts and styles from our own static/ only (htmx included; it needs no eval here). Inline style
# attributes stay allowed: progress bars set their width with one; inline scripts do not.
CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


class RowIdConverter(IntegerConverter):
    """<int:...> in every route: ids no primary key can hold are a 404 before any view runs."""

    def __init__(self, map, *args, **kwargs):
        from .services.permissions import MAX_ID
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)

def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=str(ROOT / "instance"), instance_relative_config=True,
                template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.from_mapping(config.DEFAULTS)
    instance = Path(app.instance_path)
    if test_config is None or "SECRET_KEY" not in test_config:
        app.config.from_mapping(config.from_environment(instance))
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config.update(config.from_environment(instance))

    app.url_map.converters["int"] = RowIdConverter  # before any route is added
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A file has no server to drop the connection: a ping would be one more statement per request.
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.pop("pool_pre_ping", None)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    with app.app_context():
        from .database import configure_sqlite
        configure_sqlite(db.engine, guard_writes=bool(app.config.get("TESTING")))
    migrate.init_app(app, db, directory=str(ROOT / "webapp" / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    from .api import RequestGlobals
    app.app_ctx_globals_class = RequestGlobals  # g.worker loads on first use
    _warn_unshared_rate_limits(app)
    htmx.init_app(app)
    secure = bool(app.config.get("SESSION_COOKIE_SECURE"))
    talisman.init_app(app, force_https=bool(app.config.get("FORCE_HTTPS")), strict_transport_security=secure,
                      session_cookie_secure=secure, content_security_policy=CSP, frame_options="DENY",
                      referrer_policy="strict-origin-when-cross-origin", x_content_type_options=True)
    app.config["REMEMBER_COOKIE_SECURE"] = secure
    from .web import refuse_unstorable_text
    app.before_request(refuse_unstorable_text)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"

    from . import models  # noqa: F401  (tables registered on db.metadata)

    from .views import account, auth, jobs, main, money, workers
    for module in (auth, account, main, workers, jobs, money):
        app.register_blueprint(module.bp)
    # The API modules add their routes to one /api/v1 blueprint; openapi imports all of them.
    from .api import bp as api_bp
    from .api import openapi  # noqa: F401
    app.register_blueprint(api_bp)

    from . import filters
    filters.init_app(app)
    _register_errors(app)

    from .services import storage
    with app.app_context():
        storage.sweep_temp_files()  # what a crash mid-upload left behind

    from . import cli
    cli.init_app(app)
    if app.config["WORKER_API_TURNS"]:
        from .turns import WorkerApiTurns
        app.wsgi_app = WorkerApiTurns(app.wsgi_app, int(app.config["WORKER_API_TURNS"]), f"{api_bp.url_prefix}/worker/")
    if app.config.get("SCHEDULER_ENABLED") and not app.config.get("TESTING"):
        from . import tasks
        tasks.start(app)
    return app


def _warn_unshared_rate_limits(app: Flask) -> None:
    """Limits counted per process let N processes take N times the limit: say so at start-up."""
    uri = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    if uri.startswith("memory://"):
        log.warning("Rate limits are counted per process (RATELIMIT storage %s): set PICTOR_RATELIMIT_STORAGE "
                    "to a redis:// URL so all portal processes share them.", uri)
        return
    try:
        reachable = limiter.storage.check()
    except Exception:  # the storage library's own connection errors
        reachable = False
    if not reachable:
        log.warning("Rate-limit storage %s is unreachable: limits are counted per process until it is back.", uri)


def _register_errors(app: Flask) -> None:
    def wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.errorhandler(OSError)
    def disk_full(exc: OSError):
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise exc  # any other OSError is a server error (the 500 handler below)
        db.session.rollback()
        log.error("storage is full: %s", exc)
        message = "The portal's storage is full; nothing was stored. Try again later."
        if wants_json():
            response = jsonify(error="storage_full", message=message)
        else:
            response = app.make_response(render_template("errors/error.html", code=507, title="Storage full",
                                                         message=message))
        response.status_code = 507
        response.headers["Retry-After"] = "300"
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        if wants_json():
            return jsonify(error="csrf", message=exc.description), 400
        return render_template("errors/error.html", code=400, title="Form expired",
                               message="The form was missing its security token or it expired. "
                                       "Go back, reload the page and submit again."), 400

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        # Pages that let a service rule escape get the same look as any other HTTP error.
        if wants_json():
            return jsonify(error=exc.code, message=exc.message), exc.status
        return render_template("errors/error.html", code=exc.status, title="Not found" if exc.status == 404
                               else "Request refused", message=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if wants_json():
            code = (exc.name or "error").lower().replace(" ", "_")
            response = jsonify(error=code, message=exc.description)
            response.status_code = exc.code
            for key, value in (exc.get_response().headers.items() if exc.code == 429 else []):
                if key.lower().startswith(("retry-after", "x-ratelimit")):
                    response.headers[key] = value
            return response
        return render_template("errors/error.html", code=exc.code, title=exc.name,
                               message=exc.description), exc.code

    @app.errorhandler(500)
    def server_error(exc):
        db.session.rollback()
        if wants_json():
            return jsonify(error="server_error", message="Something broke on our side; it was logged."), 500
        return render_template("errors/error.html", code=500, title="Server error",
                               message="Something broke on our side. It was logged; please try again."), 500
