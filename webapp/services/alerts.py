"""Alerts that wake the operator: a worker offline, in error or suspended, its recovery, and a daily digest,
by e-mail and by signed webhook.

The rule that makes one outage one alert: an outage is a `WorkerIncident` row, and at most one per worker
and kind is open (a partial unique index), so however often and from however many processes detection
runs, it opens the incident once. Each message is an `AlertDelivery` whose unique key names the incident
and the event ("incident:7:opened:email"), so it exists once too; it is then sent, and retried with
back-off, until it succeeds or gives up. Detection and sending are periodic jobs (webapp/tasks.py), never
work done inside a page request. A webhook body is signed with the account's secret (HMAC-SHA256 over
"<timestamp>.<body>"), and webhook URLs must point at the public internet (no loopback, private or
link-local address) unless the operator's ALERT_WEBHOOK_ALLOW_PRIVATE says otherwise: the portal must
not become a way to reach its own network.
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import smtplib
import socket
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import requests
from flask import current_app
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError

from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import (AlertChannel, AlertDelivery, AlertKind, AlertSettings, DeliveryState, User, Worker,
                      WorkerDailyStat, WorkerIncident, WorkerStatus)
from ..money import fmt
from ..security import seal, unseal
from . import ServiceError, is_single_line

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pictor-Signature"  # "sha256=<hex of HMAC-SHA256(secret, '<timestamp>.<body>')>"
TIMESTAMP_HEADER = "X-Pictor-Timestamp"  # unix seconds; a receiver refuses old ones (replays)
EVENT_HEADER = "X-Pictor-Event"
DELIVERY_HEADER = "X-Pictor-Delivery"
# Seconds to wait after each failed attempt; after the last one the delivery has failed for good.
RETRY_DELAYS = (30, 120, 600, 1800, 7200)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
SEND_LEASE_SECONDS = 300  # a delivery being sent is out of others' reach this long (a crash frees it)
SEND_BATCH = 50
WEBHOOK_TIMEOUT_SECONDS = 5
URL_MAX = 500
_SECRET_PURPOSE = "alert_webhook_secret"

# What status opens which incident, and the alert setting that asks for it.
INCIDENT_OF_STATUS = {WorkerStatus.OFFLINE.value: AlertKind.OFFLINE, WorkerStatus.ERROR.value: AlertKind.ERROR,
                      WorkerStatus.SUSPENDED.value: AlertKind.SUSPENDED}
SETTING_OF_KIND = {AlertKind.OFFLINE: "on_offline", AlertKind.ERROR: "on_error", AlertKind.SUSPENDED: "on_suspended"}
HEALTHY = {WorkerStatus.ONLINE.value, WorkerStatus.BUSY.value, WorkerStatus.PAUSED.value}


# --- settings -------------------------------------------------------------------------------------

def settings_of(user_id: int) -> AlertSettings:
    """The account's settings (a fresh, unsaved row of defaults when it has none)."""
    row = db.session.get(AlertSettings, user_id)
    return row or AlertSettings(user_id=user_id, on_offline=False, on_error=False, on_suspended=False,
                                daily_digest=False, email_enabled=False)


def _allow_private() -> bool:
    return bool(current_app.config.get("ALERT_WEBHOOK_ALLOW_PRIVATE"))


