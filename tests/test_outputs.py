"""The sans-I/O fold of Jupyter messages into events and results (kernel/outputs.py)."""

from __future__ import annotations

from execbox import (
    ClearOutputEvent,
    DisplayEvent,
    ErrorEvent,
    InputRequestEvent,
    ResultEvent,
    StreamEvent,
)
from execbox.kernel.outputs import ExecutionRecorder


def _msg(kind: str, **content: object) -> dict[str, object]:
    return {"msg_type": kind, "header": {"msg_type": kind}, "content": content}


def _recorder(limit: int = 1 << 20) -> ExecutionRecorder:
    return ExecutionRecorder(output_limit=limit)


def test_done_only_after_both_reply_and_idle():
    recorder = _recorder()
    recorder.feed("shell", _msg("execute_reply", status="ok", execution_count=3))
    assert not recorder.done
    event = recorder.feed("iopub", _msg("stream", name="stdout", text="late\n"))
    assert event == StreamEvent("stdout", "late\n")
    recorder.feed("iopub", _msg("status", execution_state="idle"))
    assert recorder.done
    assert recorder.execution_count == 3
    assert recorder.stdout == "late\n"


def test_text_keeps_the_order_of_streams_and_results():
    recorder = _recorder()
    recorder.feed("iopub", _msg("stream", name="stdout", text="a\n"))
    recorder.feed("iopub", _msg("stream", name="stderr", text="b\n"))
    result = recorder.feed(
        "iopub", _msg("execute_result", data={"text/plain": "42"}, metadata={}, execution_count=1)
    )
    assert result == ResultEvent({"text/plain": "42"}, {}, 1)
    assert recorder.text == "a\nb\n42\n"
    assert recorder.stderr == "b\n"
    assert [o.kind for o in recorder.outputs] == ["result"]


def test_display_updates_replace_earlier_outputs_with_the_same_id():
    recorder = _recorder()
    first = recorder.feed(
        "iopub", _msg("display_data", data={"text/plain": "1"}, transient={"display_id": "d"})
    )
    assert first == DisplayEvent({"text/plain": "1"}, {}, "d", False)
    update = recorder.feed(
        "iopub",
        _msg("update_display_data", data={"text/plain": "2"}, transient={"display_id": "d"}),
    )
    assert isinstance(update, DisplayEvent)
    assert update.update
    assert [o.data for o in recorder.outputs] == [{"text/plain": "2"}]


def test_clear_output_clears_now_or_at_the_next_output():
    recorder = _recorder()
    recorder.feed("iopub", _msg("stream", name="stdout", text="old\n"))
    assert recorder.feed("iopub", _msg("clear_output", wait=True)) == ClearOutputEvent(True)
    assert recorder.stdout == "old\n"  # still shown until something replaces it
    recorder.feed("iopub", _msg("stream", name="stdout", text="new\n"))
    assert recorder.stdout == "new\n"
    recorder.feed("iopub", _msg("clear_output", wait=False))
    assert recorder.text == ""


def test_errors_input_requests_and_limits():
    recorder = _recorder(limit=10)
    error = recorder.feed("iopub", _msg("error", ename="E", evalue="v", traceback=["t1", 5]))
    assert error == ErrorEvent("E", "v", ("t1",))
    request = recorder.feed("stdin", _msg("input_request", prompt="? ", password=True))
    assert request == InputRequestEvent("? ", True)
    assert recorder.feed("iopub", _msg("stream", name="stdout", text="x" * 8)) is not None
    assert recorder.feed("iopub", _msg("stream", name="stdout", text="é" * 8)) == StreamEvent(
        "stdout", "é"
    )  # two bytes each: what fits of the chunk is kept, counted in bytes
    assert recorder.feed("iopub", _msg("stream", name="stdout", text="z")) is None
    assert recorder.truncated
    assert recorder.stdout == "x" * 8 + "é"


def test_malformed_messages_are_dropped_not_raised():
    recorder = _recorder()
    for message in (
        {},
        {"msg_type": "stream", "content": None},
        {"msg_type": "stream", "content": {"text": 5}},
        {"msg_type": "display_data", "content": {"data": "not a dict"}},
        {"msg_type": "execute_reply", "content": {"execution_count": "x"}},
        {"msg_type": "error", "content": {"traceback": "nope"}},
    ):
        for channel in ("iopub", "shell", "stdin"):
            recorder.feed(channel, message)  # type: ignore[arg-type]
    assert recorder.replied
