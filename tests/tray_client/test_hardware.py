"""The hardware report sent to the portal: complete, JSON-able, honest about missing GPUs, and quick."""

import json
import shutil
import time

import pytest

from tray_client import hardware


def test_probe_reports_every_key(tmp_path):
    report = hardware.probe(tmp_path)
    assert {"gpus", "cpu", "ram_mb", "os", "hostname", "disk_free_mb", "renderers"} <= set(report)
    assert json.loads(json.dumps(report)) == report
    assert report["cpu"]["brand"] and report["cpu"]["cores"] >= 1
    assert report["ram_mb"] > 0 and report["disk_free_mb"] > 0
    for renderer in report["renderers"].values():
        assert renderer["version"]


def test_no_nvidia_gpu_gives_an_empty_list_and_a_note(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA GPU")
    report = hardware.probe(tmp_path)
    assert report["gpus"] == []
    assert "no NVIDIA GPU" in report["gpu_note"]
    assert hardware.suggested_gpu_backend(report) is None


def test_a_broken_gpu_library_is_a_note_not_a_crash(monkeypatch):
    import GPUtil

    def boom():
        raise OSError("nvidia-smi hung")

    monkeypatch.setattr(GPUtil, "getGPUs", boom)
    gpus, note = hardware.gpu_report()
    assert gpus == [] and "nvidia-smi hung" in note


def test_repeated_probes_are_fast_and_the_cpu_name_is_kept_on_disk(tmp_path):
    hardware.probe(tmp_path)
    started = time.monotonic()
    hardware.probe(tmp_path)
    assert time.monotonic() - started < 0.5
    assert json.loads((tmp_path / hardware.CPU_CACHE_FILE).read_text())["brand"]


def test_suggested_backend_for_nvidia():
    assert hardware.suggested_gpu_backend({"gpus": [{"name": "RTX 4090"}]}) == "CUDA"
