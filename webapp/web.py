"""What pages and the JSON API share about HTTP: the portal's public URL, JSON errors, file downloads.

Services return data; the responses built from it live here (and in the views and API modules), so a
service never needs a request. Hostile input stops here too: every JSON body goes through load_json,
and every request through refuse_unstorable_text, so a 4xx answers what would otherwise be a 500.
"""

import json
import mimetypes
import re

from flask import Response, abort, current_app, jsonify, request, send_file

from .models import AppRelease, Job
from .services import ServiceError, outputs, releases, storage

JSON_MAX_DEPTH = 32  # the deepest legitimate body (a complete's output list) is 3
# A JSON string (the same extent as the JSON grammar's) or a bracket: what the depth count looks at.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# Text no database column can hold: NUL (PostgreSQL refuses it) and lone surrogates (not UTF-8).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class BadJSON(ServiceError):
    def __init__(self, message: str):
        super().__init__("invalid_json", message)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_json(raw: bytes | str, max_depth: int = JSON_MAX_DEPTH):
    """Parse a JSON document from a client, or BadJSON (a 400) saying what is wrong.

    Nesting is counted before parsing (a 2 KB body 1,000 deep costs a regex scan, not a recursion
    error), and strings holding NUL or lone surrogates, or keys holding control characters, are
    refused: no database column could store them.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadJSON("The body is not UTF-8 text.") from None
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise BadJSON(f"The JSON is nested more than {max_depth} levels deep.")
        elif token in "]}":
            depth -= 1
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadJSON(f"The body is not valid JSON: {exc}.") from None
    _check_text(data)
    return data


def _check_text(value) -> None:
    if isinstance(value, str):
        if UNSTORABLE.search(value):
            raise BadJSON("Text may not contain NUL characters or lone UTF-16 surrogates.")
    elif isinstance(value, dict):
        for key, item in value.items():
            if _CONTROL.search(key) or UNSTORABLE.search(key):
                raise BadJSON("Object keys may not contain control characters.")
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


def refuse_unstorable_text() -> None:
    """Before every request: a NUL in the path, the query or a form field is a 400 (PostgreSQL would
    raise on it; percent-decoding turns invalid UTF-8, and so any surrogate, into U+FFFD already)."""
    values = [request.path, *request.args.values()]
    # Multipart bodies are uploads, read by their views after auth; their text parts are checked there.
    if request.mimetype == "application/x-www-form-urlencoded":
        values.extend(request.form.values())
    if any("\x00" in value for value in values):
        raise ServiceError("invalid_text", "Text may not contain NUL characters.")

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


def installer_download(release: AppRelease, stamp: bytes = b"") -> Response:
    """The Windows installer, with its SHA-256 as ETag and header (NotFound when its file was lost).

    With a stamp (releases.download_stamp: this portal's address) the file is sent with the stamp
    appended, so the app's first run knows its portal; the hash is then the stamped file's, and the
    response is private because another host name of the same portal stamps other bytes."""
    if stamp:
        sha256 = releases.stamped_sha256(release, stamp)
        response = Response(releases.stream_stamped(release, stamp), mimetype=releases.EXE_MIMETYPE,
                            direct_passthrough=True)
        response.headers["Content-Length"] = str(release.size + len(stamp))
        response.headers["Content-Disposition"] = f'attachment; filename="{release.filename}"'
        response.headers["X-Checksum-SHA256"] = sha256
        response.headers["Cache-Control"] = "private, max-age=3600"
        response.set_etag(sha256)
        return response.make_conditional(request)
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


def chart_response(series, name: str) -> Response:
    """A chart as SVG for `?size=wide|compact`: private (this user's data), revalidated each time and
    answered 304 while the figures are unchanged; its own strict CSP (an SVG may carry script)."""
    from . import charts
    size = request.args.get("size", "wide")
    if size not in charts.SIZES:
        abort(400, "Unknown chart size: use wide or compact.")
    svg, etag = charts.chart_svg(series, name, size)
    response = Response(svg, mimetype="image/svg+xml")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)
