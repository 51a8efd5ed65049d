"""`pictor-portal`: serve, init-db, create-user, create-token, demo, payouts, credit."""

import os
import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext


def _create_app():
    from . import create_app
    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def main():
    """Pictor Worker Portal."""


@main.command("init-db")
@with_appcontext
def init_db():
    """Create or upgrade the database schema (safe to run again)."""
    from .database import upgrade_schema
    upgrade_schema()
    click.echo(f"Database ready: {current_app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}")


@main.command("create-user")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def create_user(email, password):
    """Create an account."""
    from .services import ServiceError, accounts
    try:
        user = accounts.sign_up(email, password)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"Created user {user.email} (id {user.id})")


@main.command("create-token")
@click.argument("email")
@click.option("--name", default="cli", show_default=True)
@with_appcontext
def create_token(email, name):
    """Print a new personal API token for EMAIL (shown once)."""
    from .services import ServiceError, accounts
    try:
        _, token = accounts.create_api_token(accounts.user_by_email(email), name)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(token)


@main.command("demo")
@click.option("--email", default="demo@example.com", show_default=True)
@click.option("--password", default="demo-password", show_default=True)
@click.option("--workers", default=36, show_default=True)
@click.option("--live", is_flag=True, help="keep the demo's connected workers heartbeating until Ctrl+C")
@with_appcontext
def demo(email, password, workers, live):
    """Seed a realistic demo account: workers in every status, months of tasks, earnings, mining."""
    import time

    from .extensions import db
    from .services import demo as demo_service
    user = demo_service.seed(email, password, workers=workers)
    click.echo(f"Demo account ready: {user.email} / {password}")
    email = user.email
    if live:
        click.echo("Keeping the demo workers alive (Ctrl+C to stop)...")
        try:
            while True:
                demo_service.pulse(email)
                db.session.remove()
                time.sleep(5)
        except KeyboardInterrupt:
            pass


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", "processes", default=2, show_default=True, help="server processes")
def serve(host, port, processes):
    """Run the portal with a production server (gunicorn on Linux, waitress elsewhere)."""
    from .database import upgrade_schema
    app = _create_app()
    with app.app_context():
        upgrade_schema()
    click.echo(f"Pictor Worker Portal: http://{host}:{port}/  (Ctrl+C to stop)", err=True)
    sys.stderr.flush()
    if sys.platform != "win32":
        try:
            from gunicorn.app.base import BaseApplication
        except ImportError:
            BaseApplication = None
        if BaseApplication is not None:
            class _Gunicorn(BaseApplication):
                def load_config(self):
                    self.cfg.set("bind", f"{host}:{port}")
                    self.cfg.set("workers", processes)
                    self.cfg.set("threads", 8)
                    self.cfg.set("worker_class", "gthread")
                    self.cfg.set("timeout", 120)
                    self.cfg.set("accesslog", os.environ.get("PICTOR_ACCESS_LOG"))

                def load(self):
                    return _create_app()
            _Gunicorn().run()
            return
    import waitress
    waitress.serve(app, host=host, port=port, threads=16)


@main.group("payouts")
def payouts_group():
    """Providers' payout requests: list them, mark one paid, reject one."""


@payouts_group.command("list")
@click.option("--state", type=click.Choice(["pending", "paid", "rejected"]), help="only this state")
@with_appcontext
def payouts_list(state):
    """Payout requests, newest first: id, state, amount, provider, wallet."""
    from . import money
    from .services import payouts
    page = payouts.list_payouts(state=state, per_page=1000)
    if not page.items:
        click.echo("No payout requests" + (f" in state {state}." if state else "."))
    for p in page.items:
        extra = p.reference or p.reason or ""
        click.echo(f"{p.id}\t{p.state.value}\t{money.fmt(p.amount_micros)}\t{p.provider.email}\t{p.wallet_address}"
                   f"\t{p.created_at:%Y-%m-%d %H:%M}\t{extra}")


