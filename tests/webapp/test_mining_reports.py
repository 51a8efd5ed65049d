"""Mining reports within reason, over the worker API: only while mining is enabled, periods that never
overlap nor begin before mining was switched on, a hashrate capped by the worker's GPUs, earnings the
portal computes from the operator's rate table (`pictor-portal mining-rates`), booked as estimates."""

from datetime import timedelta

import pytest

from tests.conftest import T0
from tests.webapp.dispatch_factories import make_worker
from webapp.extensions import db
from webapp.models import LedgerEntry, LedgerKind, MiningReport, Worker, WorkerDailyStat
from webapp.services import ledger, mining

API = "/api/v1"
POOL = "stratum+tcp://etc.example.org:4444"
RATE = {"coin": "ETC", "usd_per_mh_day": "0.0100", "max_mh_per_gpu": 130}  # 130 MH/s: etchash on a fast card
GPU = {"name": "NVIDIA GeForce RTX 3090", "memory_mb": 24576}


@pytest.fixture
def net(any_app, clock):
    app = any_app
    client = app.test_client()
    with app.app_context():
        mining.set_rate(**RATE)
        worker_id, token = make_worker(name="rig")
        worker = db.session.get(Worker, worker_id)
        worker.gpus = [GPU, GPU]
        db.session.commit()

    class Net:
        pass
    n = Net()
    n.app, n.client, n.clock, n.worker_id = app, client, clock, worker_id

    def call(method, path, **kwargs):
        return getattr(client, method)(API + path, headers={"Authorization": f"Bearer {token}"}, **kwargs)

    def report(period=600, hashrate=100e6, **extra):
        return call("post", "/worker/mining/report", json={"coin": "ETC", "pool": POOL, "hashrate": hashrate,
                                                          "period_seconds": period, **extra})

    def enable(on=True):
        config = {"enabled": on, "pool": POOL, "coin": "ETC", "wallet": "0x" + "ab" * 20}
        assert call("put", "/worker/settings", json={"mining_config": config}).status_code == 200
    n.call, n.report, n.enable = call, report, enable
    return n


def test_nothing_is_accepted_while_mining_is_off(net):
    refused = net.report()
    assert refused.status_code == 409 and refused.get_json()["error"] == "mining_disabled"
    net.enable()
    net.clock.advance(seconds=600)
    assert net.report().status_code == 201
    net.enable(False)
    net.clock.advance(seconds=600)
    assert net.report().get_json()["error"] == "mining_disabled"


def test_the_portal_computes_the_estimate_and_ignores_the_apps_figure(net):
    net.enable()
    net.clock.advance(seconds=3600)
    answer = net.report(period=3600, hashrate=100e6, earnings="999.00", shares_accepted=41, shares_rejected=1)
    body = answer.get_json()
    assert answer.status_code == 201, body
    # 100 MH/s for an hour at $0.01 per MH/s per day: 100 x 1/24 x 0.01 = $0.041666
    assert body["earnings"] == "0.041666" and body["estimate"] is True
    assert (body["period_seconds"], body["shares_accepted"], body["shares_rejected"]) == (3600, 41, 1)
    with net.app.app_context():
        entry = db.session.execute(db.select(LedgerEntry)).scalar_one()
        assert (entry.kind, entry.amount_micros) == (LedgerKind.MINING, 41_666) and "estimate" in entry.memo
        day = db.session.get(WorkerDailyStat, (net.worker_id, "2024-05-10"))
        assert day.mining_earnings_micros == 41_666  # what the "Earnings by Mining" chart reads
        assert ledger.worker_earnings(net.worker_id) == 0  # apart from task earnings


def test_a_hashrate_beyond_what_the_gpus_can_do_is_counted_at_the_cap(net):
    net.enable()
    net.clock.advance(seconds=86400)
    body = net.report(period=86400, hashrate=1e15).get_json()
    # Two GPUs at most 130 MH/s each: 260 MH/s for a day at $0.01 = $2.60, not millions.
    assert (body["hashrate"], body["hashrate_reported"], body["earnings"]) == (260e6, 1e15, "2.600000")


def test_a_worker_without_a_gpu_or_a_coin_without_a_rate_earns_nothing(net):
    net.enable()
    net.clock.advance(seconds=600)
    assert net.report(coin="XMR").get_json()["error"] == "unknown_coin"
    with net.app.app_context():
        db.session.get(Worker, net.worker_id).gpus = []
        db.session.commit()
    assert net.report().get_json()["error"] == "no_gpu"
    with net.app.app_context():
        assert db.session.execute(db.select(db.func.count(MiningReport.id))).scalar_one() == 0


