"""Sans-IO reader of the report-status an upstream sends after a push, optionally inside
side-band band 1, so the broker can record which ref updates the upstream accepted."""

from __future__ import annotations

from dataclasses import dataclass, field

from devaipod.broker.pktline import Data, PktLineReader, ProtocolError

_BAND_DATA = 1
# Band 1 carries only the report, a few lines per ref. This bounds what the reader keeps.
MAX_REPORT_BYTES = 1024 * 1024


@dataclass
class RefStatus:
    """The upstream's verdict on one ref: `ok`, or `ng` with its message."""

    ok: bool
    message: str = ""


@dataclass
class ReportStatusReader:
    """Incremental reader of a receive-pack response body: `unpack`, `refs` and `error`.

    With `sideband`, the report is read from band 1, band 2 progress is skipped, and band 3
    text goes to `error`. A malformed report sets `error` and stops reading, so the caller
    can fall back to the HTTP status.
    """

    sideband: bool
    unpack: str | None = None
    refs: dict[str, RefStatus] = field(default_factory=dict)
    error: str | None = None
    _outer: PktLineReader = field(default_factory=PktLineReader)
    _inner: PktLineReader = field(default_factory=PktLineReader)
    _report_bytes: int = 0

    def feed(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            for packet in self._outer.feed(data):
                if isinstance(packet, Data):
                    self._packet(packet.payload)
        except ProtocolError as error:
            self.error = f"invalid report-status: {error}"

    def _packet(self, payload: bytes) -> None:
        if not self.sideband:
            self._line(payload)
            return

        band, data = payload[0] if payload else 0, payload[1:]
        if band == 3:
            self.error = "upstream error: " + data.decode("utf-8", "replace").strip()
            return
        if band != _BAND_DATA:
            return
        self._report_bytes += len(data)
        if self._report_bytes > MAX_REPORT_BYTES:
            raise ProtocolError(f"report larger than {MAX_REPORT_BYTES} bytes")
        for inner in self._inner.feed(data):
            if isinstance(inner, Data):
                self._line(inner.payload)

    def _line(self, payload: bytes) -> None:
        text = payload.decode("utf-8", "surrogateescape").removesuffix("\n")
        if text.startswith("unpack "):
            self.unpack = text.removeprefix("unpack ")
        elif text.startswith("ok "):
            self.refs[text.removeprefix("ok ")] = RefStatus(ok=True)
        elif text.startswith("ng "):
            ref, _, message = text.removeprefix("ng ").partition(" ")
            self.refs[ref] = RefStatus(ok=False, message=message)
        elif not text.startswith("option "):
            raise ProtocolError(f"unexpected report-status line {text[:200]!r}")
