"""What a task may upload: the files it should produce, each no larger than its image can be.

A render delivers one file per frame, an upscale one file, a benchmark one frame, a verification its
crops or its tile (the same names check_result and verification.expected_outputs accept at complete).
An output PUT under any other name is refused before a byte is read, and each file's bytes are capped
by its pixels: a worker can't fill the portal's disk with files no result would ever use. A name
uploaded again replaces the earlier file, whose blob is then collected as unreferenced.
"""

from flask import current_app

from ..extensions import db
from ..models import JobInput, JobType, Task
from . import ServiceError, benchmarks, result_checks, storage, verification

# The most a frame can take per pixel: uncompressed RGBA float32 (OpenEXR); PNG and JPEG take less.
BYTES_PER_PIXEL = 16
OVERHEAD_BYTES = 1024 * 1024  # headers, metadata, PNG's filter bytes and chunking


class UnexpectedOutput(ServiceError):
    status = 409

    def __init__(self, name: str, expected: list[str]):
        shown = ", ".join(expected[:5]) + (f" and {len(expected) - 5} more" if len(expected) > 5 else "")
        super().__init__("unexpected_output", f"Task outputs are {shown}; {name!r} is not one of them.")


def _render_size(task: Task) -> tuple[int, int] | None:
    scene = (task.job.spec or {}).get("scene")
    if scene is None:  # a scene the portal could not read: its frame size is unknown
        return None
    return result_checks.expected_render_size(result_checks.RenderSettings(**scene["settings"]),
                                              task.params.get("resolution_percent", 100))


def _upscaled_size(task: Task) -> tuple[int, int] | None:
    source = db.session.execute(db.select(JobInput).where(
        JobInput.job_id == task.job_id, JobInput.name == task.params["image"])).scalar_one_or_none()
    if source is None:
        return None
    try:
        size = result_checks.image_size(storage.path_for(source.sha256))
    except result_checks.InvalidOutput:  # the job's input was checked at submit; be safe all the same
        return None
    return result_checks.upscaled_size(size, task.params["scale"])


def expected_outputs(task: Task) -> tuple[list[str], tuple[int, int] | None]:
    """(the names of the files `task` delivers, the largest image size among them, or None if unknown)."""
    params = task.params
    if task.type == JobType.BENCHMARK:
        return [benchmarks.FRAME_NAME], tuple(benchmarks.FRAME_SIZE)
    if task.type == JobType.RENDER:
        return result_checks.render_output_names(params["frames"], params["format"]), _render_size(task)
    if task.type == JobType.UPSCALE:
        return result_checks.upscale_output_names(params["image"], params["scale"]), _upscaled_size(task)
    # A verification: crops of one frame, or one tile of an upscale, never larger than the checked output.
    checked = verification.verification_of(task).task
    return verification.expected_outputs(task), expected_outputs(checked)[1]


def output_allowance(task: Task, name: str, max_bytes: int) -> int:
    """The most bytes an upload of output `name` of `task` may have (at most `max_bytes`); an
    UnexpectedOutput (409) for a name the task doesn't deliver."""
    names, size = expected_outputs(task)
    if name not in names:
        raise UnexpectedOutput(name, names)
    if size is None:
        return max_bytes
    return min(max_bytes, size[0] * size[1] * BYTES_PER_PIXEL + OVERHEAD_BYTES)


def task_quota(task: Task) -> tuple[int, int]:
    """(how many files, how many bytes in all) `task` may store: what its pages and logs can quote."""
    names, size = expected_outputs(task)
    per_file = int(current_app.config["OUTPUT_MAX_BYTES"])
    if size is not None:
        per_file = min(per_file, size[0] * size[1] * BYTES_PER_PIXEL + OVERHEAD_BYTES)
    return len(names), len(names) * per_file
