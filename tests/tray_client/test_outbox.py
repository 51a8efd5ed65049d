"""The on-disk outbox: updates survive outages and restarts, arrive in order, progress coalesces."""

import pytest

from tray_client.api import PortalError
from tray_client.outbox import Outbox
from tests.tray_client.portal_fixture import FakeClient


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def test_only_the_latest_progress_of_a_task_is_kept(outbox):
    outbox.put_progress(1, 0.1, 30, "a")
    outbox.put_progress(2, 0.5, 10, "other task")
    outbox.put_progress(1, 0.4, 20, "b")
    pending = [(e.task_id, e.payload["progress"]) for e in outbox.pending()]
    assert pending == [(2, 0.5), (1, 0.4)]


def test_complete_and_fail_are_kept_while_the_portal_is_unreachable_then_replayed_in_order(outbox, tmp_path):
    client = FakeClient()
    client.unreachable = True
    frame = tmp_path / "frame_0001.png"
    frame.write_bytes(b"png")
    outputs = outbox.stage_outputs(3, [frame])
    outbox.put_progress(3, 0.9, 1, "")
    outbox.put_complete(3, outputs, 12.5)
    outbox.put_fail(4, "Blender crashed", "tail", True, "crash")
    report = outbox.flush(client)
    assert report.blocked is not None and report.pending == 2 and len(outbox) == 2

    reopened = Outbox(outbox.path)  # an app restart in the middle of the outage
    client.unreachable = False
    report = reopened.flush(client)
    assert client.names() == ["upload", "complete", "fail"]
    assert client.uploaded[(3, "frame_0001.png")] == b"png"
    assert report.answer_for(3, "complete") == {"reward": "0.001000"}
    assert len(reopened) == 0
    reopened.close()


def test_a_final_update_drops_the_tasks_queued_progress(outbox):
    outbox.put_progress(5, 0.3, None, "")
    outbox.put_fail(5, "stopped", retryable=True)
    outbox.put_progress(5, 0.4, None, "")  # late progress after the end means nothing
    assert [e.kind for e in outbox.pending()] == ["fail"]


def test_an_upload_done_before_an_outage_is_not_repeated(outbox, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    outbox.put_complete(7, outbox.stage_outputs(7, [a, b]), 1.0)
    client = FakeClient()
    original = client.upload_output

    def upload_then_die(task_id, name, path, sha256=None):
        result = original(task_id, name, path, sha256)
        client.unreachable = True  # the portal goes away after the first file
        return result
    client.upload_output = upload_then_die
    outbox.flush(client)
    client.unreachable = False
    client.upload_output = original
    outbox.flush(client)
    assert client.names() == ["upload", "upload", "complete"]
    assert [c[2] for c in client.calls if c[0] == "upload"] == ["a.png", "b.png"]


def test_a_refusal_drops_that_update_and_goes_on(outbox):
    client = FakeClient()
    outbox.put_fail(1, "x", retryable=True)
    outbox.put_fail(2, "y", retryable=True)
    calls = []

    def fail(task_id, reason, log_tail="", retryable=True, kind=None):
        calls.append(task_id)
        if task_id == 1:
            raise PortalError(409, "task_not_running", "not yours any more")
        return {"status": "queued"}
    client.fail = fail
    report = outbox.flush(client)
    assert calls == [1, 2] and len(outbox) == 0
    assert report.rejection_for(1, "fail").status == 409


def test_server_errors_and_revoked_tokens_keep_the_update(outbox):
    client = FakeClient()
    outbox.put_fail(1, "x", retryable=True)
    for status in (503, 500, 401):
        client.refuse["fail"] = PortalError(status, "e", "m")
        assert outbox.flush(client).blocked is not None
        assert len(outbox) == 1


def test_hand_back_falls_back_to_a_retryable_fail_on_an_older_portal(outbox):
    client = FakeClient()
    client.refuse["hand_back"] = PortalError(404, "not_found", "no such route")
    outbox.put_hand_back(9, "worker shutting down")
    outbox.flush(client)
    assert client.calls == [("fail", 9, "worker shutting down", True, "canceled")]


def test_a_lost_output_file_turns_the_complete_into_a_fail(outbox, tmp_path):
    frame = tmp_path / "f.png"
    frame.write_bytes(b"x")
    outputs = outbox.stage_outputs(4, [frame])
    outbox.put_complete(4, outputs, 1.0)
    for path in (outbox.files_dir / "task-4").iterdir():
        path.unlink()
    client = FakeClient()
    outbox.flush(client)
    assert client.names() == ["fail"] and client.calls[0][3] is True


def test_an_update_the_portal_keeps_failing_on_does_not_hold_up_other_tasks(outbox):
    client = FakeClient()
    outbox.put_fail(1, "x", retryable=True)
    outbox.put_progress(2, 0.5, 10, "the running task")

    def fail(task_id, *args, **kwargs):
        raise PortalError(500, "server_error", "Something broke on our side")
    client.fail = fail
    report = outbox.flush(client)
    assert report.answer_for(2, "progress") is True  # its lease is extended all the same
    assert [(e.task_id, e.kind) for e in outbox.pending()] == [(1, "fail")]
