"""The money pages: Earnings (a provider's total, balance, payouts, chart, per-worker list, statement, CSV)
and Spend (a creator's credit, per-job costs, chart, statement, CSV). Thin: the services do the sums."""

import uuid

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import money, timezones
from ..api.money import statement_csv
from ..clock import utcnow
from ..forms import BudgetForm, PayoutForm
from ..services import ServiceError, credit, payouts, permissions, statements
from ..web import chart_response

bp = Blueprint("money", __name__)

PERIODS = (("week", "Week"), ("month", "Month"), ("year", "Year"))


def _page_arg() -> int:
    value = request.args.get("page", "1")
    return int(value) if value.isdigit() and 0 < len(value) < 7 and int(value) > 0 else 1


def _period() -> str:
    period = request.args.get("period", "month")
    return period if period in dict(PERIODS) else "month"


def _statement(condition, creator: bool):
    q = (request.args.get("q") or "").strip()[:statements.Q_MAX]
    return q, statements.statement(condition, q, _page_arg(), current_app.config.get("PAGE_SIZE", 25))


def _earnings_page(form=None, status=200):
    now = utcnow()
    q, page = _statement(statements.provider_rows(current_user.id), creator=False)
    return render_template(
        "money/earnings.html", figures=payouts.earnings(current_user.id, now), workers=payouts.per_worker(current_user.id),
        q=q, page=page, now=now, labels=statements.KIND_LABELS, state_of=statements.state_of,
        history=payouts.list_payouts(current_user.id, per_page=10).items, period=_period(), periods=PERIODS,
        form=form or PayoutForm(idempotency_key=uuid.uuid4().hex), minimum=payouts.minimum_micros()), status


@bp.get("/earnings")
@login_required
def earnings():
    return _earnings_page()


@bp.post("/earnings/payouts")
@login_required
def request_payout():
    form = PayoutForm()
    if form.validate_on_submit():
        try:
            payout, created = payouts.request_payout(current_user, form.amount.data, form.idempotency_key.data)
        except ServiceError as exc:
            form.amount.errors = [exc.message]
        else:
            if created:
                flash(f"Payout #{payout.id} of {money.usd(payout.amount_micros)} requested: it shows as pending "
                      f"until it is sent to {payout.wallet_address}.", "success")
            else:
                flash(f"Payout #{payout.id} was already requested (the form was sent twice).", "success")
            return redirect(url_for("money.earnings"))
    return _earnings_page(form=form, status=400)


@bp.get("/earnings.csv")
@login_required
def earnings_csv():
    try:
        return statement_csv(statements.provider_rows(current_user.id), "pictor-earnings.csv")
    except ServiceError as exc:
        abort(400, exc.message)


@bp.get("/earnings/chart.svg")
@login_required
def earnings_chart():
    series = payouts.account_series(current_user.id, _period(), zone=timezones.current_zone())
    return chart_response(series, "earnings-by-task")


@bp.get("/spend")
@login_required
def spend():
    q, page = _statement(statements.creator_rows(current_user.id), creator=True)
    jobs = credit.job_rows(current_user.id, page=1, per_page=20)
    return render_template("money/spend.html", figures=credit.summary(current_user.id), q=q, page=page,
                           jobs=jobs, labels=statements.CREATOR_LABELS, signed=statements.signed_for_creator,
                           period=_period(), periods=PERIODS, budget_form=BudgetForm())


@bp.post("/spend/jobs/<int:job_id>/budget")
@login_required
def raise_budget(job_id):
    form = BudgetForm()
    job = permissions.owned_job(current_user.id, job_id)
    if form.validate_on_submit():
        try:
            credit.raise_budget(job, form.budget.data)
        except ServiceError as exc:
            flash(exc.message, "error")
        else:
            flash(f"Budget of job “{job.name}” raised to {money.usd(job.budget_micros)}.", "success")
    return redirect(request.referrer if (request.referrer or "").startswith(request.host_url) else url_for("money.spend"))


@bp.get("/spend.csv")
@login_required
def spend_csv():
    try:
        return statement_csv(statements.creator_rows(current_user.id), "pictor-spend.csv", creator=True)
    except ServiceError as exc:
        abort(400, exc.message)


@bp.get("/spend/chart.svg")
@login_required
def spend_chart():
    return chart_response(credit.spend_series(current_user.id, _period(), zone=timezones.current_zone()), "spend")