def _refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_webhook_url(url, resolve: bool = True) -> str | None:
    """An http(s) URL whose host resolves only to public addresses (unless the flag allows private ones),
    or None for "no webhook"; a ServiceError that says what is wrong otherwise."""
    if url is None or (isinstance(url, str) and not url.strip()):
        return None
    if not isinstance(url, str) or len(url.strip()) > URL_MAX or not is_single_line(url):
        raise ServiceError("invalid_webhook", f"A webhook URL is one line of at most {URL_MAX} characters.")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError("invalid_webhook", "Use an http:// or https:// URL, e.g. https://hooks.example.com/pictor.")
    if parts.username or parts.password:
        raise ServiceError("invalid_webhook", "Put no user name or password in the URL: the signature header "
                                              "proves the call is ours.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ServiceError("invalid_webhook", "The URL's port is not a number from 1 to 65535.") from None
    if resolve and not _allow_private():
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
        except (socket.gaierror, UnicodeError):
            raise ServiceError("invalid_webhook", f"The host {parts.hostname!r} cannot be found.") from None
        if not addresses or any(_refused(a) for a in addresses):
            raise ServiceError("webhook_not_public", "This URL points at a loopback, private or otherwise "
                                                     "non-public address: the portal only calls public hosts.")
    return url


def update_settings(user: User, on_offline: bool, on_error: bool, on_suspended: bool, daily_digest: bool,
                    email_enabled: bool, email_to, webhook_url) -> str | None:
    """Save the account's choices; returns a new webhook secret (shown once) when one was made."""
    from . import accounts
    email_to = (email_to or "").strip()
    email_to = accounts.normalize_email(email_to) if email_to else None
    webhook_url = check_webhook_url(webhook_url)
    begin_write_transaction(db.session)
    row = db.session.get(AlertSettings, user.id)
    if row is None:
        row = AlertSettings(user_id=user.id)
        db.session.add(row)
    row.on_offline, row.on_error, row.on_suspended = bool(on_offline), bool(on_error), bool(on_suspended)
    row.daily_digest, row.email_enabled = bool(daily_digest), bool(email_enabled)
    row.email_to, row.webhook_url = email_to, webhook_url
    secret = None
    if webhook_url and not row.webhook_secret_sealed:
        secret = _new_secret(row)
    db.session.commit()
    return secret


def regenerate_secret(user: User) -> str:
    """A new webhook signing secret (the old one stops verifying at once); shown once."""
    begin_write_transaction(db.session)
    row = db.session.get(AlertSettings, user.id)
    if row is None:
        row = AlertSettings(user_id=user.id, on_offline=False, on_error=False, on_suspended=False,
                            daily_digest=False, email_enabled=False)
        db.session.add(row)
    secret = _new_secret(row)
    db.session.commit()
    return secret


def _new_secret(row: AlertSettings) -> str:
    secret = "whsec_" + secrets.token_urlsafe(32)
    # Sealed, not hashed: the portal must sign with it; a database dump alone does not reveal it.
    row.webhook_secret_sealed = seal(secret, current_app.secret_key, _SECRET_PURPOSE)
    row.webhook_secret_prefix = secret[:12]
    return secret


def _secret(row: AlertSettings) -> str | None:
    if not row.webhook_secret_sealed:
        return None
    return unseal(row.webhook_secret_sealed, current_app.secret_key, _SECRET_PURPOSE, None)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value; receivers compute the same and compare in constant time."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def deliveries(user_id: int, limit: int = 20) -> list[AlertDelivery]:
    """The account's delivery log, newest first."""
    return list(db.session.execute(db.select(AlertDelivery).where(AlertDelivery.user_id == user_id)
                                   .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc())
                                   .limit(limit)).scalars())


# --- detection (periodic) ---------------------------------------------------------------------------

def _targets(row: AlertSettings, email: str) -> list[tuple[AlertChannel, str]]:
    targets = []
    if row.email_enabled:
        targets.append((AlertChannel.EMAIL, row.email_to or email))
    if row.webhook_url:
        targets.append((AlertChannel.WEBHOOK, row.webhook_url))
    return targets


def _worker_json(worker: Worker, status: str) -> dict:
    return {"id": worker.id, "name": worker.name, "hostname": worker.hostname, "status": status,
            "tags": worker.tags, "last_heartbeat_at": worker.last_heartbeat_at.isoformat()
            if worker.last_heartbeat_at else None}


def _queue(user_id: int, targets, kind: AlertKind, key: str, payload: dict, now: datetime,
           incident_id: int | None = None) -> int:
    """One delivery per channel, each at most once (its unique key); returns how many were new."""
    queued = 0
    for channel, target in targets:
        delivery = AlertDelivery(user_id=user_id, incident_id=incident_id, channel=channel, kind=kind,
                                 key=f"{key}:{channel.value}", payload=payload, target=target[:URL_MAX],
                                 state=DeliveryState.PENDING, attempts=0, next_attempt_at=now, created_at=now)
        try:
            with db.session.begin_nested():
                db.session.add(delivery)
        except IntegrityError:
            continue  # queued already (another run got here first)
        queued += 1
    return queued


