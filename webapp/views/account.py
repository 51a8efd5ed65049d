"""The account page: wallet address, time zone, personal API tokens and alerts."""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from .. import timezones
from ..extensions import db
from ..forms import AlertsForm, EmptyForm, TimeZoneForm, TokenForm, WalletForm
from ..services import ServiceError, accounts, alerts

bp = Blueprint("account", __name__, url_prefix="/account")


def _alerts_form() -> AlertsForm:
    row = alerts.settings_of(current_user.id)
    return AlertsForm(on_offline=row.on_offline, on_error=row.on_error, on_suspended=row.on_suspended,
                      daily_digest=row.daily_digest, email_enabled=row.email_enabled, email_to=row.email_to or "",
                      webhook_url=row.webhook_url or "")


def _page(wallet_form=None, token_form=None, new_token=None, zone_form=None, alerts_form=None, new_secret=None,
          status=200):
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
        alerts_form=alerts_form or _alerts_form(),
        alert_settings=alerts.settings_of(current_user.id),
        alert_log=alerts.deliveries(current_user.id),
        new_secret=new_secret,
        secret_form=EmptyForm(),
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


@bp.post("/alerts")
@login_required
def save_alerts():
    form = AlertsForm()
    if form.validate_on_submit():
        try:
            secret = alerts.update_settings(
                current_user, form.on_offline.data, form.on_error.data, form.on_suspended.data,
                form.daily_digest.data, form.email_enabled.data, form.email_to.data, form.webhook_url.data)
        except ServiceError as exc:
            db.session.rollback()
            field = form.webhook_url if exc.code.startswith(("invalid_webhook", "webhook")) else form.email_to
            field.errors = [exc.message]
        else:
            if secret:  # rendered, not redirected: the secret exists only in this response
                return _page(new_secret=secret)
            flash("Alert settings saved.", "success")
            return redirect(url_for("account.index", _anchor="alerts"))
    return _page(alerts_form=form, status=400)


@bp.post("/alerts/secret")
@login_required
def regenerate_secret():
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("account.index"))
    return _page(new_secret=alerts.regenerate_secret(current_user))
