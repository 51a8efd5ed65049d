"""`pictor-worker`: pair, run (headless or once), bench, speedtest, status, gui and service."""

from __future__ import annotations

import functools
import json
import logging
import logging.handlers
import signal
import sqlite3
import sys
import time
from pathlib import Path

import click

from . import __version__, pairing
from . import config as config_mod
from .api import PortalClient, PortalError, PortalUnreachable
from .untrusted import SafeFormatter, printable

# Exit codes shared with Engine.run(): 0 ok, 1 task failed (--once), 2 usage or configuration,
# 3 portal unreachable, 4 refused by the portal (token or pairing code), 5 already running.
from .engine import EXIT_ALREADY_RUNNING, EXIT_AUTH, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE  # noqa: F401
from .engine import MESSAGE_STOPPED, EngineState

log = logging.getLogger("tray_client")


def _common(command):
    """--config and --data-dir on every subcommand (they may also come before the subcommand)."""
    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="The config file this worker uses (server URL and token) "
                       "[default: worker.json in --data-dir, else your user config folder]")
    @click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Folder for everything of this worker: its config, the input cache, queued "
                       "updates, logs and work files")
    @click.pass_context
    @functools.wraps(command)
    def wrapper(ctx, config_path, data_dir, **kwargs):
        parent = ctx.obj or {}
        return command(config_path=config_path or parent.get("config_path"),
                       data_dir=data_dir or parent.get("data_dir"), **kwargs)
    return wrapper


def _load(config_path, data_dir) -> config_mod.WorkerConfig:
    try:
        cfg = config_mod.load(config_path, data_dir)
    except config_mod.ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    for line in cfg.set_aside:  # said first: a config set aside is why the worker is not paired now
        click.echo(f"Warning: {printable(line)}", err=True)
    return cfg


def _fail(message: str, code: int):
    click.echo(f"Error: {printable(message)}", err=True)
    sys.exit(code)



def _paired(cfg: config_mod.WorkerConfig) -> config_mod.WorkerConfig:
    if not cfg.paired:
        _fail(f"this worker is not paired ({cfg.path} has no credentials): run "
              "`pictor-worker pair CODE --server URL` or `pictor-worker pair --import FILE`", EXIT_USAGE)
    return cfg


