"""run_process: the one way the Worker App starts a renderer, reads it, and stops it."""

import sys
import time

import psutil
import pytest

from tray_client.runners import UnknownJobType, get_runner
from tray_client.runners.base import TAIL_CHARS, run_process
from tray_client.runners.blender import BlenderRunner
from tray_client.runners.realesrgan import RealesrganRunner


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_lines_split_on_carriage_returns_and_newlines():
    lines = []
    code = ("import sys\n"
            "for i in range(3): sys.stdout.write(f'Sample {i}/3\\r'); sys.stdout.flush()\n"
            "sys.stderr.write('warning on stderr\\n\\n')\n"
            "sys.stdout.write('Saved: \\'é.png\\'\\r\\nno newline at the end')")
    returncode, tail, stopped = run_process(python(code), on_line=lines.append)
    assert (returncode, stopped) == (0, False)
    assert lines == ["Sample 0/3", "Sample 1/3", "Sample 2/3", "warning on stderr", "Saved: 'é.png'",
                     "no newline at the end"]
    assert tail.endswith("no newline at the end")


def test_tail_keeps_only_the_end_of_a_long_log():
    returncode, tail, _ = run_process(python("for i in range(20000): print('line', i)"))
    assert returncode == 0
    assert len(tail) <= TAIL_CHARS
    assert tail.endswith("line 19999")


def test_exit_code_is_returned():
    assert run_process(python("raise SystemExit(7)"))[0] == 7


def test_a_shell_string_is_refused():
    with pytest.raises(TypeError):
        run_process("echo hello; rm -rf /")


def test_stop_kills_the_whole_tree_within_two_seconds():
    # A child that ignores SIGTERM, with a grandchild: both must be gone, however stubborn.
    code = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('pids', os.getpid(), grandchild.pid, flush=True)\n"
            "time.sleep(60)")
    lines, asked_at = [], None

    def should_stop():
        nonlocal asked_at
        if lines and asked_at is None:
            asked_at = time.monotonic()
        return asked_at is not None

    returncode, tail, stopped = run_process(python(code), on_line=lines.append, should_stop=should_stop,
                                            poll=0.05)
    assert stopped and time.monotonic() - asked_at < 2.0
    for pid in map(int, lines[0].split()[1:]):
        assert not alive(pid)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_registry_knows_render_and_upscale_only():
    assert isinstance(get_runner("render"), BlenderRunner)
    assert isinstance(get_runner("upscale"), RealesrganRunner)
    for job_type in ("mining", "", None, ["render"]):
        with pytest.raises(UnknownJobType):
            get_runner(job_type)
