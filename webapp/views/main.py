"""The home redirect and the Worker App download page (the Windows installer, the Linux headless route)."""

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user

from ..services import releases
from ..web import installer_download, server_url

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    return redirect(url_for("workers.index" if current_user.is_authenticated else "auth.login"))


@bp.get("/download")
def download():
    release = releases.latest_release()
    return render_template("main/download.html", release=release, server_url=server_url(),
                           download=releases.download_facts(release, server_url()) if release else None,
                           bitness=releases.windows_bitness(request.headers.get("User-Agent")))


@bp.get("/download/windows")
def download_windows():
    """The latest published Windows installer (public: the app is useless without a worker token)."""
    release = releases.latest_release()
    if release is None:
        abort(404, "No Windows installer has been published on this portal yet: see the Download page.")
    return installer_download(release, releases.download_stamp(server_url()))