def detect(now: datetime | None = None) -> str:
    """Open an incident for each worker newly offline, in error or suspended (where its account asked),
    queue its alerts; close incidents whose worker came back and queue the recovery notice."""
    from . import workers as worker_service
    now = now or utcnow()
    begin_write_transaction(db.session)
    settings = {row.user_id: row for row in db.session.execute(db.select(AlertSettings).where(
        db.or_(AlertSettings.on_offline, AlertSettings.on_error, AlertSettings.on_suspended))).scalars()}
    open_incidents = list(db.session.execute(db.select(WorkerIncident).where(WorkerIncident.ended_at.is_(None))).scalars())
    owners = set(settings) | {i.owner_id for i in open_incidents}
    if not owners:
        db.session.commit()
        return "no accounts with alerts"
    emails = dict(db.session.execute(db.select(User.id, User.email).where(User.id.in_(owners))).all())
    status = worker_service.status_expr(now).label("status")
    rows = db.session.execute(db.select(Worker, status).where(
        Worker.owner_id.in_(owners), Worker.deleted_at.is_(None), Worker.demo.is_(False),
        Worker.last_heartbeat_at.is_not(None))).all()
    by_worker = {worker.id: (worker, value) for worker, value in rows}
    opened = closed = 0

    for incident in open_incidents:
        worker, value = by_worker.get(incident.worker_id, (None, None))
        if worker is not None and INCIDENT_OF_STATUS.get(value) == incident.kind:
            continue  # still going on: nothing new to say
        incident.ended_at = now
        closed += 1
        row = settings.get(incident.owner_id)
        # A recovery notice when the worker is working again (not when it went from error to offline:
        # that opens its own incident, nor when it was deleted).
        if worker is not None and value in HEALTHY and row is not None:
            payload = {"event": "worker.recovered", "kind": incident.kind.value, "worker": _worker_json(worker, value),
                       "incident": _incident_json(incident), "at": now.isoformat()}
            _queue(incident.owner_id, _targets(row, emails[incident.owner_id]), AlertKind.RECOVERED,
                   f"incident:{incident.id}:recovered", payload, now, incident.id)
    db.session.flush()

    still_open = {(i.worker_id, i.kind) for i in open_incidents if i.ended_at is None}
    for worker, value in rows:
        kind = INCIDENT_OF_STATUS.get(value)
        row = settings.get(worker.owner_id)
        if kind is None or row is None or not getattr(row, SETTING_OF_KIND[kind]) or (worker.id, kind) in still_open:
            continue
        message = worker.suspended_reason if kind == AlertKind.SUSPENDED else (
            worker.state_message if kind == AlertKind.ERROR else None)
        incident = WorkerIncident(worker_id=worker.id, owner_id=worker.owner_id, kind=kind, started_at=now,
                                  message=(message or "")[:500] or None)
        try:
            with db.session.begin_nested():
                db.session.add(incident)
        except IntegrityError:
            continue  # another run opened it: it sends the alert
        opened += 1
        payload = {"event": f"worker.{kind.value}", "kind": kind.value, "worker": _worker_json(worker, value),
                   "incident": _incident_json(incident), "at": now.isoformat()}
        _queue(worker.owner_id, _targets(row, emails[worker.owner_id]), kind, f"incident:{incident.id}:opened",
               payload, now, incident.id)
    db.session.commit()
    return f"opened {opened}, closed {closed}"


def _incident_json(incident: WorkerIncident) -> dict:
    return {"id": incident.id, "kind": incident.kind.value, "started_at": incident.started_at.isoformat(),
            "ended_at": incident.ended_at.isoformat() if incident.ended_at else None, "message": incident.message}


# --- the daily digest (periodic) ------------------------------------------------------------------------