@payouts_group.command("mark-paid")
@click.argument("payout_id", type=int)
@click.option("--reference", required=True, help="the transaction id of the transfer you made")
@with_appcontext
def payouts_mark_paid(payout_id, reference):
    """Record that payout ID was sent (with its transaction reference)."""
    from .services import ServiceError, payouts
    try:
        payout = payouts.mark_paid(payout_id, reference)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"Payout #{payout.id} marked paid ({payout.reference}).")


@payouts_group.command("reject")
@click.argument("payout_id", type=int)
@click.option("--reason", required=True, help="shown to the provider")
@with_appcontext
def payouts_reject(payout_id, reason):
    """Refuse payout ID: its amount goes back to the provider's balance."""
    from .services import ServiceError, payouts
    try:
        payout = payouts.reject(payout_id, reason)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"Payout #{payout.id} rejected; {payout.amount_micros / 1e6:.6f} USD back in the balance.")


@main.command("credit")
@click.argument("email")
@click.argument("amount")
@click.option("--memo", help="shown on the creator's statement")
@with_appcontext
def credit_command(email, amount, memo):
    """Add AMOUNT (USD) of credit to the creator EMAIL's account."""
    from . import money
    from .services import ServiceError, accounts, credit
    try:
        user = accounts.user_by_email(email)
        credit.add_credit(user, amount, memo=memo)
        figures = credit.summary(user.id)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"Added {money.usd(money.to_micros(amount))} to {user.email}: balance {money.usd(figures['balance'])}, "
               f"available {money.usd(figures['available'])}.")


@main.group("mining-rates")
def mining_rates_group():
    """The rate table mining estimates come from (services/mining.py): list, set or remove a coin."""


@mining_rates_group.command("list")
@with_appcontext
def mining_rates_list():
    """Each coin: USD per MH/s per day, the per-GPU hashrate cap, when it was set."""
    from . import money
    from .services import mining
    rows = mining.rates()
    if not rows:
        click.echo("No mining rates: no mining report earns anything until you set one.")
    for rate in rows:
        click.echo(f"{rate.coin}	{money.fmt(rate.micros_per_mh_day)} USD per MH/s per day	"
                   f"at most {rate.max_mh_per_gpu:g} MH/s per GPU	set {rate.updated_at:%Y-%m-%d %H:%M} UTC")


@mining_rates_group.command("set")
@click.argument("coin")
@click.option("--usd-per-mh-day", required=True, help="what one MH/s earns in a day, in USD (e.g. 0.0065)")
@click.option("--max-mh-per-gpu", required=True, type=float,
              help="the most one GPU can hash at this coin's algorithm, in MH/s (e.g. 130 for etchash)")
@with_appcontext
def mining_rates_set(coin, usd_per_mh_day, max_mh_per_gpu):
    """Add or change COIN's rate; reports from now on are estimated with it."""
    from .services import ServiceError, mining
    try:
        rate = mining.set_rate(coin, usd_per_mh_day, max_mh_per_gpu)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"{rate.coin}: {usd_per_mh_day} USD per MH/s per day, at most {rate.max_mh_per_gpu:g} MH/s per GPU.")


@mining_rates_group.command("remove")
@click.argument("coin")
@with_appcontext
def mining_rates_remove(coin):
    """Stop counting COIN: its reports are refused from now on (booked ones stay)."""
    from .services import mining
    if not mining.remove_rate(coin):
        raise click.ClickException(f"No rate for {coin.upper()}.")
    click.echo(f"{coin.upper()} removed.")


def init_app(app) -> None:
    """Also expose the commands through `flask --app wsgi`."""
    for command in (init_db, create_user, create_token, demo, payouts_group, credit_command, mining_rates_group):
        app.cli.add_command(command)


@main.command("publish-installer")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--version", "version", help="Defaults to the one in the name: PictorWorkerSetup-<version>.exe")
@with_appcontext
def publish_installer(path, version):
    """Store a built Windows installer and offer it as the latest Worker App on the Download page."""
    from .services import ServiceError, releases
    try:
        release = releases.publish(path, version=version)
    except ServiceError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"Published Pictor Worker {release.version}: {release.filename}, {release.size} bytes, "
               f"sha256 {release.sha256}")
