"""The job types this worker can run, each mapped to its runner; anything else is refused."""

from __future__ import annotations

from .base import (InvalidParams, Progress, RunFailed, Runner, RunnerSettings, RunResult,
                   run_process)
from .benchmark import BenchmarkRunner
from .blender import BlenderRunner
from .realesrgan import RealesrganRunner
from .verify import VerifyRunner

RUNNERS: dict[str, type[Runner]] = {
    "render": BlenderRunner,
    "upscale": RealesrganRunner,
    "verify": VerifyRunner,
    "benchmark": BenchmarkRunner,
}


class UnknownJobType(LookupError):
    def __init__(self, job_type: object):
        super().__init__(f"this worker cannot run {job_type!r} jobs; update the Worker App")
        self.job_type = job_type


def get_runner(job_type: str, settings: RunnerSettings | None = None) -> Runner:
    try:
        runner_class = RUNNERS[job_type]
    except (KeyError, TypeError):  # TypeError: an unhashable job type from a bad payload
        raise UnknownJobType(job_type) from None
    return runner_class(settings)


__all__ = ["RUNNERS", "UnknownJobType", "get_runner", "Runner", "RunnerSettings", "RunResult",
           "Progress", "RunFailed", "InvalidParams", "run_process"]
