"""Pairing this computer with the portal, by pairing code (plus server URL) or by importing the config
file downloaded from the portal: the one implementation behind `pictor-worker pair` and the first-run
window, so both check, explain and save the same way.

Blocking and toolkit-free: the window calls it on a thread of its own. A failure is a PairingError whose
text tells the provider what to do and whose exit_code is the CLI's (2 usage, 3 unreachable, 4 refused)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from . import config as config_mod
from . import portal_stamp
from .api import PortalClient, PortalError, PortalUnreachable
from .engine import EXIT_AUTH, EXIT_UNREACHABLE, EXIT_USAGE

SERVER_FILE = "server_url.txt"  # an installer may leave the portal's address here, beside Python
# A person is waiting: answer within seconds, and never repeat a pairing request (a code works once, so
# a retry after a lost answer would only report the code as used).
TIMEOUT_S = (5.0, 20.0)
ATTEMPTS = 1


class PairingError(Exception):
    """Pairing did not work; str() tells the provider what to do, exit_code is the CLI's."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


def default_server_url(cfg: config_mod.WorkerConfig) -> str:
    """The portal to pair with when none is given: the config's, then $PICTOR_SERVER_URL, then
    server_url.txt beside Python (an administrator's), then the address the portal stamped on the
    downloaded installer (portal_stamp: untrusted, checked, and only ever shown in the form)."""
    if cfg.server_url:
        return cfg.server_url
    if os.environ.get("PICTOR_SERVER_URL"):
        return os.environ["PICTOR_SERVER_URL"].strip()
    folder = Path(sys.executable).parent
    try:
        text = (folder / SERVER_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or portal_stamp.read_stamp_file(folder)


def explain(exc: BaseException, server: str) -> str:
    """A portal or network failure in words a provider can act on."""
    if isinstance(exc, PortalUnreachable):
        return (f"Cannot reach {server}: {str(exc).split(': ', 1)[-1]}. Check the server address and "
                "your internet connection, then try again.")
    if isinstance(exc, PortalError):
        if exc.code == "invalid_code":
            return f"Wrong pairing code. {exc.message}"
        if exc.code == "expired_code":
            return f"Expired pairing code. {exc.message}"
        if exc.status == 429:
            return "Too many attempts: wait a minute, then try again."
        if exc.status in (401, 403):
            return f"The portal refused this config ({exc.message}): download a fresh one from the portal."
        if exc.status == 404 or exc.code == "bad_response":
            return f"{server} does not look like a Pictor portal: check the server address."
        return f"The portal said: {exc.message}"
    return str(exc)


def _refused(exc: PortalUnreachable | PortalError, server: str) -> PairingError:
    code = EXIT_UNREACHABLE if isinstance(exc, PortalUnreachable) else EXIT_AUTH
    return PairingError(explain(exc, server), code)


def pair_with_code(cfg: config_mod.WorkerConfig, server: str, code: str) -> config_mod.WorkerConfig:
    """Trade a pairing code for credentials and save them into cfg's file (owner-only)."""
    try:
        server = config_mod.normalize_server_url(server)
    except config_mod.ConfigError:
        raise PairingError("Type the server's full address, starting with https:// "
                           "(e.g. https://portal.example.com).") from None
    code = (code or "").strip()
    if not code:
        raise PairingError("Type the pairing code shown on the worker's page in the portal (like ABCD-EF23).")
    client = PortalClient(server, timeout=TIMEOUT_S, attempts=ATTEMPTS)
    try:
        doc = client.pair(code)
    except (PortalUnreachable, PortalError) as exc:
        raise _refused(exc, server) from None
    finally:
        client.close()
    # The portal may know itself by another address than the one we reached it at: keep ours.
    try:
        return config_mod.import_document({**doc, "server_url": server}, cfg, "the portal's answer")
    except config_mod.ConfigError as exc:
        raise PairingError(str(exc)) from None


def import_config_file(cfg: config_mod.WorkerConfig, source: Path) -> config_mod.WorkerConfig:
    """Check a downloaded config file against its portal, then save its credentials into cfg's file."""
    source = Path(source)
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
        fields = config_mod.parse_document(doc, source.name)
    except OSError as exc:
        raise PairingError(f"Cannot read {source}: {exc.strerror or exc}") from None
    except ValueError:
        raise PairingError(f"{source.name} is not a Pictor Worker config file (not JSON).") from None
    except config_mod.ConfigError as exc:
        raise PairingError(str(exc)) from None
    client = PortalClient(fields["server_url"], fields["token"], timeout=TIMEOUT_S, attempts=ATTEMPTS)
    try:
        client.settings()  # proves the token works before we rely on it
    except (PortalUnreachable, PortalError) as exc:
        raise _refused(exc, fields["server_url"]) from None
    finally:
        client.close()
    try:
        saved = config_mod.import_document(doc, cfg, source.name)
    except config_mod.ConfigError as exc:
        raise PairingError(str(exc)) from None
    if sys.platform != "win32" and source.resolve() != saved.path.resolve():
        # The downloaded copy holds the same token as the saved one: owner-only too.
        with contextlib.suppress(OSError):
            os.chmod(source, 0o600)
    return saved
