"""The upstream report-status reader, fed in chunks of every size."""

from __future__ import annotations

import pytest

from devaipod.broker.pktline import FLUSH, encode_pkt_line
from devaipod.broker.report_status import RefStatus, ReportStatusReader

PLAIN_REPORT = (
    encode_pkt_line(b"unpack ok\n")
    + encode_pkt_line(b"ok refs/heads/devaipod/x\n")
    + encode_pkt_line(b"option refname refs/heads/devaipod/x\n")
    + encode_pkt_line(b"ng refs/heads/other pre-receive hook declined\n")
    + FLUSH
)


def _sideband(report: bytes, split_at: int) -> bytes:
    """Wrap `report` in band-1 packets cut at `split_at`, with a progress packet between."""
    return (
        encode_pkt_line(b"\x02remote: working\n")
        + encode_pkt_line(b"\x01" + report[:split_at])
        + encode_pkt_line(b"\x02remote: still working\n")
        + encode_pkt_line(b"\x01" + report[split_at:])
        + FLUSH
    )


def _feed_in_chunks(reader: ReportStatusReader, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])


EXPECTED_REFS = {
    "refs/heads/devaipod/x": RefStatus(ok=True),
    "refs/heads/other": RefStatus(ok=False, message="pre-receive hook declined"),
}


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 8, 13, 1000])
def test_plain_report_at_every_chunk_size(chunk_size: int) -> None:
    reader = ReportStatusReader(sideband=False)

    _feed_in_chunks(reader, PLAIN_REPORT, chunk_size)

    assert reader.error is None
    assert reader.unpack == "ok"
    assert reader.refs == EXPECTED_REFS


def test_sideband_report_at_every_split() -> None:
    for split_at in range(len(PLAIN_REPORT) + 1):
        reader = ReportStatusReader(sideband=True)

        _feed_in_chunks(reader, _sideband(PLAIN_REPORT, split_at), 7)

        assert reader.error is None, split_at
        assert reader.unpack == "ok", split_at
        assert reader.refs == EXPECTED_REFS, split_at


def test_band_three_sets_error() -> None:
    reader = ReportStatusReader(sideband=True)

    reader.feed(encode_pkt_line(b"\x03fatal: disk full\n"))

    assert reader.error == "upstream error: fatal: disk full"
    assert reader.unpack is None


def test_unpack_failure_is_kept() -> None:
    reader = ReportStatusReader(sideband=False)

    reader.feed(encode_pkt_line(b"unpack index-pack abnormal exit\n") + FLUSH)

    assert reader.unpack == "index-pack abnormal exit"


@pytest.mark.parametrize(
    "body",
    [
        b"upstream-body:0000",
        encode_pkt_line(b"surprise refs/heads/x\n"),
    ],
)
def test_malformed_report_sets_error(body: bytes) -> None:
    reader = ReportStatusReader(sideband=False)

    reader.feed(body)
    reader.feed(PLAIN_REPORT)

    assert reader.error is not None
    assert reader.refs == {}