def _setup_logging(cfg: config_mod.WorkerConfig | None, to_stdout: bool, verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_pictor", False):  # ours from an earlier call; leave others' alone
            root.removeHandler(handler)
            handler.close()
    fmt = SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if to_stdout:
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(fmt)
        handler._pictor = True
        root.addHandler(handler)
    else:
        errors = logging.StreamHandler(sys.stderr)
        errors.setLevel(logging.WARNING)
        errors.setFormatter(fmt)
        errors._pictor = True
        root.addHandler(errors)
    if cfg is not None:
        cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(cfg.logs_dir / "worker.log", maxBytes=5 * 2**20,
                                                            backupCount=3, encoding="utf-8")
        file_handler.setFormatter(fmt)
        file_handler._pictor = True
        root.addHandler(file_handler)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _teardown_logging() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_pictor", False):
            root.removeHandler(handler)
            handler.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pictor-worker")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), hidden=True)
@click.pass_context
def main(ctx, config_path, data_dir):
    """Pictor Worker App: earn by rendering on this machine's idle CPU/GPU."""
    ctx.obj = {"config_path": config_path, "data_dir": data_dir}


# --- pair ---------------------------------------------------------------------------------------

@main.command()
@click.argument("code", required=False)
@click.option("--server", help="The portal's address, e.g. https://portal.example.com "
                               "[default: the config's, else $PICTOR_SERVER_URL]")
@click.option("--import", "import_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Import the config file downloaded from the portal instead of using a code")
@_common
def pair(config_path, data_dir, code, server, import_path):
    """Pair with the portal: `pair CODE --server URL`, or `pair --import FILE` to import the config
    file downloaded from the portal. The credentials go to --config FILE if given, else into
    --data-dir, else your user config folder (where `run` looks with the same options)."""
    if import_path is None and not code and config_path and Path(config_path).exists():
        # The old spelling: `pair --config FILE` imported FILE. It still does, and says the new one.
        click.echo("Note: `pair --config FILE` is now `pair --import FILE` (--config names the file "
                   "the worker uses, as in `run --config`).", err=True)
        import_path, config_path = Path(config_path), None
    if code and import_path:
        _fail("give a pairing code or --import FILE, not both", EXIT_USAGE)
    if code:
        cfg = _load(config_path, data_dir)
        server = server or pairing.default_server_url(cfg)
        if not server:
            _fail("give the portal's address: pictor-worker pair CODE --server https://...", EXIT_USAGE)
        try:
            cfg = pairing.pair_with_code(cfg, server, code)
        except pairing.PairingError as exc:
            _fail(f"pairing refused: {exc}" if exc.exit_code == EXIT_AUTH else str(exc), exc.exit_code)
        click.echo(f"Paired as worker {cfg.worker_id} with {cfg.server_url}; credentials saved to {cfg.path}")
        return
    if not import_path:
        _fail("give a pairing code (pair CODE --server URL) or a config file (pair --import FILE)", EXIT_USAGE)
    # Where `run` with the same options looks: --config, else inside --data-dir, else the user's folder.
    target = _load(config_path, data_dir)
    try:
        target = pairing.import_config_file(target, import_path)
    except pairing.PairingError as exc:
        _fail(str(exc), exc.exit_code)
    click.echo(f"Imported worker {target.worker_id} of {target.server_url} into {target.path}")


# --- run ------------------------------------------------------------------------------------------

@main.command()
@click.option("--headless", is_flag=True, help="No desktop UI; log to stdout (for services and farms)")
@click.option("--once", is_flag=True, help="Process at most one task, then exit (tests, cron)")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging")
@click.option("--devices", metavar="LIST", help="The devices to share, e.g. gpu0,gpu1,cpu (one task each at a "
              "time; saved in the config); default: every GPU, the CPU only without one")
@_common
def run(config_path, data_dir, headless, once, verbose, devices):
    """Connect to the portal and work: claim tasks, render, upload, earn."""
    from .engine import Engine, EngineError
    cfg = _paired(_load(config_path, data_dir))
    if devices is not None:
        from .devices import parse_selection
        try:
            cfg.settings["devices"] = parse_selection(devices)
        except ValueError as exc:
            _fail(f"--devices: {exc}", EXIT_USAGE)
        cfg.save()
    _setup_logging(cfg, to_stdout=headless, verbose=verbose)
    try:
        engine = Engine(cfg)
    except EngineError as exc:
        _fail(str(exc), exc.exit_code)
    signals = {"count": 0}

    def on_signal(signum, _frame):
        signals["count"] += 1
        log.info("signal %s: %s", signum, "stopping" if signals["count"] == 1 else "handing back now")
        engine.stop(hand_back=None if signals["count"] == 1 else True)

    previous = {}
    for name in ("SIGTERM", "SIGINT", "SIGBREAK", "SIGHUP"):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), on_signal)
    log.info("Pictor Worker %s starting (data in %s)", __version__, cfg.data_dir)
    miner = None if once else _start_mining(engine, cfg)
    try:
        code = engine.run(once=once)
    finally:
        if miner is not None:
            miner.stop()
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
        _teardown_logging()
    error = engine.snapshot().error
    if code and error:
        click.echo(f"Error: {error}", err=True)
    sys.exit(code)


def _start_mining(engine, cfg):
    """The miner's supervisor beside the engine (tray_client/mining/): it mines only while mining is on
    in the portal, the mining section of the config names a miner and no task holds the GPU."""
    from . import mining
    from .ui.system import idle_probe  # no toolkit: seconds since the last input, where measurable
    probe, reason = idle_probe()
    return mining.attach(engine, cfg, idle_probe=probe, idle_reason=reason)


# --- bench and speedtest -----------------------------------------------------------------------------

