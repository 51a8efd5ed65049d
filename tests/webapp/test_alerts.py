"""Alerts through a real SMTP server (aiosmtpd) and a real webhook receiver (an HTTP server in this test):
one e-mail and one webhook per outage, retries with back-off, the signature, a recovery notice, the
digest, and webhook URLs that would reach the portal's own network refused."""

import email
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import create_user
from tests.webapp.dispatch_factories import make_worker
from webapp.extensions import db
from webapp.models import AlertDelivery, DeliveryState, User, Worker, WorkerIncident
from webapp.services import ServiceError, alerts, presence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback that keeps what it receives."""
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
            return "250 OK"
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture
def receiver():
    """A real HTTP webhook receiver: records each call; `fail_next` calls answer 500."""
    calls, state = [], {"fail_next": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls.append({"headers": dict(self.headers), "body": body})
            failing = state["fail_next"] > 0
            state["fail_next"] -= 1
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class Receiver:
        url = f"http://127.0.0.1:{server.server_port}/hook"
    r = Receiver()
    r.calls, r.state = calls, state
    yield r
    server.shutdown()


def verified(call, secret: str) -> dict:
    """What a receiver does: recompute the signature over timestamp + body, compare in constant time."""
    expected = alerts.sign(secret, int(call["headers"][alerts.TIMESTAMP_HEADER]), call["body"])
    assert hmac.compare_digest(call["headers"][alerts.SIGNATURE_HEADER], expected)
    return json.loads(call["body"])


def test_an_offline_worker_sends_one_email_and_one_webhook_then_a_recovery_notice(app, clock, smtp_server, receiver):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, ALERT_WEBHOOK_ALLOW_PRIVATE=True,
                      SERVER_URL="https://portal.example.net")
    user_id = create_user(app)
    with app.app_context():
        worker_id, _ = make_worker(owner_id=user_id, name="rack-node-7")
        secret = alerts.update_settings(db.session.get(User, user_id), on_offline=True, on_error=True,
                                        on_suspended=True, daily_digest=False, email_enabled=True, email_to="",
                                        webhook_url=receiver.url)
        assert secret.startswith("whsec_")
        assert alerts.detect() == "opened 0, closed 0"  # online: nothing to say

        clock.advance(seconds=120)  # past the 90 s offline threshold
        receiver.state["fail_next"] = 1  # the receiver's first answer is an error: retried later
        for _ in range(3):  # detection runs again and again during one outage
            alerts.detect()
        assert db.session.execute(db.select(db.func.count()).select_from(WorkerIncident)).scalar_one() == 1
        assert alerts.deliver_due() == "sent 1, failed 1"
        assert alerts.deliver_due() == "sent 0, failed 0"  # the webhook waits for its back-off
        clock.advance(seconds=alerts.RETRY_DELAYS[0] + 1)
        alerts.detect()
        assert alerts.deliver_due() == "sent 1, failed 0"

        assert len(smtp_server.messages) == 1
        rcpt, message = smtp_server.messages[0]
        assert rcpt == ["ada@example.com"] and "rack-node-7 is offline" in message["Subject"]
        assert f"https://portal.example.net/workers/{worker_id}" in message.get_payload()
        assert len(receiver.calls) == 2  # one failed attempt, one retry of the same delivery
        first, second = (verified(c, secret) for c in receiver.calls)
        assert first == second and second["event"] == "worker.offline" and second["worker"]["id"] == worker_id
        webhook = db.session.execute(db.select(AlertDelivery).where(AlertDelivery.channel == "webhook")).scalar_one()
        assert webhook.attempts == 2 and webhook.state == DeliveryState.SENT and webhook.response_status == 204

        # It comes back: one recovery notice on each channel, once.
        presence.record_heartbeat(db.session.get(Worker, worker_id), "idle")
        assert alerts.detect() == "opened 0, closed 1"
        alerts.detect()
        assert alerts.deliver_due() == "sent 2, failed 0"
        assert len(smtp_server.messages) == 2 and "is back" in smtp_server.messages[1][1]["Subject"]
        recovered = verified(receiver.calls[2], secret)
        assert recovered["event"] == "worker.recovered" and recovered["kind"] == "offline"
        assert len(receiver.calls) == 3

        # A forged or stale-secret signature does not verify: regenerating replaces the secret.
        new_secret = alerts.regenerate_secret(db.session.get(User, user_id))
        assert new_secret != secret
        with pytest.raises(AssertionError):
            verified(receiver.calls[2], new_secret)


def test_a_webhook_that_keeps_failing_gives_up_after_the_last_retry(app, clock, receiver):
    app.config.update(ALERT_WEBHOOK_ALLOW_PRIVATE=True)
    user_id = create_user(app)
    with app.app_context():
        make_worker(owner_id=user_id)
        alerts.update_settings(db.session.get(User, user_id), True, False, False, False, False, "", receiver.url)
        receiver.state["fail_next"] = 100
        clock.advance(seconds=120)
        alerts.detect()
        for delay in (0,) + alerts.RETRY_DELAYS:
            clock.advance(seconds=delay + 1)
            alerts.deliver_due()
        delivery = db.session.execute(db.select(AlertDelivery)).scalar_one()
        assert delivery.state == DeliveryState.FAILED and delivery.attempts == alerts.MAX_ATTEMPTS
        assert len(receiver.calls) == alerts.MAX_ATTEMPTS and "HTTP 500" in delivery.last_error
        clock.advance(days=1)
        alerts.deliver_due()
        assert len(receiver.calls) == alerts.MAX_ATTEMPTS


PRIVATE_URLS = ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.5/hook", "http://192.168.1.1/",
                "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://0.0.0.0/",
                "http://[::ffff:127.0.0.1]/"]


def test_webhooks_to_the_portals_own_network_are_refused_without_the_flag(app):
    user_id = create_user(app)
    with app.app_context():
        for url in PRIVATE_URLS:
            with pytest.raises(ServiceError) as refused:
                alerts.update_settings(db.session.get(User, user_id), True, True, True, False, False, "", url)
            assert refused.value.code == "webhook_not_public", url
            assert alerts.settings_of(user_id).webhook_url is None


def test_bad_webhook_urls_are_messages(app):
    user_id = create_user(app)
    with app.app_context():
        for url in ["ftp://example.com/x", "javascript:alert(1)", "https://user:pw@example.com/",
                    "https://example.com:99999/", "https://x" + "a" * 600 + ".com/", "http://exa mple.com/\n"]:
            with pytest.raises(ServiceError):
                alerts.check_webhook_url(url, resolve=False)


def test_a_queued_webhook_to_loopback_is_not_sent_once_the_flag_is_off(app, clock, receiver):
    """The address is checked again when sending: a URL saved while allowed (or a name that now resolves
    to loopback) reaches nothing."""
    app.config.update(ALERT_WEBHOOK_ALLOW_PRIVATE=True)
    user_id = create_user(app)
    with app.app_context():
        make_worker(owner_id=user_id)
        alerts.update_settings(db.session.get(User, user_id), True, False, False, False, False, "", receiver.url)
        clock.advance(seconds=120)
        alerts.detect()
        app.config["ALERT_WEBHOOK_ALLOW_PRIVATE"] = False
        alerts.deliver_due()
        delivery = db.session.execute(db.select(AlertDelivery)).scalar_one()
        assert delivery.state == DeliveryState.FAILED and "non-public" in delivery.last_error
        assert receiver.calls == []


def test_the_daily_digest_is_queued_once_a_day(app, clock, smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    user_id = create_user(app)
    with app.app_context():
        make_worker(owner_id=user_id)
        alerts.update_settings(db.session.get(User, user_id), False, False, False, True, True, "ops@example.com", "")
        assert alerts.queue_digests() == "queued 1"
        assert alerts.queue_digests() == "queued 0"
        alerts.deliver_due()
        rcpt, message = smtp_server.messages[0]
        assert rcpt == ["ops@example.com"] and "daily digest" in message["Subject"]
        assert "Workers now: 1 online" in message.get_payload()
        clock.advance(days=1)
        assert alerts.queue_digests() == "queued 1"


def test_error_and_suspension_alerts_follow_their_settings(app, clock):
    user_id = create_user(app)
    with app.app_context():
        worker_id, _ = make_worker(owner_id=user_id)
        alerts.update_settings(db.session.get(User, user_id), on_offline=False, on_error=True, on_suspended=False,
                               daily_digest=False, email_enabled=True, email_to="", webhook_url="")
        presence.record_heartbeat(db.session.get(Worker, worker_id), "error", "Blender not found")
        assert alerts.detect() == "opened 1, closed 0"
        incident = db.session.execute(db.select(WorkerIncident)).scalar_one()
        assert incident.kind.value == "error" and incident.message == "Blender not found"
        worker = db.session.get(Worker, worker_id)
        worker.suspended_at, worker.suspended_reason = clock.now, "wrong result"
        db.session.commit()
        # Error ended (not by recovering): closed without a notice; suspension alerts are off.
        assert alerts.detect() == "opened 0, closed 1"
        assert {d.kind.value for d in db.session.execute(db.select(AlertDelivery)).scalars()} == {"error"}


def test_account_page_saves_alerts_shows_the_secret_once_and_the_delivery_log(app, client, clock, receiver):
    client.post("/signup", data={"email": "ada@example.com", "password": "correct horse battery",
                                 "confirm": "correct horse battery"})
    form = {"on_offline": "y", "email_enabled": "y", "email_to": "", "webhook_url": receiver.url}
    refused = client.post("/account/alerts", data=form)
    assert refused.status_code == 400 and "non-public address" in refused.get_data(as_text=True)
    app.config["ALERT_WEBHOOK_ALLOW_PRIVATE"] = True
    saved = client.post("/account/alerts", data=form).get_data(as_text=True)
    secret = saved.split('<code class="token" id="new-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    page = client.get("/account").get_data(as_text=True)
    assert secret not in page and secret[:12] in page and "Nothing sent yet." in page
    with app.app_context():
        user_id = db.session.execute(db.select(User.id)).scalar_one()
        make_worker(owner_id=user_id, name="log-node")
        clock.advance(seconds=120)
        alerts.detect()
        alerts.deliver_due()
    page = client.get("/account").get_data(as_text=True)
    log = page.split("Delivery log")[1]
    assert "Offline · log-node" in log and "Webhook" in log and "E-mail" in log
    assert "no SMTP server configured" in log  # this test's portal has none: said, not hidden
    assert verified(receiver.calls[0], secret)["event"] == "worker.offline"
    assert client.post("/account/alerts", data={**form, "email_to": "not an address"}).status_code == 400
