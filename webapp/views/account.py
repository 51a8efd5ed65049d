"""The account page: wallet address, time zone and personal API tokens."""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from .. import timezones
from ..forms import EmptyForm, TimeZoneForm, TokenForm, WalletForm
from ..services import ServiceError, accounts

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(wallet_form=None, token_form=None, new_token=None, zone_form=None, status=200):
    return render_template(
        "account/index.html",
        wallet_form=wallet_form or WalletForm(wallet_address=current_user.wallet_address),
        zone_form=zone_form or TimeZoneForm(time_zone=current_user.time_zone or ""),
        zone_names=timezones.zone_names(),
        detected_zone=timezones.browser_zone(),
        token_form=token_form or TokenForm(),
        revoke_form=EmptyForm(),
        tokens=accounts.list_api_tokens(current_user),
        new_token=new_token,
    ), status


@bp.get("")
@login_required
def index():
    return _page()


@bp.post("/wallet")
@login_required
def wallet():
    form = WalletForm()
    if form.validate_on_submit():
        try:
            accounts.set_wallet(current_user, form.wallet_address.data)
        except ServiceError as exc:
            form.wallet_address.errors = [exc.message]
        else:
            flash("Wallet address saved.", "success")
            return redirect(url_for("account.index"))
    return _page(wallet_form=form, status=400)


@bp.post("/time-zone")
@login_required
def time_zone():
    form = TimeZoneForm()
    if form.validate_on_submit():
        try:
            accounts.set_time_zone(current_user, form.time_zone.data)
        except ServiceError as exc:
            form.time_zone.errors = [exc.message]
        else:
            flash(f"Times are now shown in {current_user.time_zone or 'your browser’s time zone'}.", "success")
            return redirect(url_for("account.index"))
    return _page(zone_form=form, status=400)


@bp.post("/tokens")
@login_required
def create_token():
    form = TokenForm()
    if form.validate_on_submit():
        try:
            row, token = accounts.create_api_token(current_user, form.name.data)
        except ServiceError as exc:
            form.name.errors = [exc.message]
        else:
            # Rendered, not redirected: the token exists only in this response.
            return _page(new_token=(row, token))
    return _page(token_form=form, status=400)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id):
    if EmptyForm().validate_on_submit():
        accounts.revoke_api_token(current_user, token_id)
        flash("Token revoked: requests using it now get 401.", "success")
    return redirect(url_for("account.index"))