@main.command()
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 10), help="Renders; the fastest counts")
@click.option("--no-post", is_flag=True, help="Only print the score; do not send it to the portal")
@_common
def bench(config_path, data_dir, repeat, no_post):
    """Render the benchmark scene and report the Bench Score."""
    from . import bench as bench_mod, hardware
    cfg = _load(config_path, data_dir)
    _setup_logging(None, to_stdout=False, verbose=False)
    report = hardware.probe(cfg.data_dir, cfg.settings.get("blender_path"))
    backend = cfg.settings.get("gpu_backend") or hardware.suggested_gpu_backend(report)
    click.echo(f"Rendering the benchmark scene on {backend or 'the CPU'}...")
    try:
        outcome = bench_mod.run(cfg, backend, repeat)
    except bench_mod.BenchmarkError as exc:
        _fail(str(exc), 1)
    details = outcome["details"]
    click.echo(f"Bench Score: {outcome['score']} ({details['seconds']:.2f} s; reference "
               f"{details['reference_seconds']:.2f} s = 1000)")
    if no_post:
        return
    if not cfg.paired:
        click.echo("Not paired: the score was not sent (pair first, or use --no-post).", err=True)
        sys.exit(EXIT_USAGE)
    try:
        PortalClient(cfg.server_url, cfg.token).benchmark(outcome["score"], details)
    except PortalUnreachable as exc:
        _fail(str(exc), EXIT_UNREACHABLE)
    except PortalError as exc:
        _fail(f"the portal refused the score: {exc.message}", EXIT_AUTH if exc.status in (401, 403) else 1)
    click.echo("Sent to the portal.")


@main.command()
@_common
def speedtest(config_path, data_dir):
    """Measure download and upload speed to the portal and report them."""
    from . import speedtest as speed
    cfg = _paired(_load(config_path, data_dir))
    try:
        result = speed.run(PortalClient(cfg.server_url, cfg.token))
    except PortalUnreachable as exc:
        _fail(str(exc), EXIT_UNREACHABLE)
    except PortalError as exc:
        _fail(exc.message, EXIT_AUTH if exc.status in (401, 403) else 1)
    click.echo(f"Download {result['download_mbps']:.1f} Mbit/s, upload {result['upload_mbps']:.1f} Mbit/s")


# --- status and gui -------------------------------------------------------------------------------------

@main.command()
@_common
def status(config_path, data_dir):
    """Show the pairing, what the worker is doing, the cache size and queued updates."""
    import psutil
    from .cache import InputCache
    from .outbox import Outbox
    cfg = _load(config_path, data_dir)
    click.echo(f"Config:        {cfg.path}")
    click.echo(f"Server:        {cfg.server_url or 'not paired'}")
    click.echo(f"Worker ID:     {cfg.worker_id if cfg.worker_id is not None else '-'}")
    state = "not running"
    try:
        doc = json.loads((cfg.data_dir / "status.json").read_text())
        snap = EngineState.from_dict(doc)  # the engine wrote it with to_dict(), plus pid and updated_at
        if psutil.pid_exists(int(doc.get("pid", -1))) and snap.message != MESSAGE_STOPPED:
            state = str(snap.state)
            if snap.task_id is not None:
                state += f" (task {snap.task_id} of job {snap.job_id}, {snap.progress:.0%})"
            age = time.time() - float(doc.get("updated_at", 0))
            state += f", updated {int(age)} s ago"
            if snap.error:
                state += f"; error: {snap.error}"
            elif snap.note:
                state += f"; note: {snap.note}"
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    click.echo(f"State:         {printable(state)}")
    click.echo(f"Data folder:   {cfg.data_dir}")
    size = InputCache(cfg.cache_dir, int(cfg.settings["cache_max_bytes"])).total_bytes() \
        if cfg.cache_dir.exists() else 0
    click.echo(f"Cache:         {size / 2**20:.1f} MiB of {int(cfg.settings['cache_max_bytes']) / 2**30:.1f} GiB")
    pending = 0
    if cfg.outbox_path.exists():
        try:
            outbox = Outbox(cfg.outbox_path)
        except sqlite3.DatabaseError:  # the engine sets it aside when it starts; status only reads
            pending = "an unreadable file:"
        else:
            pending = len(outbox)
            outbox.close()
    click.echo(f"Outbox:        {pending} update(s) waiting for the portal")


