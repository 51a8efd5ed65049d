"""Worker Management, New Worker and Worker Details pages."""

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("workers", __name__, url_prefix="/workers")


@bp.get("")
@login_required
def index():
    return render_template("workers/index.html")