def queue_digests(now: datetime | None = None) -> str:
    """For each account that asked, one digest of the previous UTC day (its key makes it once a day)."""
    from . import workers as worker_service
    now = now or utcnow()
    day = (now - timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, tzinfo=now.tzinfo)
    begin_write_transaction(db.session)
    rows = list(db.session.execute(db.select(AlertSettings, User.email).join(User, User.id == AlertSettings.user_id)
                                   .where(AlertSettings.daily_digest)).all())
    queued = 0
    for row, email in rows:
        targets = _targets(row, email)
        key = f"digest:{row.user_id}:{day.isoformat()}"
        if not targets or db.session.execute(db.select(AlertDelivery.id).where(
                AlertDelivery.key.like(f"{key}:%"))).first():
            continue
        counts = worker_service.status_counts(row.user_id, now)
        totals = db.session.execute(db.select(
            func.coalesce(func.sum(WorkerDailyStat.task_earnings_micros + WorkerDailyStat.mining_earnings_micros), 0),
            func.coalesce(func.sum(WorkerDailyStat.tasks_completed), 0),
            func.coalesce(func.sum(WorkerDailyStat.tasks_failed), 0),
        ).join(Worker, Worker.id == WorkerDailyStat.worker_id).where(
            Worker.owner_id == row.user_id, WorkerDailyStat.day == day.isoformat())).one()
        incidents = db.session.execute(db.select(WorkerIncident.kind, func.count()).where(
            WorkerIncident.owner_id == row.user_id, WorkerIncident.started_at >= start,
            WorkerIncident.started_at < start + timedelta(days=1)).group_by(WorkerIncident.kind)).all()
        payload = {"event": "digest", "day": day.isoformat(), "workers": {k: v for k, v in counts.items() if v},
                   "earnings": fmt(int(totals[0])), "tasks_completed": int(totals[1]), "tasks_failed": int(totals[2]),
                   "incidents": {kind.value: n for kind, n in incidents}, "at": now.isoformat()}
        queued += _queue(row.user_id, targets, AlertKind.DIGEST, key, payload, now)
    db.session.commit()
    return f"queued {queued}"


# --- sending (periodic) ---------------------------------------------------------------------------------

def deliver_due(now: datetime | None = None) -> str:
    """Send the deliveries that are due; a failure is retried after RETRY_DELAYS, then given up."""
    now = now or utcnow()
    due = list(db.session.execute(db.select(AlertDelivery.id, AlertDelivery.next_attempt_at).where(
        AlertDelivery.state == DeliveryState.PENDING, AlertDelivery.next_attempt_at <= now)
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id).limit(SEND_BATCH)).all())
    db.session.commit()
    sent = failed = 0
    for delivery_id, due_at in due:
        # Take it first (a conditional UPDATE): a slow run and the next one never both send it.
        begin_write_transaction(db.session)
        taken = db.session.execute(update(AlertDelivery).where(
            AlertDelivery.id == delivery_id, AlertDelivery.state == DeliveryState.PENDING,
            AlertDelivery.next_attempt_at == due_at).values(next_attempt_at=now + timedelta(seconds=SEND_LEASE_SECONDS))
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if taken != 1:
            continue
        delivery = db.session.get(AlertDelivery, delivery_id)
        ok, status, error = _send(delivery, now)
        begin_write_transaction(db.session)
        delivery = db.session.get(AlertDelivery, delivery_id)
        delivery.attempts = (delivery.attempts or 0) + 1
        delivery.response_status = status
        if ok:
            delivery.state, delivery.sent_at, delivery.next_attempt_at, delivery.last_error = \
                DeliveryState.SENT, now, None, None
            sent += 1
        else:
            delivery.last_error = (error or "failed")[:500]
            if delivery.attempts >= MAX_ATTEMPTS or status == -1:
                delivery.state, delivery.next_attempt_at = DeliveryState.FAILED, None
            else:
                delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
            failed += 1
        db.session.commit()
    return f"sent {sent}, failed {failed}"


def _send(delivery: AlertDelivery, now: datetime) -> tuple[bool, int | None, str | None]:
    """(ok, HTTP status or None, error). Status -1: will never work (no point retrying)."""
    try:
        if delivery.channel == AlertChannel.EMAIL:
            return _send_email(delivery)
        return _send_webhook(delivery, now)
    except Exception as exc:  # one bad delivery must not stop the others
        log.exception("alert delivery %s failed", delivery.id)
        return False, None, f"{type(exc).__name__}: {exc}"


def _send_webhook(delivery: AlertDelivery, now: datetime) -> tuple[bool, int | None, str | None]:
    row = db.session.get(AlertSettings, delivery.user_id)
    secret = _secret(row) if row is not None else None
    if secret is None:
        return False, -1, "no webhook secret: regenerate it on the Account page"
    try:
        url = check_webhook_url(delivery.target)  # again: what a name resolves to can change
    except ServiceError as exc:
        return False, -1, exc.message
    body = json.dumps({**delivery.payload, "delivery_id": delivery.id}, sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "Pictor-Alerts/1",
               SIGNATURE_HEADER: sign(secret, timestamp, body), TIMESTAMP_HEADER: str(timestamp),
               EVENT_HEADER: delivery.payload.get("event", delivery.kind.value), DELIVERY_HEADER: str(delivery.id)}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS,
                                 allow_redirects=False)  # a redirect could lead anywhere, a private host too
    except requests.RequestException as exc:
        return False, None, f"could not reach the webhook: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return True, response.status_code, None
    return False, response.status_code, f"the webhook answered HTTP {response.status_code}"


