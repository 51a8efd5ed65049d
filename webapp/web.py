"""What pages and the JSON API share about HTTP: the portal's public URL, JSON errors, file downloads.

Services return data; the responses built from it live here (and in the views and API modules), so a
service never needs a request.
"""

import mimetypes

from flask import Response, current_app, jsonify, request, send_file

from .models import AppRelease, Job
from .services import outputs, releases, storage

def server_url() -> str:
    """The URL workers are told to call: the configured SERVER_URL, else how this request reached us."""
    return (current_app.config.get("SERVER_URL") or request.host_url).rstrip("/")


def json_error(code: str, message: str, status: int) -> Response:
    """The API's error shape: {"error": short_code, "message": what to do}."""
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


def stored_file_download(sha256: str, name: str, mimetype: str | None = None, max_age: int = 0) -> Response:
    """A content-addressed blob as a download: its SHA-256 is the ETag; Range and If-None-Match work."""
    mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return send_file(storage.path_for(sha256), mimetype=mimetype, as_attachment=True, download_name=name,
                     etag=sha256, max_age=max_age, conditional=True)


def installer_download(release: AppRelease) -> Response:
    """The Windows installer, with its SHA-256 as ETag and header (NotFound when its file was lost)."""
    path = releases.installer_path(release)
    response = send_file(path, mimetype=releases.EXE_MIMETYPE, as_attachment=True, download_name=release.filename,
                         etag=release.sha256, conditional=True, max_age=3600)
    response.headers["X-Checksum-SHA256"] = release.sha256
    return response


def job_outputs_zip(job: Job) -> Response:
    """The job's outputs.zip, streamed piece by piece and never cached by anyone (410 once purged)."""
    return Response(outputs.stream_outputs_zip(job), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="job-{job.id}-outputs.zip"',
                             "Cache-Control": "private, no-store"})
