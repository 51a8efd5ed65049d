"""The app's "Wallet Address" row says the wallet payouts actually go to: the account's, once it is set on the
portal (it used to say "Not set" until the worker had a wallet of its own), read from the real portal's
GET /worker/settings answer."""

from tests.conftest import create_token
from tests.webapp.dispatch_factories import auth, make_worker
from tray_client.ui.viewmodel import ViewModel
from webapp.extensions import db
from webapp.services import accounts

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"


def _wallet_row(client, token) -> str:
    answer = client.get("/api/v1/worker/settings", headers=auth(token))
    assert answer.status_code == 200
    vm = ViewModel()
    vm.apply_settings(answer.get_json())
    return dict(vm.computing_rows())["Wallet Address"]


def test_the_app_shows_the_account_wallet_and_where_it_comes_from(app, client, clock):
    create_token(app, "ada@example.com")
    with app.app_context():
        user = accounts.user_by_email("ada@example.com")
        _, token = make_worker(user.id)
    assert _wallet_row(client, token) == "Not set: add one on the portal's Account page to be paid"
    with app.app_context():
        accounts.set_wallet(accounts.user_by_email("ada@example.com"), WALLET)
    # No restart, no worker wallet: the next settings answer carries it.
    assert _wallet_row(client, token) == f"{WALLET} (your account's wallet, set on the portal)"
    client.put("/api/v1/worker/settings", json={"wallet_address": "0xFeedBeef"}, headers=auth(token))
    assert _wallet_row(client, token) == (f"{WALLET} (your account's wallet, set on the portal); "
                                          "this worker's own 0xFeedBeef is for mining")
    assert ViewModel().paid_to_text == "— (not loaded from the portal yet)"


def test_one_sentence_for_prices_in_the_portal_and_the_app(app, client, clock):
    from tray_client.ui import viewmodel
    from webapp import money
    assert viewmodel.BENCH_HOUR_TEXT == money.BENCH_HOUR_TEXT
    create_token(app, "ada@example.com")
    with app.app_context():
        user = accounts.user_by_email("ada@example.com")
        worker_id, token = make_worker(user.id, bid="0.50", bench_score=2000)
    vm = ViewModel()
    vm.apply_settings(client.get("/api/v1/worker/settings", headers=auth(token)).get_json())
    kind, text = vm.bid_preview("0.50")
    assert text.startswith("$0.50/hour = $0.25 per bench-hour") and money.BENCH_HOUR_TEXT in text
    client.post("/login", data={"email": "ada@example.com", "password": "correct horse battery"})
    page = client.get(f"/workers/{worker_id}").get_data(as_text=True)
    assert "$0.50/hour" in page and "$0.25 per bench-hour" in page and money.BENCH_HOUR_TEXT.replace("'", "&#39;") in page
