"""The Windows installer: built with NSIS on Linux, then installed, checked, upgraded and removed under wine.

The build runs wherever Debian's `nsis` is installed. The wine smoke test (Debian `wine wine64`, Xvfb,
xdotool, ImageMagick) takes a few minutes, so it runs only with PICTOR_WINE_SMOKE=1. It checks files
and registry entries rather than exit codes: an installer that cannot run exits 0 having done nothing.
The installer it runs is the one a provider gets: published on a real portal and downloaded from its
Download page (so stamped with the portal's address); the app it starts is paired by typing only the
code into its window.

The 32-bit installer cannot be built (no 32-bit embeddable CPython on a registry we reach: build.py
ARCHES), so only its wheel check runs; Debian's wine64 alone cannot run 32-bit programs either (that
needs `dpkg --add-architecture i386` and wine32:i386, 171 packages).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import tray_client
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "build" / "installer" / "work" / "stage" / "nsis"  # build.py's default work folder
ARTIFACTS = ROOT / "test-artifacts" / "installer"
VERSION = tray_client.__version__
CODE_FIELD = ("206", "166")  # the pairing form's code field, from the window's top left, at 96 dpi
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
UNINSTALL_KEY = r"Software\Microsoft\Windows\CurrentVersion\Uninstall\PictorWorker"


def load_build_script():
    spec = importlib.util.spec_from_file_location("installer_build", ROOT / "installer" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_script = load_build_script()


def machine_of(path: Path) -> str:
    with path.open("rb") as f:
        return build_script.pe_machine(f.read(4096))


@dataclass
class Built:
    exe: Path
    log: str


@pytest.fixture(scope="module")
def installer(tmp_path_factory) -> Built:
    if shutil.which("makensis") is None:
        missing("Debian's nsis (makensis) is not installed: apt-get install --no-install-recommends nsis")
    out = tmp_path_factory.mktemp("installer")
    proc = subprocess.run([sys.executable, str(ROOT / "installer" / "build.py"), "--out-dir", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    return Built(exe=out / f"PictorWorkerSetup-{VERSION}.exe", log=proc.stdout)


@pytest.mark.timeout(900)
def test_build_makes_a_64_bit_installer_with_python_tk_and_the_app(installer):
    exe = installer.exe
    assert exe.is_file()
    assert machine_of(exe) == "AMD64"  # Target amd64-unicode: 64-bit-only Windows runs it
    head = exe.read_bytes()[:1 << 20]
    assert b'requestedExecutionLevel level="asInvoker"' in head  # per-user: Windows asks for no admin rights
    size = exe.stat().st_size
    assert 8e6 < size < 80e6, f"{size} bytes"
    assert (exe.parent / f"{exe.name}.sha256").read_text().split()[0] == build_script.sha256_of(exe)
    assert "MB" in installer.log and "total" in installer.log  # size and build time are reported

    # What went into it, as staged for makensis.
    python = STAGE / "Python"
    assert machine_of(python / "python.exe") == "AMD64" and machine_of(python / "pythonw.exe") == "AMD64"
    pth = (python / "python311._pth").read_text()
    assert "..\\pkgs" in pth and "import site" in pth
    assert (python / "tkinter" / "__init__.py").is_file() and (python / "_tkinter.pyd").is_file()
    assert (python / "tcl" / "tcl8.6" / "init.tcl").is_file() and (python / "tcl" / "tk8.6" / "tk.tcl").is_file()
    assert not list((python / "tcl").glob("*.lib")) and not (python / "tkinter" / "test").exists()
    pkgs = STAGE / "pkgs"
    assert (pkgs / "tray_client" / "__init__.py").read_text() == (ROOT / "tray_client" / "__init__.py").read_text()
    assert (pkgs / "tray_client" / "selfcheck.py").is_file()
    for name in ("requests", "urllib3", "certifi", "platformdirs", "psutil", "cpuinfo", "GPUtil", "PIL",
                 "pystray", "click", "colorama", "sv_ttk"):
        assert (pkgs / name).is_dir(), f"{name} is not bundled"
    assert not (pkgs / "Xlib").exists() and not (pkgs / "flask").exists()  # Linux-only / portal-only
    assert not list(pkgs.rglob("__pycache__"))
    nsi = (STAGE.parent / "pictor_worker.nsi").read_text()
    assert "Target amd64-unicode" in nsi and "-m tray_client.portal_stamp \"$EXEPATH\"" in nsi
    icon = STAGE / "pictor-worker.ico"
    assert icon.read_bytes()[:4] == b"\0\0\1\0"


@pytest.mark.timeout(300)
def test_the_32_bit_build_checks_its_wheels_then_says_why_it_cannot_be_made(installer, capsys):
    """No registry we reach carries a 32-bit embeddable CPython: the x86 build checks what it can (its
    win32 wheels: hashes, platform, dependency closure) and then stops with the reason, never a stub."""
    assert build_script.main(["--arch", "x86", "--out-dir", str(installer.exe.parent)]) == 1
    out, err = capsys.readouterr()
    assert "win32 wheels, hashes and dependencies checked" in out
    assert "no 32-bit embeddable CPython" in err and "Blender render work only" in err
    assert not list(installer.exe.parent.glob("*-win32.exe"))
    pins = dict((name, version) for name, version, _ in build_script.read_requirements(build_script.WIN32_REQUIREMENTS))
    amd64 = dict((name, version) for name, version, _ in build_script.read_requirements(build_script.WHEEL_REQUIREMENTS))
    assert set(amd64) <= set(pins)  # the same app on both: only versions may differ (psutil)
    x86 = build_script.nsi_template("0.1.0", build_script.ARCHES["x86"])
    assert "Target x86-unicode" in x86 and "Target amd64-unicode" in build_script.nsi_template("0.1.0")
    assert "PictorWorkerSetup-0.1.0-win32.exe" in build_script.pynsist_config(
        "0.1.0", "3.11.9", [], False, build_script.ARCHES["x86"]) and "bitness = 32" in x86 + build_script.pynsist_config(
        "0.1.0", "3.11.9", [], False, build_script.ARCHES["x86"])


def test_build_helpers():
    assert build_script.version_quad("0.1.0") == "0.1.0.0"
    assert build_script.version_quad("1.2.3rc1") == "1.2.3.0"
    assert build_script.pe_machine(_pe_header(0x8664)) == "AMD64"
    assert build_script.pe_machine(_pe_header(0x14C)) == "I386"
    with pytest.raises(ValueError):
        build_script.pe_machine(b"\x7fELF" + bytes(200))
    for path in (build_script.WHEEL_REQUIREMENTS, build_script.UPSCALE_REQUIREMENTS):
        pins = build_script.read_requirements(path)  # every line pinned, with a real hash
        assert pins and all(sha != "0" * 64 for _, _, sha in pins)
    keep = build_script._keep_tk_file
    assert keep("tcl/tcl8.6/init.tcl") and keep("tk86t.dll") and keep("tkinter/ttk.py")
    assert not keep("tcl/tcl86t.lib") and not keep("tcl/cmake/x.cmake") and not keep("tkinter/test/t.py")


def test_build_says_how_to_get_makensis(monkeypatch, capsys):
    monkeypatch.setattr(build_script.shutil, "which", lambda name: None)
    assert build_script.main(["--out-dir", "unused"]) == 1
    assert "apt-get install --no-install-recommends nsis" in capsys.readouterr().err


def _pe_header(machine: int) -> bytes:
    data = bytearray(256)
    data[:2] = b"MZ"
    data[0x3C:0x40] = (0x80).to_bytes(4, "little")
    data[0x80:0x84] = b"PE\0\0"
    data[0x84:0x86] = machine.to_bytes(2, "little")
    return bytes(data)


# --- wine smoke test -----------------------------------------------------------------------------------

@contextmanager
def xvfb():
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    try:
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=30)


class Wine:
    """A throwaway wine prefix; paths given to Windows programs are C:\\ paths (see selfcheck below)."""

    def __init__(self, prefix: Path, display: str):
        self.prefix = prefix
        # No Mono/Gecko install prompts; no debug chatter; a 64-bit prefix.
        self.env = dict(os.environ, WINEPREFIX=str(prefix), WINEARCH="win64", WINEDEBUG="-all",
                        WINEDLLOVERRIDES="mscoree,mshtml=", DISPLAY=display)

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        # Windows Python under wine wants pipes for stdio, not a terminal.
        return subprocess.run(["wine", *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, errors="replace", timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(["wine", *args], env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def wait(self, timeout: int = 300) -> None:
        """Until every Windows process has ended (installers hand work to child processes)."""
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=timeout, check=False)

    def kill(self) -> None:
        subprocess.run(["wineserver", "-k"], env=self.env, timeout=60, check=False)

    def registry(self, key: str) -> dict[str, str] | None:
        """The values of an HKEY_CURRENT_USER key as written in user.reg (None: no such key)."""
        header = "[" + key.replace("\\", "\\\\") + "]"
        values, inside = {}, False
        for line in (self.prefix / "user.reg").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("["):
                if inside:
                    break
                inside = line.split(" ")[0] == header
            elif inside and line.startswith('"') and "=" in line:
                name, _, value = line.partition("=")
                values[name.strip('"')] = value
        return values if inside or values else None


def windows_user(prefix: Path) -> str:
    return next(p.name for p in (prefix / "drive_c" / "users").iterdir() if p.name != "Public")


@dataclass
class LivePortal:
    """A real portal over HTTP, with the installer published and a worker waiting for its code."""
    app: object
    url: str
    worker_id: int
    code: str


@contextmanager
def live_portal(tmp_path: Path, exe: Path):
    from tests.conftest import LiveServer, make_app
    from webapp.extensions import db
    from webapp.models import User
    from webapp.services import releases, workers
    (tmp_path / "portal").mkdir()
    app = make_app(tmp_path / "portal")
    server = LiveServer(app)
    app.config["SERVER_URL"] = server.url
    try:
        with app.app_context():
            releases.publish(exe)
            owner = User(email="wine@example.com", password_hash="x")
            db.session.add(owner)
            db.session.commit()
            worker, code, _token = workers.create_worker(owner, "Wine PC")
            worker_id = worker.id
        yield LivePortal(app, server.url, worker_id, code)
    finally:
        server.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def worker_status(portal: LivePortal) -> tuple[object, str]:
    from webapp.extensions import db
    from webapp.models import Worker
    from webapp.services import workers
    with portal.app.app_context():
        worker = db.session.get(Worker, portal.worker_id)
        db.session.refresh(worker)
        return worker.last_heartbeat_at, workers.status_of(worker).value


@pytest.mark.timeout(1200)
def test_wine_install_selfcheck_upgrade_uninstall(installer, tmp_path):
    if os.environ.get("PICTOR_WINE_SMOKE") != "1":
        pytest.skip("the wine smoke test takes minutes: set PICTOR_WINE_SMOKE=1 to run it")
    for tool, package in (("wine", "wine wine64"), ("wineserver", "wine64"), ("Xvfb", "xvfb"),
                          ("xdotool", "xdotool"), ("import", "imagemagick")):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed: apt-get install --no-install-recommends {package}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float]] = []

    @contextmanager
    def step(name):
        started = time.monotonic()
        yield
        timings.append((name, time.monotonic() - started))

    with xvfb() as display, live_portal(tmp_path, installer.exe) as portal:
        # What a provider downloads: the published installer, stamped with this portal's address.
        download = requests_get(f"{portal.url}/download/windows")
        exe = tmp_path / "download" / installer.exe.name
        exe.parent.mkdir()
        exe.write_bytes(download)
        assert download.startswith(installer.exe.read_bytes()) and len(download) > installer.exe.stat().st_size
        wine = Wine(tmp_path / "prefix", display)
        try:
            _smoke(wine, exe, display, step, portal)
        finally:
            wine.kill()
            report = "\n".join(f"{name:<28} {seconds:6.1f} s" for name, seconds in timings)
            report += f"\n{'total':<28} {sum(s for _, s in timings):6.1f} s\n"
            (ARTIFACTS / "wine-smoke-timings.txt").write_text(report)
            print(report)


def requests_get(url: str) -> bytes:
    import requests
    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text[:300]
    return response.content


def _smoke(wine: Wine, exe: Path, display: str, step, portal: LivePortal) -> None:
    with step("wine prefix (wineboot)"):
        wine.run("wineboot", "--init")
        # A crashing program then exits instead of waiting for someone to close wine's crash dialog.
        wine.run("reg", "add", r"HKCU\Software\Wine\WineDbg", "/v", "ShowCrashDialog",
                 "/t", "REG_DWORD", "/d", "0", "/f")
        wine.wait()
    user = windows_user(wine.prefix)
    home = wine.prefix / "drive_c" / "users" / user
    install_dir = home / "AppData" / "Local" / "Programs" / "PictorWorker"
    data_dir = home / "AppData" / "Local" / "pictor-worker"  # platformdirs' folder: config, pairing, cache
    shortcut = home / "AppData" / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Pictor Worker.lnk"
    win_dir = rf"C:\users\{user}\AppData\Local\Programs\PictorWorker"

    with step("silent install"):
        wine.run(str(exe), "/S")
        wine.wait()
    assert machine_of(install_dir / "Python" / "python.exe") == "AMD64"
    assert (install_dir / "Python" / "pythonw.exe").is_file()
    assert (install_dir / "pkgs" / "tray_client" / "__init__.py").is_file()
    assert (install_dir / "uninstall.exe").is_file() and shortcut.is_file()
    run_entry = (wine.registry(RUN_KEY) or {}).get("PictorWorker", "")
    assert "pythonw.exe" in run_entry and "pictor_worker_gui.pyw" in run_entry  # "start with Windows" ticked
    assert f'"{VERSION}"' == wine.registry(UNINSTALL_KEY)["DisplayVersion"]
    # The installer copied the address the portal stamped on the download beside Python.
    assert (install_dir / "Python" / "installer_portal.txt").read_text().strip() == portal.url

    # Run by its C:\ path: Tcl cannot find its library under the Z:\ (Unix) path of the same folder.
    with step("installed self-check"):
        check = wine.run(rf"{win_dir}\Python\python.exe", "-m", "tray_client.selfcheck")
    (ARTIFACTS / "selfcheck.txt").write_text(check.stdout)
    print(check.stdout)
    assert check.returncode == 0, check.stdout
    assert f"Pictor Worker {VERSION} self-check" in check.stdout and "(AMD64, 64-bit)" in check.stdout
    assert "Tcl/Tk 8.6" in check.stdout and "self-check passed" in check.stdout
    for module in ("pystray", "requests", "tray_client.engine"):
        if module != "tray_client.engine" or (ROOT / "tray_client" / "engine.py").exists():
            assert f"ok   {module}" in check.stdout

    # The first launch opens the pairing window with the portal's address filled in: typing only the
    # code pairs it (no address typed anywhere), and the worker says hello to the portal.
    with step("pairing window + screenshot"):
        app = wine.start(rf"{win_dir}\Python\pythonw.exe", rf"{win_dir}\pictor_worker_gui.pyw")
        shot = ARTIFACTS / "pairing-window.png"
        window = _screenshot_when_window_appears(display, "Pair this computer", shot)
    assert _drawn_pixels(shot) > 2000, f"{shot} looks empty"
    with step("pair by code only"):
        env = dict(os.environ, DISPLAY=display)
        # With no window manager wine ignores keyboard focus requests: a click in the code field (where
        # the form draws it at 96 dpi, see pairing-window.png) gives it the keys.
        subprocess.run(["xdotool", "mousemove", "--window", window, *CODE_FIELD, "click", "1"], env=env,
                       timeout=30, check=True)
        time.sleep(1)
        subprocess.run(["xdotool", "type", "--delay", "40", portal.code], env=env, timeout=60, check=True)
        subprocess.run(["xdotool", "key", "Return"], env=env, timeout=30, check=True)
        saved = _wait_for(lambda: _read_json(data_dir / "worker.json").get("token"), 120, "the pairing to be saved")
        assert saved
        pairing = _read_json(data_dir / "worker.json")
        assert pairing["server_url"] == portal.url and pairing["worker_id"] == portal.worker_id
        heartbeat = _wait_for(lambda: worker_status(portal)[0], 120, "the worker's first hello")
    print(f"worker {portal.worker_id} is {worker_status(portal)[1]} on the portal (first hello {heartbeat})")
    assert worker_status(portal)[1] != "pending"
    time.sleep(3)
    subprocess.run(["import", "-display", display, "-window", "root", str(ARTIFACTS / "app-window.png")],
                   check=False, timeout=60)

    # Upgrade over the running app: it is stopped, old files go, pairing and settings stay.
    stale = install_dir / "pkgs" / "tray_client" / "removed_in_new_version.py"
    stale.write_text("")
    assert app.poll() is None, "the app ended before the upgrade"
    with step("upgrade (/S /NOAUTOSTART)"):
        wine.run(str(exe), "/S", "/NOAUTOSTART")
        try:
            # Ended by the installer (a paired app may end cleanly, exit 0, as on any stop request).
            app.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the installer did not stop the running app")
        wine.wait()
    kept = _read_json(data_dir / "worker.json")
    assert (kept["server_url"], kept["worker_id"], kept["token"]) == (portal.url, portal.worker_id, pairing["token"])
    assert not stale.exists()
    assert (install_dir / "pkgs" / "tray_client" / "__init__.py").is_file() and shortcut.is_file()
    assert "PictorWorker" not in (wine.registry(RUN_KEY) or {})  # "start with Windows" unticked

    # Keep a copy of the uninstaller to test /PURGE after the normal uninstall.
    purge_copy = wine.prefix / "drive_c" / "purge-check" / "uninstall.exe"
    purge_copy.parent.mkdir()
    shutil.copy2(install_dir / "uninstall.exe", purge_copy)

    with step("silent uninstall"):
        wine.run(rf"{win_dir}\uninstall.exe", "/S")
        wine.wait()
    assert not install_dir.exists(), sorted(str(p) for p in install_dir.rglob("*"))[:20]
    assert not shortcut.exists()
    assert wine.registry(UNINSTALL_KEY) is None
    assert "PictorWorker" not in (wine.registry(RUN_KEY) or {})
    assert "PictorWorker" not in str(wine.registry("Environment") or {})  # bin\ left PATH
    assert _read_json(data_dir / "worker.json")["token"] == pairing["token"]  # kept unless asked

    with step("uninstall /PURGE"):
        wine.run(r"C:\purge-check\uninstall.exe", "/S", "/PURGE")
        wine.wait()
    assert not data_dir.exists()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _wait_for(probe, within: float, what: str):
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def _screenshot_when_window_appears(display: str, title: str, path: Path, within: float = 180) -> str:
    env = dict(os.environ, DISPLAY=display)
    deadline = time.monotonic() + within
    while True:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if found.stdout.strip():
            break
        if time.monotonic() > deadline:
            pytest.fail(f"no window titled {title!r} appeared within {within:.0f} s")
        time.sleep(1)
    time.sleep(3)  # let Tk finish drawing
    subprocess.run(["import", "-display", display, "-window", "root", str(path)], check=True, timeout=60)
    return found.stdout.split()[0]


def _drawn_pixels(path: Path) -> int:
    """Pixels that are not the empty screen's black: a window with text has thousands."""
    from PIL import Image
    with Image.open(path) as image:
        return sum(image.convert("L").histogram()[17:])
