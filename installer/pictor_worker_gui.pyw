"""Start Menu and sign-in launcher of the installed Worker App: `pictor-worker gui` under pythonw.exe.

pythonw.exe has no console, so output goes to a log in the app's data folder, and a failure to start
is shown in a message box instead of vanishing.
"""

import os
import sys
import traceback
from pathlib import Path


def _log_path() -> Path:
    try:
        from tray_client.config import default_data_dir
        folder = default_data_dir()
    except Exception:  # a broken install must still be able to say so
        folder = Path(os.environ.get("LOCALAPPDATA") or Path.home()) / "pictor-worker"
    return folder / "logs" / "gui-console.log"


class _LogStream:
    """Appends to the log and remembers the tail, to show if the app exits with an error."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", errors="replace", buffering=1)
        self.tail = ""

    def write(self, text: str) -> int:
        self.tail = (self.tail + text)[-1500:]
        return self._file.write(text)

    def flush(self) -> None:
        self._file.flush()


def _tell_user(text: str) -> None:
    try:
        import ctypes
        ctypes.windll.user32.MessageBoxW(None, text, "Pictor Worker", 0x10)  # MB_ICONERROR
    except Exception:
        pass


def main() -> int:
    log_path = _log_path()
    stream = None
    if sys.stdout is None or sys.stderr is None:
        stream = _LogStream(log_path)
        sys.stdout = sys.stdout or stream
        sys.stderr = sys.stderr or stream
    try:
        from tray_client.cli import main as cli_main
        cli_main(["gui", *sys.argv[1:]])
        return 0
    except SystemExit as exc:
        if exc.code not in (0, None) and stream is not None:
            _tell_user(f"Pictor Worker stopped.\n\n{stream.tail.strip()}\n\nLog: {log_path}")
        raise
    except BaseException:
        details = traceback.format_exc()
        sys.stderr.write(details)
        _tell_user(f"Pictor Worker could not start.\n\n{details[-1200:]}\nLog: {log_path}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
