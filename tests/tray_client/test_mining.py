"""Mining: the adapters' argv and stats parsing (recorded answers from the miners' documentation), the
untrusted stats API, the report queue, and the supervisor driving a fake T-Rex (tests/tray_client/
fake_miner.py) through idle, compute pauses, crashes with back-off and giving up."""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tray_client.api import PortalError, PortalUnreachable
from tray_client.mining import adapters as ad
from tray_client.mining.reports import Period, ReportQueue
from tray_client.mining.settings import load_settings
from tray_client.mining.supervisor import MinerStatus, MiningSupervisor

DATA = Path(__file__).parent / "data"
FAKE_MINER = Path(__file__).parent / "fake_miner.py"
GPU = {"name": "NVIDIA GeForce RTX 3060 (fake)", "memory_mb": 12288}


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def fake_trex(folder: Path) -> Path:
    """An executable that is the fake miner, as a provider's t-rex binary would be."""
    path = folder / "t-rex"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_MINER} \"$@\"\n")
    path.chmod(0o755)
    return path


class Portal:
    """The portal's side of the supervisor (settings and reports): the network boundary, recorded."""

    def __init__(self, extra: str = "", enabled: bool = True):
        self.config = {"pool": "stratum+tcp://etc.example.org:4444", "coin": "ETC", "wallet": "0xabc123",
                       "extra": extra, "enabled": enabled}
        self.reports: list[dict] = []
        self.down = False
        self.refuse: PortalError | None = None
        self.slow = 0.0  # seconds each report takes to answer
        self.sending = threading.Event()

    def settings(self):
        return {"name": "rig-1", "mining_config": self.config,
                "mining_estimate": {"today": "0.012000", "last_7_days": "0.080000",
                                    "explanation": "Estimated by the portal from your hashrate."}}

    def mining_report(self, body):
        self.sending.set()
        time.sleep(self.slow)
        if self.down:
            raise PortalUnreachable("connection refused")
        if self.refuse:
            raise self.refuse
        self.reports.append(body)
        return {"id": len(self.reports), "earnings": "0.000100", "period_seconds": body["period_seconds"]}


def supervisor(tmp_path, portal, port, **options) -> MiningSupervisor:
    settings = load_settings({"miner": "trex", "path": str(fake_trex(tmp_path)), "api_port": port,
                              **options.pop("settings", {})})
    sup = MiningSupervisor(portal, settings, tmp_path / "data", gpus=options.pop("gpus", lambda: [GPU]),
                           poll_s=0.1, settings_refresh_s=0.2, backoff=(0.3, 2.0), max_crashes=3,
                           stop_grace=1.0, resume_delay_s=options.pop("resume_delay_s", 0.0), **options)
    sup.start()
    return sup


def starts(tmp_path) -> list[list[str]]:
    log = tmp_path / "data" / "mining" / "fake_miner.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def port():
    from tests.tray_client.portal_fixture import free_port
    return free_port()


# --- adapters --------------------------------------------------------------------------------------

def test_trex_reads_its_documented_summary():
    stats = ad.TREX.parse(json.loads((DATA / "trex_summary.json").read_text()))
    assert stats.hashrate == 4529054 and stats.accepted == 6 and stats.rejected == 0
    assert stats.uptime_s == 108 and stats.temperature == 80 and stats.power == 89


def test_lolminer_reads_both_documented_shapes():
    old = ad.LOLMINER.parse(json.loads((DATA / "lolminer_126.json").read_text()))
    assert old.hashrate == pytest.approx(91.55e6) and old.accepted == 35 and old.rejected == 0
    assert old.temperature == 47 and old.power == pytest.approx(219.857) and old.uptime_s == 1560
    new = ad.LOLMINER.parse({"Session": {"Uptime": 60}, "Algorithms": [{
        "Algorithm": "Etchash", "Performance_Unit": "Mh/s", "Performance_Factor": 1000000, "Total_Performance": 60.5,
        "Total_Accepted": 9, "Total_Rejected": 1, "Worker_Performance": [60.5]}],
        "Workers": [{"Index": 0, "Power": 120.0, "Core_Temp": 61}]})
    assert new.hashrate == pytest.approx(60.5e6) and (new.accepted, new.rejected) == (9, 1)
    assert new.gpus[0].hashrate == pytest.approx(60.5e6) and new.temperature == 61 and new.power == 120


