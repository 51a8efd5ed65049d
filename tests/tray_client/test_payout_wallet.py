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
