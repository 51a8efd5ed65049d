"""A provider's money: earnings across workers, the balance, payout requests (API, idempotent, raced over real
HTTP on SQLite and PostgreSQL) and the operator's CLI that marks them paid or rejects them."""

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from tests.conftest import T0, LiveServer, create_token
from tests.webapp.dispatch_factories import make_user, make_worker
from webapp import money
from webapp.extensions import db
from webapp.models import LedgerEntry, LedgerKind, Payout, PayoutState, User, Worker
from webapp.services import accounts, ledger, payouts

EMAIL = "ada@example.com"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"


def reward(worker_id: int, micros: int, available_at=T0, at=T0) -> LedgerEntry:
    """A task reward as the ledger keeps it, with the worker's running total kept in step."""
    worker = db.session.get(Worker, worker_id)
    entry = LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=micros, worker_id=worker_id,
                        provider_id=worker.owner_id, available_at=available_at, created_at=at, memo="Task")
    db.session.add(entry)
    worker.earnings_micros = (worker.earnings_micros or 0) + micros
    db.session.commit()
    return entry


def provider(app, wallet=WALLET):
    """Ada with an API token, two workers, $30 available and $4 pending; returns (user id, token, worker ids)."""
    token = create_token(app, EMAIL)
    with app.app_context():
        user = accounts.user_by_email(EMAIL)
        if wallet:
            accounts.set_wallet(user, wallet)
        a, _ = make_worker(user.id, name="alpha")
        b, _ = make_worker(user.id, name="beta")
        reward(a, 20_000_000)
        reward(b, 10_000_000)
        reward(b, 4_000_000, available_at=None)  # waiting for its spot check
        return user.id, token, (a, b)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_earnings_add_up_across_workers_and_a_payout_takes_from_the_balance(app, client, clock):
    user_id, token, (a, b) = provider(app)
    body = client.get("/api/v1/account/earnings", headers=bearer(token)).get_json()
    assert {k: body[k] for k in ("total", "pending", "available", "paid", "balance")} == {
        "total": "34.000000", "pending": "4.000000", "available": "30.000000", "paid": "0.000000",
        "balance": "30.000000"}
    # The workers list's earnings add up to the same total.
    listed = client.get("/api/v1/workers", headers=bearer(token)).get_json()["items"]
    assert sum(money.to_micros(w["earnings"]) for w in listed) == money.to_micros(body["total"])

    created = client.post("/api/v1/payouts", json={"amount": "12.50"}, headers=bearer(token))
    assert created.status_code == 201
    payout = created.get_json()
    assert payout["state"] == "pending" and payout["amount"] == "12.500000" and payout["wallet_address"] == WALLET
    body = client.get("/api/v1/account/earnings", headers=bearer(token)).get_json()
    assert (body["balance"], body["requested"], body["paid"]) == ("17.500000", "12.500000", "0.000000")
    assert client.get("/api/v1/payouts", headers=bearer(token)).get_json()["items"][0]["id"] == payout["id"]
    # The statement lists the payout beside the rewards, and its CSV sums to the same figures.
    rows = client.get("/api/v1/account/ledger?q=payout", headers=bearer(token)).get_json()
    assert rows["total"] == 1 and rows["items"][0]["amount"] == "-12.500000"
    text = client.get("/api/v1/account/ledger.csv", headers=bearer(token)).get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text)))
    earned = sum(money.to_micros(r["amount"]) for r in table if r["kind"] in {k.value for k in ledger.EARNING_KINDS})
    assert earned == 34_000_000
    assert sum(money.to_micros(r["amount"]) for r in table if r["state"] == "available") \
        + sum(money.to_micros(r["amount"]) for r in table if r["kind"] == "payout") == 17_500_000


