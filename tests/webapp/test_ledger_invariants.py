"""Ledger invariants under random sequences (hypothesis): task credits, settling, reversals, payout requests and
the operator's decisions, creators' credit, budgeted jobs that spend and end. After every step no balance is
negative, the figures match a plain model, and the statement pages, the CSV and the per-worker list add up
to the same totals the Earnings and Spend pages show."""

import csv
import io
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import T0, make_app
from tests.webapp.dispatch_factories import make_job, make_user, make_worker
from webapp import money
from webapp.clock import freeze
from webapp.extensions import db
from webapp.models import Job, JobStatus, LedgerEntry, Payout, PayoutState, Task, User
from webapp.services import ServiceError, credit, dispatch, ledger, payouts, statements

MIN = 5_000_000  # PAYOUT_MINIMUM $5


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("invariants"), PAYOUT_MINIMUM="5.00")
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _reset():
    db.session.rollback()
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


amounts = st.integers(min_value=1, max_value=40_000_000)
payout_op = st.tuples(
    # None: the whole balance; ("rel", d): the balance plus d micro-dollars (the edge, both sides of it)
    st.just("payout"), st.one_of(st.none(), amounts, st.tuples(st.just("rel"), st.integers(-2, 2))),
    st.sampled_from(["k1", "k2", None, None]))
spend_op = st.tuples(st.just("spend"), st.integers(0, 5), amounts)
ops = st.lists(st.one_of(
    st.tuples(st.just("earn"), amounts, st.booleans(), st.integers(0, 2)),  # amount, held for a check?, worker
    st.tuples(st.just("settle"), st.integers(0, 50)),
    st.tuples(st.just("reverse"), st.integers(0, 50)),
    payout_op, payout_op, payout_op,  # weighted: the rule most worth hammering
    st.tuples(st.just("decide"), st.integers(0, 10), st.booleans()),
    st.tuples(st.just("credit"), amounts),
    st.tuples(st.just("submit"), amounts), spend_op, spend_op,
    st.tuples(st.just("end"), st.integers(0, 5)),
), min_size=5, max_size=30)


class World:
    """The rows a sequence works on, and a plain model of what the figures must be."""

    def __init__(self, now):
        self.now = now
        self.provider = make_user("provider@example.com")
        db.session.get(User, self.provider).wallet_address = "provider-wallet"
        self.creator = make_user("creator@example.com")
        db.session.commit()
        self.workers = [make_worker(self.provider, name=f"w{i}")[0] for i in range(3)]
        self.pool_job, self.pool = make_job(make_user("someone@example.com"), tasks=60)  # tasks to credit
        self.rewards: list[LedgerEntry] = []
        self.jobs: list[tuple[int, list[int]]] = []
        self.used = 0

    def task_for(self, worker_id, job_tasks=None) -> Task | None:
        """A fresh task attempt done by `worker_id` (of the pool, or of a creator's job)."""
        if job_tasks is not None:
            task = next((db.session.get(Task, t) for t in job_tasks if db.session.get(Task, t).worker_id is None), None)
        else:
            if self.used >= len(self.pool):
                return None
            task = db.session.get(Task, self.pool[self.used])
            self.used += 1
        if task is None:
            return None
        task.worker_id, task.attempts = worker_id, 1
        return task


def _apply(world: World, op) -> None:
    kind = op[0]
    now = world.now
    if kind == "earn":
        _, amount, held, w = op
        task = world.task_for(world.workers[w])
        if task is not None:
            world.rewards.append(ledger.credit_task_reward(task, amount, None if held else now - timedelta(seconds=1)))
            db.session.commit()
    elif kind in ("settle", "reverse") and world.rewards:
        entry = world.rewards[op[1] % len(world.rewards)]
        # Verification only ever settles or takes back a reward still waiting for its check.
        if entry.available_at is None and db.session.execute(db.select(LedgerEntry.id).where(
                LedgerEntry.reverses_id == entry.id)).first() is None:
            if kind == "settle":
                ledger.settle(entry, now - timedelta(seconds=1))
            else:
                ledger.reverse(entry, "failed its check", now)
            db.session.commit()
    elif kind == "payout":
        _, amount, key = op
        before = payouts.earnings(world.provider, now)["balance"]
        if isinstance(amount, tuple):
            amount = max(1, before + amount[1])
        existing = key and db.session.execute(db.select(Payout).where(Payout.idempotency_key == key)).scalar_one_or_none()
        asked = before if amount is None else amount
        try:
            payout, created = payouts.request_payout(db.session.get(User, world.provider),
                                                     None if amount is None else money.fmt(amount), key, now)
        except ServiceError as exc:
            assert not existing and (asked < MIN or asked > before), exc.message
            assert exc.code == ("below_minimum" if asked < MIN else "exceeds_balance")
        else:
            if existing:
                assert not created and payout.id == existing.id
            else:
                assert created and MIN <= asked <= before and payout.amount_micros == asked
    elif kind == "decide":
        pending = db.session.execute(db.select(Payout.id).where(Payout.state == PayoutState.PENDING)
                                     .order_by(Payout.id)).scalars().all()
        if pending:
            payout_id = pending[op[1] % len(pending)]
            if op[2]:
                payouts.mark_paid(payout_id, "tx-1", now)
            else:
                payouts.reject(payout_id, "refused", now)
    elif kind == "credit":
        credit.add_credit(db.session.get(User, world.creator), money.fmt(op[1]), now=now)
    elif kind == "submit":
        job_id, tasks = make_job(world.creator, tasks=4)
        job = db.session.get(Job, job_id)
        job.budget_micros = op[1]
        available = credit.available_micros(world.creator)
        try:
            credit.reserve_for(job)
            db.session.commit()
            world.jobs.append((job_id, tasks))
            assert op[1] <= available
        except credit.InsufficientCredit:
            db.session.rollback()
            assert op[1] > available
    elif kind == "spend" and world.jobs:
        job_id, tasks = world.jobs[op[1] % len(world.jobs)]
        job = db.session.get(Job, job_id)
        if job.status not in credit.FINISHED and job.paused_at is None:
            task = world.task_for(world.workers[0], tasks)
            if task is not None:
                reward = credit.cap_reward(task, op[2], now)  # what complete_task does before crediting
                ledger.credit_task_reward(task, reward, now)
                task.status = dispatch.TaskStatus.COMPLETED
                dispatch.roll_up_status(job)
                db.session.commit()
    elif kind == "end" and world.jobs:
        dispatch.cancel_job(db.session.get(Job, world.jobs[op[1] % len(world.jobs)][0]), now)


