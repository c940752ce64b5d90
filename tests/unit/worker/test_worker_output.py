"""Output batching and tails (pure: no pipes, no processes)."""

from __future__ import annotations

from agentflow.worker.output import StreamCapture


def capture(batch_bytes: int = 1000, tail_bytes: int = 4096) -> tuple[StreamCapture, list[str]]:
    batches: list[str] = []
    return StreamCapture(batches.append, batch_bytes, tail_bytes), batches


def test_small_output_waits_for_tick_or_close() -> None:
    stream, batches = capture()
    stream.feed(b"a\nb\n")
    assert batches == []
    stream.tick()
    assert batches == ["a\nb\n"]


def test_batch_goes_out_at_size_on_a_line_boundary() -> None:
    stream, batches = capture(batch_bytes=10)
    stream.feed(b"12345\n678")
    assert batches == []
    stream.feed(b"90\nabc")
    assert batches == ["12345\n67890\n"]
    stream.close()
    assert batches == ["12345\n67890\n", "abc"]


def test_long_line_goes_out_anyway() -> None:
    stream, batches = capture(batch_bytes=8)
    stream.feed(b"x" * 20)
    assert batches == ["x" * 20]


def test_partial_line_waits_one_tick_only() -> None:
    stream, batches = capture()
    stream.feed(b"done\n50%\r")
    stream.tick()
    assert batches == ["done\n"]
    stream.tick()
    assert batches == ["done\n", "50%\r"]


def test_batches_concatenate_to_the_stream() -> None:
    stream, batches = capture(batch_bytes=7)
    data = b"".join(f"line {i}\n".encode() for i in range(50)) + b"tail"
    for i in range(0, len(data), 5):
        stream.feed(data[i : i + 5])
        if i % 20 == 0:
            stream.tick()
    stream.close()
    assert "".join(batches) == data.decode()


def test_utf8_split_across_chunks_is_decoded() -> None:
    stream, batches = capture()
    data = "héllo wörld\n".encode()
    stream.feed(data[:2])
    stream.feed(data[2:])
    stream.close()
    assert batches == ["héllo wörld\n"]
    assert stream.tail() == "héllo wörld\n"


def test_invalid_bytes_are_replaced() -> None:
    stream, batches = capture()
    stream.feed(b"bad \xff byte\n")
    stream.close()
    assert batches == ["bad \ufffd byte\n"]


def test_tail_keeps_the_last_bytes() -> None:
    stream, _ = capture(tail_bytes=16)
    for i in range(100):
        stream.feed(f"{i:04d}\n".encode())
    assert stream.tail() == "\n0097\n0098\n0099\n"


def test_tail_drops_a_cut_utf8_sequence() -> None:
    stream, _ = capture(tail_bytes=5)
    stream.feed("aé€".encode())  # a (1) + é (2) + € (3): the last 5 bytes cut nothing
    assert stream.tail() == "é€"
    stream.feed("€".encode())  # last 5 bytes start inside the first €
    assert stream.tail() == "€"


def test_nothing_after_close() -> None:
    stream, batches = capture()
    stream.close()
    stream.feed(b"late\n")
    stream.close()
    assert batches == []