@pytest.mark.parametrize("amount,code,status", [
    ("1.00", "below_minimum", 422),  # PAYOUT_MINIMUM is $5.00
    ("30.000001", "exceeds_balance", 422),
    ("34.00", "exceeds_balance", 422),  # pending money is not in the balance
    ("-5", "invalid_amount", 400), ("0", "invalid_amount", 400), ("1e3", "exceeds_balance", 422),
    ("12.0000001", "invalid_amount", 400), ("NaN", "invalid_amount", 400), (12, "invalid_amount", 400),
])
def test_a_payout_cannot_take_more_than_the_balance_or_less_than_the_minimum(app, client, clock, amount, code, status):
    _, token, _ = provider(app)
    response = client.post("/api/v1/payouts", json={"amount": amount}, headers=bearer(token))
    assert response.status_code == status and response.get_json()["error"] == code
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(Payout.id))).scalar_one() == 0


def test_no_wallet_no_payout_and_the_whole_balance_by_default(app, client, clock):
    _, token, _ = provider(app, wallet=None)
    response = client.post("/api/v1/payouts", json={}, headers=bearer(token))
    assert response.status_code == 409 and response.get_json()["error"] == "no_wallet"
    client.post("/login", data={"email": EMAIL, "password": "correct horse battery"})
    assert client.post("/account/wallet", data={"wallet_address": WALLET}).status_code == 302
    response = client.post("/api/v1/payouts", json={}, headers=bearer(token))
    assert response.status_code == 201 and response.get_json()["amount"] == "30.000000"
    again = client.post("/api/v1/payouts", json={"amount": "5.00"}, headers=bearer(token))
    assert again.status_code == 422 and again.get_json()["error"] == "exceeds_balance"