@main.command()
@_common
def gui(config_path, data_dir):
    """Open the tray icon and window (the desktop UI)."""
    import importlib
    import importlib.util
    if importlib.util.find_spec("tray_client.ui") is None:
        _fail("the desktop UI is not installed in this copy of the Worker App; use "
              "`pictor-worker run --headless`", EXIT_USAGE)
    try:
        ui = importlib.import_module("tray_client.ui")
    except Exception as exc:  # no Tk, no display: pystray raises non-ImportErrors
        _fail(f"the desktop UI cannot start here: {exc}", EXIT_USAGE)
    sys.exit(ui.main(config_path=config_path, data_dir=data_dir) or 0)


# --- service -------------------------------------------------------------------------------------------

@main.group()
def service():
    """Start this worker with the machine: a systemd unit on Linux (a user unit unless root), an
    autostart entry on Windows."""


def _service_for(config_path, data_dir, system: bool | None = None, run_as: str | None = None):
    from . import service as service_mod
    cfg = _load(config_path, data_dir)
    try:
        return cfg, service_mod.for_this_platform(cfg.data_dir, cfg.path, user_unit=None if system is None
                                                  else not system, run_as=run_as)
    except service_mod.ServiceError as exc:
        _fail(str(exc), EXIT_USAGE)


@service.command("install")
@click.option("--system", "system", flag_value=True, default=None,
              help="A system unit in /etc/systemd/system (needs root) [default when root]")
@click.option("--user", "system", flag_value=False, help="A user unit in ~/.config/systemd/user [default otherwise]")
@click.option("--run-as", metavar="USER", help="For a system unit: the account the worker runs as")
@click.option("--no-start", is_flag=True, help="Enable it for the next boot or logon, do not start it now")
@_common
def service_install(config_path, data_dir, system, run_as, no_start):
    """Install and enable the service that runs `pictor-worker run --headless` with this worker's
    --data-dir and --config."""
    from . import service as service_mod
    cfg, svc = _service_for(config_path, data_dir, system, run_as)
    _paired(cfg)
    try:
        where = svc.install(start=not no_start)
    except service_mod.ServiceError as exc:
        _fail(str(exc), 1)
    except OSError as exc:
        _fail(f"cannot write the service entry: {exc}", 1)
    click.echo(f"Installed {where}; it runs: {' '.join(service_mod.worker_argv(cfg.data_dir, cfg.path))}")
    if isinstance(svc, service_mod.Systemd) and svc.user_unit:
        click.echo("A user unit runs while you are logged in; for boot without a login: "
                   "`loginctl enable-linger $USER`.")


@service.command("uninstall")
@click.option("--system", "system", flag_value=True, default=None, help="The system unit")
@click.option("--user", "system", flag_value=False, help="The user unit")
@_common
def service_uninstall(config_path, data_dir, system):
    """Stop the service and remove it."""
    from . import service as service_mod
    _cfg, svc = _service_for(config_path, data_dir, system)
    try:
        removed = svc.uninstall()
    except service_mod.ServiceError as exc:
        _fail(str(exc), 1)
    click.echo("Removed the service." if removed else "No service was installed for this worker.")


@service.command("status")
@click.option("--system", "system", flag_value=True, default=None, help="The system unit")
@click.option("--user", "system", flag_value=False, help="The user unit")
@_common
def service_status(config_path, data_dir, system):
    """Whether the service is installed, enabled and running."""
    from . import service as service_mod
    _cfg, svc = _service_for(config_path, data_dir, system)
    try:
        facts = svc.status()
    except service_mod.ServiceError as exc:
        _fail(str(exc), 1)
    for key, value in facts.items():
        click.echo(f"{key.capitalize() + ':':<14} {printable(value)}")


if __name__ == "__main__":  # pragma: no cover
    main()