def _all_rows(condition):
    page, rows = 1, []
    while True:
        chunk = statements.statement(condition, page=page, per_page=7)
        rows += chunk.items
        if page >= chunk.pages:
            return rows, chunk.total
        page += 1


def _check(world: World) -> None:
    now = world.now
    figures = payouts.earnings(world.provider, now)
    assert figures["balance"] >= 0 and figures["available"] >= 0 and figures["pending"] >= 0
    assert figures["total"] == figures["pending"] + figures["available"]
    assert figures["balance"] == figures["available"] - figures["paid"] - figures["requested"]
    # The plain model: rewards less reversals, payouts by state.
    earned = sum(e.amount_micros for e in db.session.execute(db.select(LedgerEntry).where(
        LedgerEntry.provider_id == world.provider, LedgerEntry.kind.in_(list(ledger.EARNING_KINDS)))).scalars())
    assert figures["total"] == earned
    by_state = {s: sum(p.amount_micros for p in db.session.execute(
        db.select(Payout).where(Payout.state == s)).scalars()) for s in PayoutState}
    assert (figures["paid"], figures["requested"]) == (by_state[PayoutState.PAID], by_state[PayoutState.PENDING])
    # The Earnings page's statement (every page), its CSV and the per-worker list say the same.
    rows, total = _all_rows(statements.provider_rows(world.provider))
    assert len(rows) == total == len({r.id for r in rows})
    assert sum(r.amount_micros for r in rows if r.kind in ledger.EARNING_KINDS) == figures["total"]
    table = list(csv.DictReader(io.StringIO("".join(statements.csv_lines(statements.provider_rows(world.provider), now=now)))))
    assert len(table) == total
    assert sum(money.to_micros(r["amount"]) for r in table if r["state"] == "pending") == figures["pending"]
    assert sum(money.to_micros(r["amount"]) for r in table if r["state"] == "available") \
        + sum(money.to_micros(r["amount"]) for r in table if r["kind"] in ("payout", "payout_return")) == figures["balance"]
    assert sum(w["earnings_micros"] for w in payouts.per_worker(world.provider)) == figures["total"]

    money_of = credit.summary(world.creator)
    assert money_of["available"] >= 0 and money_of["reserved"] >= 0
    assert money_of["balance"] == money_of["available"] + money_of["reserved"]
    for job_id, _ in world.jobs:
        job = db.session.get(Job, job_id)
        assert ledger.job_cost_micros(job_id) <= job.budget_micros  # never past the budget
    rows, _ = _all_rows(statements.creator_rows(world.creator))
    assert sum(statements.signed_for_creator(r) for r in rows) == money_of["balance"]
    assert money_of["credited"] - sum(ledger.job_cost_micros(j) for j, _ in world.jobs) == money_of["balance"]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(start=st.lists(st.integers(MIN, 40_000_000), min_size=1, max_size=3), sequence=ops)
def test_random_money_sequences_keep_every_invariant(app, start, sequence):
    with app.app_context():
        _reset()
        freeze(T0)
        try:
            world = World(T0)
            # Something to pay out and to spend from the first step (random lists rarely build it up).
            for i, amount in enumerate(start):
                _apply(world, ("earn", amount, False, i % 3))
                _apply(world, ("credit", amount))
            for op in sequence:
                _apply(world, op)
                _check(world)
        finally:
            freeze(None)
            db.session.rollback()