def test_the_same_idempotency_key_makes_one_request(app, client, clock):
    _, token, _ = provider(app)
    headers = {**bearer(token), "Idempotency-Key": "form-123"}
    first = client.post("/api/v1/payouts", json={"amount": "10"}, headers=headers)
    second = client.post("/api/v1/payouts", json={"amount": "10"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.get_json()["id"] == second.get_json()["id"]
    assert client.get("/api/v1/account/earnings", headers=bearer(token)).get_json()["balance"] == "20.000000"
    bad = client.post("/api/v1/payouts", json={"amount": "10"}, headers={**bearer(token), "Idempotency-Key": "a b"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_idempotency_key"


def test_someone_elses_money_is_not_yours(app, client, clock):
    _, token, _ = provider(app)
    other = create_token(app, "eve@example.com")
    with app.app_context():
        accounts.set_wallet(accounts.user_by_email("eve@example.com"), "eve-wallet")
    assert client.post("/api/v1/payouts", json={"amount": "10"}, headers=bearer(token)).status_code == 201
    assert client.get("/api/v1/account/earnings", headers=bearer(other)).get_json()["balance"] == "0.000000"
    assert client.get("/api/v1/payouts", headers=bearer(other)).get_json()["total"] == 0
    assert client.get("/api/v1/account/ledger", headers=bearer(other)).get_json()["total"] == 0
    response = client.post("/api/v1/payouts", json={"amount": "10"}, headers=bearer(other))
    assert response.status_code == 422 and response.get_json()["error"] == "exceeds_balance"


def test_pending_to_paid_and_rejected_through_the_cli(app, client, clock):
    user_id, token, _ = provider(app)
    paid = client.post("/api/v1/payouts", json={"amount": "10"}, headers=bearer(token)).get_json()
    refused = client.post("/api/v1/payouts", json={"amount": "6"}, headers=bearer(token)).get_json()
    runner = app.test_cli_runner()
    listing = runner.invoke(args=["payouts", "list", "--state", "pending"])
    assert listing.exit_code == 0 and f"{paid['id']}\tpending\t10.000000\t{EMAIL}\t{WALLET}" in listing.output
    result = runner.invoke(args=["payouts", "mark-paid", str(paid["id"]), "--reference", "0xabc123"])
    assert result.exit_code == 0 and "marked paid (0xabc123)" in result.output
    result = runner.invoke(args=["payouts", "reject", str(refused["id"]), "--reason", "wallet on a sanctions list"])
    assert result.exit_code == 0
    # Deciding twice is refused, and changes nothing.
    again = runner.invoke(args=["payouts", "reject", str(paid["id"]), "--reason", "oops"])
    assert again.exit_code != 0 and "already paid" in again.output
    assert runner.invoke(args=["payouts", "mark-paid", "999", "--reference", "x"]).exit_code != 0
    states = {p["id"]: (p["state"], p["reference"], p["reason"])
              for p in client.get("/api/v1/payouts", headers=bearer(token)).get_json()["items"]}
    assert states == {paid["id"]: ("paid", "0xabc123", None),
                      refused["id"]: ("rejected", None, "wallet on a sanctions list")}
    body = client.get("/api/v1/account/earnings", headers=bearer(token)).get_json()
    assert (body["paid"], body["requested"], body["balance"]) == ("10.000000", "0.000000", "20.000000")
    kinds = [e["kind"] for e in client.get("/api/v1/account/ledger", headers=bearer(token)).get_json()["items"]]
    assert kinds.count("payout") == 2 and kinds.count("payout_return") == 1


def _race(base_url, token, bodies_and_keys):
    """Send the requests at once (a barrier releases them together); returns (status, json) each."""
    barrier = threading.Barrier(len(bodies_and_keys))

    def send(item):
        body, key = item
        headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
        barrier.wait()
        response = requests.post(f"{base_url}/api/v1/payouts", json=body, headers=headers, timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(len(bodies_and_keys)) as pool:
        return list(pool.map(send, bodies_and_keys))


@pytest.mark.parametrize("same_key", [False, True])
def test_concurrent_payout_requests_over_http_never_overdraw(any_app, clock, same_key):
    """Eight requests for $20 of a $30 balance at once, on SQLite and PostgreSQL: exactly one is paid."""
    user_id, token, _ = provider(any_app)
    server = LiveServer(any_app)
    try:
        results = _race(server.url, token, [({"amount": "20"}, "same" if same_key else None)] * 8)
    finally:
        server.stop()
    statuses = sorted(status for status, _ in results)
    if same_key:
        assert statuses == [200] * 7 + [201] and len({body["id"] for _, body in results}) == 1
    else:
        assert statuses == [201] + [422] * 7
        assert {body["error"] for status, body in results if status == 422} == {"exceeds_balance"}
    with any_app.app_context():
        assert db.session.execute(db.select(db.func.count(Payout.id))).scalar_one() == 1
        figures = payouts.earnings(user_id)
        assert figures["balance"] == 10_000_000 and figures["requested"] == 20_000_000


@pytest.mark.parametrize("address,ok", [
    (WALLET, True), ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", True), ("0xAbC123", True),
    ("wallet.rig01", True), ("has spaces", False), ("<script>", False), ("x" * 129, False), ("-leading", False),
    ("line\nbreak", False), ("", True)])
def test_the_account_wallet_follows_the_one_documented_rule(app, client, address, ok):
    create_token(app, EMAIL)
    client.post("/login", data={"email": EMAIL, "password": "correct horse battery"})
    response = client.post("/account/wallet", data={"wallet_address": address})
    assert response.status_code == (302 if ok else 400)
    with app.app_context():
        assert accounts.user_by_email(EMAIL).wallet_address == ((address or None) if ok else None)


def test_the_payout_form_sent_twice_makes_one_request(app, client, clock):
    provider(app)
    client.post("/login", data={"email": EMAIL, "password": "correct horse battery"})
    form = {"amount": "10", "idempotency_key": "0f3c2b1a"}
    first, second = client.post("/earnings/payouts", data=form), client.post("/earnings/payouts", data=form)
    assert first.status_code == second.status_code == 302
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(Payout.id))).scalar_one() == 1
    page = client.get("/earnings").get_data(as_text=True)
    assert "was already requested" in page and "$20.00" in page  # the balance: $30 less one $10 payout
    refused = client.post("/earnings/payouts", data={"amount": "nope", "idempotency_key": "k2"})
    assert refused.status_code == 400 and "not a decimal amount" in refused.get_data(as_text=True)