def _subject_and_text(delivery: AlertDelivery) -> tuple[str, str]:
    payload = delivery.payload
    base = (current_app.config.get("SERVER_URL") or "").rstrip("/")
    if delivery.kind == AlertKind.DIGEST:
        workers = ", ".join(f"{n} {status}" for status, n in payload.get("workers", {}).items()) or "none"
        incidents = ", ".join(f"{n} {kind}" for kind, n in payload.get("incidents", {}).items()) or "none"
        text = (f"Your Pictor Worker fleet on {payload['day']} (UTC):\n\n"
                f"Workers now: {workers}\nEarned: {payload['earnings']} USD\n"
                f"Tasks completed: {payload['tasks_completed']}, failed: {payload['tasks_failed']}\n"
                f"Incidents: {incidents}\n")
        if base:
            text += f"\n{base}/workers\n"
        return f"Pictor Worker: daily digest for {payload['day']}", text
    worker = payload.get("worker", {})
    name = worker.get("name") or f"#{worker.get('id')}"
    what = {"worker.offline": "is offline", "worker.error": "reports an error", "worker.suspended": "was suspended",
            "worker.recovered": "is back"}.get(payload.get("event"), "changed")
    text = f"Worker {name} (#{worker.get('id')}{', ' + worker['hostname'] if worker.get('hostname') else ''}) {what}.\n"
    incident = payload.get("incident") or {}
    if incident.get("message"):
        text += f"\n{incident['message']}\n"
    if delivery.kind == AlertKind.RECOVERED:
        text += f"\nIt was {payload.get('kind')} from {incident.get('started_at')} to {incident.get('ended_at')}.\n"
    elif delivery.kind == AlertKind.OFFLINE:
        text += f"\nLast heartbeat: {worker.get('last_heartbeat_at')}. You get one more message when it is back.\n"
    if base:
        text += f"\n{base}/workers/{worker.get('id')}\n"
    return f"Pictor Worker: {name} {what}", text


def _send_email(delivery: AlertDelivery) -> tuple[bool, int | None, str | None]:
    config = current_app.config
    host = config.get("SMTP_HOST")
    if not host:
        return False, -1, "the portal has no SMTP server configured (PICTOR_SMTP_HOST)"
    subject, text = _subject_and_text(delivery)
    message = EmailMessage()
    message["From"] = config.get("ALERT_FROM") or "Pictor Worker <alerts@localhost>"
    message["To"] = delivery.target
    message["Subject"] = subject
    message["X-Pictor-Delivery"] = str(delivery.id)
    message.set_content(text)
    port = int(config.get("SMTP_PORT") or 25)
    try:
        smtp_class = smtplib.SMTP_SSL if config.get("SMTP_SSL") else smtplib.SMTP
        with smtp_class(host, port, timeout=10) as smtp:
            if config.get("SMTP_STARTTLS"):
                smtp.starttls()
            if config.get("SMTP_USER"):
                smtp.login(config["SMTP_USER"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        return False, None, f"SMTP: {type(exc).__name__}: {exc}"[:500]
    return True, None, None
