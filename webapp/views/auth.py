"""Sign up, log in, log out."""

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..extensions import limiter, login_manager
from ..forms import LoginForm, SignupForm
from ..services import ServiceError, accounts

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id: str):
    return accounts.user_for_session(session_id)


def _safe_next(default: str) -> str:
    target = request.args.get("next", "")
    parts = urlsplit(target)
    # Only same-site paths: no scheme, no host, no protocol-relative '//evil'.
    if target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc:
        return target
    return default


def _limit(name):
    from flask import current_app
    return lambda: current_app.config[name]


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_limit("SIGNUP_RATE_LIMIT"), methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("workers.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.sign_up(form.email.data, form.password.data)
        except ServiceError as exc:
            field = form.password if exc.code == "weak_password" else form.email
            field.errors = [*field.errors, exc.message]
        else:
            login_user(user)
            flash("Welcome to Pictor Worker. Create your first worker to start earning.", "success")
            return redirect(url_for("workers.index"))
    return render_template("auth/signup.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_limit("LOGIN_RATE_LIMIT"), methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("workers.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(url_for("workers.index")))
        form.password.errors = ["Wrong email or password."]
        status = 400
    elif form.errors:
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    """POST only (the form in base.html carries the CSRF token): a link or an image can't log anyone out."""
    if current_user.is_authenticated:
        accounts.end_sessions(current_user)
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
