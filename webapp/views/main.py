"""The home redirect and the Worker App download page."""

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    return redirect(url_for("workers.index" if current_user.is_authenticated else "auth.login"))


@bp.get("/download")
def download():
    return render_template("main/download.html")
