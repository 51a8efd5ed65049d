"""The Worker App's one HTTP client for the portal's worker API: timeouts, retries, clear errors."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .untrusted import same_origin

API_PREFIX = "/api/v1"
CHUNK = 1024 * 1024
# 507: the portal's storage is full. Not this worker's fault, and the same upload will go through once
# the operator frees space: keep the result and try again later (the portal says when, in Retry-After).
TRANSIENT_STATUSES = (429, 500, 502, 503, 504, 507)


class PortalUnreachable(Exception):
    """No answer from the portal (network down, server stopped, timeout): try again later."""


class InputTooLarge(Exception):
    """A download went past the size the portal announced for it: stopped there, nothing kept."""

    def __init__(self, url: str, limit: int):
        super().__init__(f"the portal sent more than the announced {limit} bytes; the download was stopped")
        self.url, self.limit = url, limit


class PortalError(Exception):
    """The portal answered with an error: status, its short code and the message for people."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """A server-side hiccup (overload, restart): the same request may succeed later."""
        return self.status in TRANSIENT_STATUSES


def retry_later(exc: BaseException) -> bool:
    """Whether exc means "the portal cannot take this now" rather than "the portal said no"."""
    return isinstance(exc, PortalUnreachable) or (isinstance(exc, PortalError) and exc.transient)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare for an API, fall back to our own back-off
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class PortalClient:
    """Calls the worker API of one portal as one worker (or anonymously, for pairing)."""

    def __init__(self, server_url: str, token: str | None = None, *,
                 timeout: tuple[float, float] = (5.0, 30.0), attempts: int = 3, backoff: float = 0.5):
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"pictor-worker/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        # Connection failures happen before a request is sent, so retrying them is safe for any
        # method; retries after the request went out are ours to decide (see _request).
        adapter = HTTPAdapter(max_retries=Retry(total=None, connect=1, read=0, redirect=0, status=0,
                                                other=0, backoff_factor=0.2, raise_on_status=False))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    # --- plumbing ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.server_url}{API_PREFIX}{path}"

    def _same_origin(self, url: str) -> bool:
        return same_origin(url, self.server_url)

    def _request(self, method: str, url: str, *, idempotent: bool = False,
                 body: Callable[[], Any] | None = None, ok: tuple[int, ...] = (200, 201, 204),
                 **kwargs: Any) -> requests.Response:
        """Send once, or up to `attempts` times for idempotent calls on a timeout or a transient status.

        body, when given, makes a fresh request body per attempt (a file re-opened from the start)."""
        if not url.startswith(("http://", "https://")):
            url = self.url(url)
        if not self._same_origin(url):
            # An input hosted elsewhere (a signed URL) must never see our token.
            kwargs.setdefault("headers", {})["Authorization"] = None
        kwargs.setdefault("timeout", self.timeout)
        tries = self.attempts if idempotent else 1
        for attempt in range(1, tries + 1):
            opened = body() if body else None
            try:
                if opened is not None:
                    kwargs["data"] = opened
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == tries:
                    raise PortalUnreachable(f"cannot reach {self.server_url}: {_short(exc)}") from None
                time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            except requests.RequestException as exc:
                raise PortalUnreachable(f"request to {self.server_url} failed: {_short(exc)}") from None
            finally:
                if opened is not None and hasattr(opened, "close"):
                    opened.close()
            if response.status_code in ok:
                return response
            error = _error_from(response)
            if error.transient and attempt < tries:
                response.close()
                time.sleep(error.retry_after if error.retry_after is not None and error.retry_after < 10
                           else self.backoff * 2 ** (attempt - 1))
                continue
            raise error
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _json(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> dict[str, Any]:
        if payload is not None:
            kwargs["json"] = payload
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return {}
        data = _decode(response)
        return data if isinstance(data, dict) else {"items": data}

    # --- pairing and presence ---------------------------------------------------------------

    def pair(self, code: str) -> dict[str, Any]:
        """Trade a pairing code for this worker's config {server_url, worker_id, token}."""
        return self._json("POST", "/pair", {"code": code})

    def hello(self, report: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/worker/hello", report, idempotent=True)

    def heartbeat(self, report: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/worker/heartbeat", report, idempotent=True)

    def settings(self) -> dict[str, Any]:
        return self._json("GET", "/worker/settings", idempotent=True)

    def update_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        return self._json("PUT", "/worker/settings", changes, idempotent=True)

    # --- tasks -------------------------------------------------------------------------------

    def claim(self, slot: str | None = None) -> tuple[dict[str, Any] | None, float | None]:
        """(task, None), or (None, seconds the portal asks us to wait) when there is no work (or `slot`,
        the device slot it is for, is busy there).

        Never retried: a claim whose answer was lost is recovered by the portal's lease expiry."""
        response = self._request("POST", "/worker/tasks/claim", json={"slot": slot} if slot else {})
        if response.status_code == 204 or not response.content:
            return None, _retry_after(response)
        task = _decode(response)
        if not isinstance(task, dict) or "id" not in task:
            raise PortalError(response.status_code, "bad_response", "the claim answer has no task id")
        return task, None

    def input_url(self, task_id: int, name: str) -> str:
        return self.url(f"/worker/tasks/{int(task_id)}/inputs/{quote(name, safe='')}")

    def download(self, url: str, dest: Path, on_bytes: Callable[[int], None] | None = None,
                 max_bytes: int | None = None) -> int:
        """Stream url into dest; a dropped connection resumes with a Range request. Returns the size.

        Only from the portal itself, never following a redirect elsewhere; past max_bytes (the size
        the portal announced) the download stops with InputTooLarge."""
        if not self._same_origin(url):
            raise PortalError(0, "off_origin", f"refused to download from outside {self.server_url}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb"):
            pass
        resumes = 0
        while True:
            have = dest.stat().st_size
            headers = {"Range": f"bytes={have}-"} if have else {}
            response = self._request("GET", url, idempotent=True, stream=True, headers=headers,
                                     ok=(200, 206), timeout=(self.timeout[0], 60.0), allow_redirects=False)
            mode = "ab" if have and response.status_code == 206 else "wb"
            written = have if mode == "ab" else 0
            try:
                with response, open(dest, mode) as out:
                    announced = response.headers.get("Content-Length", "")
                    if max_bytes is not None and announced.isdigit() and written + int(announced) > max_bytes:
                        raise InputTooLarge(url, max_bytes)
                    # Small reads: what arrived before a break is kept, and the retry resumes after it.
                    for chunk in response.iter_content(64 * 1024):
                        written += len(chunk)
                        if max_bytes is not None and written > max_bytes:
                            raise InputTooLarge(url, max_bytes)
                        out.write(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
                return dest.stat().st_size
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                # ChunkedEncodingError: the body ended before its Content-Length (connection dropped)
                resumes += 1
                if resumes >= self.attempts:
                    raise PortalUnreachable(f"download from {self.server_url} broke off: {_short(exc)}") from None
                time.sleep(self.backoff)

    def upload_output(self, task_id: int, name: str, path: Path, sha256: str | None = None) -> dict[str, Any]:
        """PUT one output file, streamed, with its SHA-256 for the portal to check."""
        path = Path(path)
        sha256 = sha256 or sha256_file(path)
        headers = {"X-Content-SHA256": sha256, "Content-Type": "application/octet-stream",
                   "Content-Length": str(path.stat().st_size)}
        response = self._request("PUT", f"/worker/tasks/{int(task_id)}/outputs/{quote(name, safe='')}",
                                 idempotent=True, body=lambda: open(path, "rb"), headers=headers,
                                 timeout=(self.timeout[0], 120.0))
        try:
            return response.json() if response.content else {}
        except ValueError:
            return {}

    def progress(self, task_id: int, fraction: float, eta_s: float | None, message: str) -> bool:
        """Report progress; False when the portal wants the task stopped (canceled, not ours any more)."""
        payload = {"progress": round(max(0.0, min(1.0, fraction)), 4),
                   "eta_s": None if eta_s is None else int(round(eta_s)), "message": message[:500]}
        try:
            data = self._json("POST", f"/worker/tasks/{int(task_id)}/progress", payload, idempotent=True)
        except PortalError as exc:
            if exc.status in (404, 409, 410):
                return False
            raise
        return bool(data.get("keep_running", True))

    def complete(self, task_id: int, outputs: list[dict[str, Any]], compute_seconds: float) -> dict[str, Any]:
        # Idempotent on the portal: a repeat after a lost answer credits nothing twice, because the reward
        # row is unique per task (webapp/services/ledger.py's docstring; docs/ARCHITECTURE.md).
        return self._json("POST", f"/worker/tasks/{int(task_id)}/complete",
                          {"outputs": outputs, "compute_seconds": round(compute_seconds, 3)}, idempotent=True)

    def fail(self, task_id: int, reason: str, log_tail: str = "", retryable: bool = True,
             kind: str | None = None) -> dict[str, Any]:
        payload = {"reason": reason[:500], "log_tail": log_tail[-4096:], "retryable": bool(retryable)}
        if kind:
            payload["kind"] = kind
        return self._json("POST", f"/worker/tasks/{int(task_id)}/fail", payload, idempotent=True)

    def hand_back(self, task_id: int, reason: str) -> dict[str, Any]:
        """Give an unfinished task back (clean shutdown): requeued, and no failure counts against us."""
        return self._json("POST", f"/worker/tasks/{int(task_id)}/hand-back", {"reason": reason[:500]},
                          idempotent=True)

    # --- benchmark, speed test, mining -------------------------------------------------------

    def benchmark(self, score: int, details: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/worker/benchmark", {"score": int(score), "details": details},
                          idempotent=True)

    def speedtest_download(self, size: int) -> Iterator[bytes]:
        response = self._request("GET", "/worker/speedtest/download", params={"bytes": int(size)},
                                 stream=True, timeout=(self.timeout[0], 60.0))
        with response:
            yield from response.iter_content(256 * 1024)

    def speedtest_upload(self, data: bytes) -> dict[str, Any]:
        return self._json("POST", "/worker/speedtest/upload", data=data,
                          headers={"Content-Type": "application/octet-stream"},
                          timeout=(self.timeout[0], 60.0))

    def speedtest_result(self, download_mbps: float, upload_mbps: float) -> dict[str, Any]:
        return self._json("POST", "/worker/speedtest/result",
                          {"download_mbps": round(download_mbps, 2), "upload_mbps": round(upload_mbps, 2)},
                          idempotent=True)

    def mining_report(self, report: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/worker/mining/report", report)


def _decode(response: requests.Response) -> Any:
    """The answer's JSON; a portal sending something else (or JSON nested past Python's recursion
    limit) is a bad answer, never a crash."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise PortalError(response.status_code, "bad_response",
                          "the portal sent something that is not JSON: check the server URL") from None


def _error_from(response: requests.Response) -> PortalError:
    code, message = f"http_{response.status_code}", response.reason or "error"
    try:
        data = response.json()
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        code = str(data.get("error") or code)[:64]
        message = str(data.get("message") or message)[:500]
    return PortalError(response.status_code, code, message, _retry_after(response))


def _short(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 nests the real reason at the end of a long repr: keep what a person can read.
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "getaddrinfo failed" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text[:200]


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