def test_stats_answers_are_untrusted():
    with pytest.raises(ad.StatsError):
        ad.TREX.parse({"hashrate": True})  # a bool is not a number
    with pytest.raises(ad.StatsError):
        ad.TREX.parse({"hashrate": float("nan")})
    with pytest.raises(ad.StatsError):
        ad.TREX.parse([1, 2])
    with pytest.raises(ad.StatsError):
        ad.LOLMINER.parse({"Session": {"Performance_Summary": 5, "Performance_Unit": "<script>"}})
    odd = ad.TREX.parse({"hashrate": 5e6, "accepted_count": -3, "rejected_count": "7", "uptime": 1.5,
                         "gpus": [{"temperature": 1e9, "power": "lots"}, "not a gpu", {"temperature": 70}]})
    assert odd.accepted is None and odd.rejected is None and odd.uptime_s is None
    assert odd.temperature == 70 and odd.power is None


def test_stats_api_answer_is_bounded(port):
    class Huge(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"[" * (ad.MAX_STATS_BYTES + 10))

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ad.StatsError, match="more than"):
            ad.fetch_stats(ad.TREX, port)
    finally:
        server.shutdown()
    with pytest.raises(ad.StatsError, match="did not answer"):
        ad.fetch_stats(ad.TREX, port)  # nobody listens now


def test_argv_is_built_from_the_config_and_never_a_shell():
    job = ad.MiningJob(pool="etc.example.org:4444", coin="ETC", wallet="0xabc", worker="rig1",
                       algorithm="etchash", api_port=4067, devices=(1,),
                       extra=tuple(ad.TREX.check_extra(ad.split_extra("-i 21 --low-load 1 'a b'"))))
    argv = ad.TREX.argv("/opt/t-rex", job)
    assert argv[:9] == ["/opt/t-rex", "-a", "etchash", "-o", "stratum+tcp://etc.example.org:4444", "-u", "0xabc",
                        "-p", "x"]
    assert argv[argv.index("--api-bind-http") + 1] == "127.0.0.1:4067" and argv[argv.index("-d") + 1] == "1"
    assert argv[-5:] == ["-i", "21", "--low-load", "1", "a b"]
    lol = ad.LOLMINER.argv("/opt/lolMiner", job)
    assert lol[lol.index("--pool") + 1] == "etc.example.org:4444" and lol[lol.index("--apihost") + 1] == "127.0.0.1"
    assert lol[lol.index("--worker") + 1] == "rig1" and lol[lol.index("--devices") + 1] == "1"


@pytest.mark.parametrize("adapter,extra", [
    (ad.TREX, "--script-start /tmp/evil.sh"), (ad.TREX, "--api-bind-http=0.0.0.0:4067"), (ad.TREX, "-d 0,1"),
    (ad.TREX, "-c /etc/passwd"), (ad.TREX, "--watchdog-exit-mode 1:1:r"),
    (ad.LOLMINER, "--watchdog script --watchdogscript /tmp/evil.sh"), (ad.LOLMINER, "--apihost 0.0.0.0"),
    (ad.LOLMINER, "--user someone-else"),
])
def test_extra_config_cannot_run_programs_or_move_the_api(adapter, extra):
    """The extra config comes through the portal: it must not choose what runs or where the API listens."""
    with pytest.raises(ad.MinerConfigError):
        adapter.check_extra(ad.split_extra(extra))


def test_custom_command_placeholders_are_per_argument():
    custom = ad.build_adapter("custom", ("/opt/miner", "--url={pool}", "--user", "{user}", "{extra}",
                                         "--api", "127.0.0.1:{api_port}", "{{literal}}"), "trex")
    job = ad.MiningJob(pool="stratum+tcp://p.example:1", coin="ETC", wallet="0xw", worker="rig 1",
                       algorithm="etchash", api_port=4100, extra=("--x", "y z"))
    assert custom.argv("ignored", job) == ["/opt/miner", "--url=stratum+tcp://p.example:1", "--user", "0xw.rig 1",
                                           "--x", "y z", "--api", "127.0.0.1:4100", "{literal}"]
    with pytest.raises(ad.MinerConfigError, match="unknown placeholder"):
        ad.build_adapter("custom", ("/opt/miner", "{token}"), "trex")
    with pytest.raises(ad.MinerConfigError, match="unmatched"):
        ad.build_adapter("custom", ("/opt/miner", "{pool"), "trex")


