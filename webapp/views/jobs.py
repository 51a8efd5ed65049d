"""The creators' pages: job list, new render/upscale job, job detail."""

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


@bp.get("")
@login_required
def index():
    return render_template("jobs/index.html")