def test_periods_never_overlap_nor_begin_before_mining_was_enabled(net):
    net.enable()  # at T0
    net.clock.advance(seconds=600)
    before = net.report(period=3600)  # claims 50 minutes before mining was on
    assert before.status_code == 409 and before.get_json()["error"] == "overlapping_period"
    assert net.report(period=600).status_code == 201
    again = net.report(period=600)  # the same ten minutes, sent twice
    assert again.status_code == 409 and again.get_json()["error"] == "overlapping_period"
    net.clock.advance(seconds=600)
    # 20 s of overlap (a report sent late) is trimmed, not refused: 600 s counted, not 620.
    trimmed = net.report(period=620).get_json()
    assert trimmed["period_seconds"] == 600 and trimmed["period_start"] == (T0 + timedelta(seconds=600)).isoformat()
    net.clock.advance(seconds=600)
    assert net.report(period=601 + mining.OVERLAP_TOLERANCE_SECONDS).status_code == 409
    # Reports fired as fast as possible add up to the wall time, never more.
    for _ in range(5):
        net.report(period=3600)
    with net.app.app_context():
        counted = db.session.execute(db.select(db.func.sum(MiningReport.period_seconds))).scalar_one()
    assert counted <= (net.clock.now - T0).total_seconds() == 1800


@pytest.mark.parametrize("bad", [{"hashrate": "fast"}, {"hashrate": -1}, {"period_seconds": 0},
                                 {"period_seconds": 86401}, {"coin": ""}, {"shares_accepted": -1},
                                 {"shares_rejected": 1.5}, {"pool": "a\nb"}])
def test_malformed_reports_get_a_clear_400(net, bad):
    net.enable()
    net.clock.advance(seconds=600)
    response = net.report(**bad)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_mining_report"


def test_the_operator_sets_the_rate_table_from_the_command_line(net):
    runner = net.app.test_cli_runner()
    done = runner.invoke(args=["mining-rates", "set", "rvn", "--usd-per-mh-day", "0.0300",
                                      "--max-mh-per-gpu", "60"])
    assert done.exit_code == 0, done.output
    listed = runner.invoke(args=["mining-rates", "list"]).output
    assert "RVN\t0.030000 USD per MH/s per day\tat most 60 MH/s per GPU" in listed and "ETC" in listed
    bad = runner.invoke(args=["mining-rates", "set", "RVN", "--usd-per-mh-day", "lots", "--max-mh-per-gpu", "1"])
    assert bad.exit_code != 0 and "not a decimal amount" in bad.output
    assert runner.invoke(args=["mining-rates", "remove", "ETC"]).exit_code == 0
    net.enable()
    net.clock.advance(seconds=600)
    assert net.report().get_json()["error"] == "unknown_coin"


def test_mining_switched_on_before_the_portal_watched_counts_nothing_before_now(net):
    """A worker whose mining was on before its switch-on time was recorded (an older portal): a report
    of a whole day is refused, never credited for time the portal did not see."""
    with net.app.app_context():
        worker = db.session.get(Worker, net.worker_id)
        worker.mining_config = {"enabled": True, "pool": POOL, "coin": "ETC", "wallet": "0x" + "ab" * 20}
        worker.mining_enabled_at = None
        db.session.commit()
    net.clock.advance(seconds=86400)
    refused = net.report(period=86400)
    assert refused.status_code == 409 and refused.get_json()["error"] == "overlapping_period"


def test_the_apps_settings_carry_the_portals_mining_estimate_for_today_and_the_week(net):
    """The Mining tab shows these; they are sums of booked reports, never the app's own figures."""
    net.enable()
    net.clock.advance(seconds=3600)
    assert net.report(period=3600, hashrate=100e6, earnings="999.00").status_code == 201
    net.clock.advance(days=2)
    net.clock.advance(seconds=3600)
    assert net.report(period=3600, hashrate=50e6).status_code == 201
    estimate = net.call("get", "/worker/settings").get_json()["mining_estimate"]
    assert (estimate["today"], estimate["last_7_days"]) == ("0.020833", "0.062499")
    assert estimate["estimate"] is True and "Estimated by the portal" in estimate["explanation"]
    assert "0.010000 USD per MH/s per day" in estimate["explanation"]