def test_local_settings_are_checked():
    s = load_settings({"miner": "nbminer", "api_port": 80, "idle_minutes": 0, "argv": "sh -c x", "path": "/opt/t"})
    assert s.miner is None and s.api_port is None and s.idle_minutes == 5 and s.argv == ()
    assert s.path == "/opt/t" and len(s.problems) == 4


# --- the report queue --------------------------------------------------------------------------------

def test_reports_are_sent_once_merged_while_the_portal_is_down_and_dropped_when_refused(tmp_path):
    portal, queue = Portal(), ReportQueue(tmp_path / "q.sqlite3")
    portal.down = True
    queue.put(Period("ETC", "pool:1", 10e6, 60, 5, 0))
    assert queue.flush(portal).blocked is not None
    queue.put(Period("ETC", "pool:1", 20e6, 120, 7, 1))  # merged: one report for both
    assert len(queue) == 1
    portal.down = False
    assert len(queue.flush(portal).accepted) == 1
    assert portal.reports == [{"coin": "ETC", "pool": "pool:1", "hashrate": pytest.approx(50e6 / 3),
                               "period_seconds": 180, "shares_accepted": 12, "shares_rejected": 1}]
    assert len(queue) == 0 and queue.flush(portal).accepted == []  # never sent twice
    portal.refuse = PortalError(409, "overlapping_period", "This period was reported already.")
    queue.put(Period("ETC", "pool:1", 1e6, 30))
    delivery = queue.flush(portal)
    assert delivery.refused == ["This period was reported already."] and len(queue) == 0
    queue.close()
    assert len(ReportQueue(tmp_path / "q.sqlite3")) == 0


# --- the supervisor with the fake miner ---------------------------------------------------------------

def test_mines_when_idle_pauses_for_compute_within_5s_and_resumes(tmp_path, port):
    portal, idle = Portal(), {"s": 0.0}
    sup = supervisor(tmp_path, portal, port, report_seconds=1, idle_probe=lambda: idle["s"], idle_check_s=0.1,
                     settings={"idle_only": True, "idle_minutes": 1})
    try:
        wait_for(lambda: sup.snapshot().status == MinerStatus.WAITING_IDLE, what="waiting for idle")
        time.sleep(0.4)
        assert starts(tmp_path) == []  # someone uses the computer: no miner
        idle["s"] = 120.0
        state = wait_for(lambda: sup.snapshot() if sup.snapshot().status == MinerStatus.RUNNING else None,
                         what="mining")
        assert state.hashrate == 4529054 and state.temperature == 80 and state.power == 89
        pid, child = int(starts(tmp_path)[0][1]), int(starts(tmp_path)[0][2])
        assert "--api-bind-http" in starts(tmp_path)[0] and f"127.0.0.1:{port}" in starts(tmp_path)[0]
        wait_for(lambda: portal.reports, what="a report")
        took = sup.compute_started(0)
        assert took < 5.0 and not alive(pid) and not alive(child)  # the whole tree, before the task runs
        assert sup.snapshot().status == MinerStatus.PAUSED_COMPUTE
        time.sleep(0.4)
        assert len(starts(tmp_path)) == 1  # stays off while the task runs
        sup.resume_delay_s = 0.6
        sup.compute_ended(0)
        time.sleep(0.3)
        assert len(starts(tmp_path)) == 1  # back-to-back tasks do not restart the miner for a moment
        wait_for(lambda: sup.snapshot().status == MinerStatus.RUNNING and len(starts(tmp_path)) == 2, what="resume")
        idle["s"] = 0.0
        wait_for(lambda: sup.snapshot().status == MinerStatus.WAITING_IDLE, what="user back")
        assert not alive(int(starts(tmp_path)[1][1]))
    finally:
        sup.stop()
    assert portal.reports and all(r["hashrate"] == pytest.approx(4529054) for r in portal.reports)
    assert sum(r.get("shares_accepted", 0) for r in portal.reports) > 0


def test_a_crashing_miner_is_restarted_with_back_off_then_given_up(tmp_path, port):
    portal = Portal(extra="--time-limit 0.4")  # a real T-Rex option; the fake exits with code 1 then
    sup = supervisor(tmp_path, portal, port)
    try:
        state = wait_for(lambda: sup.snapshot() if sup.snapshot().status == MinerStatus.STOPPED else None,
                         timeout=20, what="giving up")
        assert "3 times in a row" in state.reason and "exit code 1" in state.reason
        assert any("simulated crash" in line for line in state.log_tail)
        assert len(starts(tmp_path)) == 3
        events = list(sup.events)
        waits = [b[0] - a[0] for a, b in zip(events, events[1:]) if a[1] == "crash" and b[1] == "start"]
        assert len(waits) == 2 and waits[0] >= 0.3 and waits[1] >= 0.6  # back-off: 0.3 s, then doubled
        time.sleep(1.0)
        assert len(starts(tmp_path)) == 3  # given up: no more starts
        portal.config = {**portal.config, "extra": ""}
        sup.retry()
        wait_for(lambda: sup.snapshot().status == MinerStatus.RUNNING, what="running after Try again")
    finally:
        sup.stop()


def test_no_mining_without_an_nvidia_gpu_or_when_off(tmp_path, port):
    portal = Portal(enabled=False)
    sup = supervisor(tmp_path, portal, port, gpus=lambda: [])
    try:
        wait_for(lambda: sup.snapshot().status == MinerStatus.OFF, what="off")
        portal.config = {**portal.config, "enabled": True}
        wait_for(lambda: sup.snapshot().status == MinerStatus.UNAVAILABLE, what="no GPU")
        assert "NVIDIA" in sup.snapshot().reason and starts(tmp_path) == []
    finally:
        sup.stop()


def test_a_slow_portal_never_delays_giving_the_gpu_back(tmp_path, port):
    """A report on its way (the portal answers in 4 s) must not hold up a compute task's GPU."""
    portal = Portal()
    sup = supervisor(tmp_path, portal, port, report_seconds=1)
    try:
        wait_for(lambda: sup.snapshot().status == MinerStatus.RUNNING, what="mining")
        portal.slow = 4.0
        portal.sending.clear()
        wait_for(portal.sending.is_set, what="a report on its way")
        took = sup.compute_started(0)
        assert took < 2.5 and sup.snapshot().status == MinerStatus.PAUSED_COMPUTE
        portal.slow = 0.0
        sup.compute_ended(0)
    finally:
        sup.stop()
    assert portal.reports  # the slow report went through in the end, once


def test_a_hostile_portal_cannot_slip_an_option_in_through_the_pool_or_wallet(tmp_path, port):
    portal = Portal()
    portal.config = {**portal.config, "wallet": "--script-start=/tmp/evil.sh"}
    sup = supervisor(tmp_path, portal, port)
    try:
        state = wait_for(lambda: sup.snapshot() if sup.snapshot().status == MinerStatus.UNAVAILABLE else None,
                         what="refused")
        assert "wallet" in state.reason
        portal.config = {**portal.config, "wallet": "0xabc", "pool": "-o evil:1"}
        wait_for(lambda: "pool" in sup.snapshot().reason, what="pool refused")
        time.sleep(0.3)
        assert starts(tmp_path) == []
    finally:
        sup.stop()


def test_the_mining_tab_keeps_the_miner_program_on_this_computer(tmp_path):
    """The program that mines is chosen in the tab and saved in worker.json only; a wrong one is a message."""
    from tray_client import config
    from tray_client.engine import Engine
    from tray_client.mining.settings import section
    from tray_client.ui.viewmodel import Controller, InvalidInput, validate_miner
    program = fake_trex(tmp_path)
    assert validate_miner("T-Rex", str(program), False) == ("trex", str(program))
    assert validate_miner("", "", False) == (None, None)
    with pytest.raises(InvalidInput, match="not a file"):
        validate_miner("lolMiner", str(tmp_path / "nothing"), False)
    with pytest.raises(InvalidInput, match="argv"):
        validate_miner("Custom command", "", False)
    cfg = config.load(tmp_path / "worker.json", tmp_path / "data")
    cfg.server_url, cfg.token, cfg.worker_id = "http://127.0.0.1:9", "token", 1
    cfg.save()
    controller = Controller(Engine(cfg), cfg)
    assert controller.save_mining("", "", "", "", False, miner="lolMiner", miner_path="/no/such/miner")
    assert section(config.load(tmp_path / "worker.json", tmp_path / "data")) is None  # nothing saved
    assert controller.save_mining("etc.example.org:4444", "ETC", "0xabc", "", False, miner="T-Rex",
                                  miner_path=str(program)) is None
    saved = section(config.load(tmp_path / "worker.json", tmp_path / "data"))
    assert (saved["miner"], saved["path"]) == ("trex", str(program))
    assert controller.mining_program() == ("T-Rex", str(program))
