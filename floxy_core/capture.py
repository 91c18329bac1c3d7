"""What one handler call printed, kept bounded (DECISIONS.md "Operating (API, UI, logs)").

A handler reports its output through `StepContext.capture`: the bash handler both of its streams
(its stdout is also the step's JSON result), the HTTP handler the response's status line and
body as "stdout". A Python handler or a plugin may write to it too; one that does not leaves an
empty log. The runtime turns the capture into a `CallLog` and stores it with the call's result.

Each stream keeps its last `LOG_LIMIT` bytes, where a failure shows; what was cut before them is
said by a first line `[floxy: N earlier bytes cut]`, and the log is marked `truncated`.
"""

from __future__ import annotations

from floxy_core import values

__all__ = ["LOG_LIMIT", "Capture", "Tail", "marker"]

LOG_LIMIT = 256 * 1024
"""Bytes kept per stream and call: enough for any useful trace, and a spewing handler (or a
stdout that is a 16 MiB JSON result) costs the store at most twice this per call."""


def marker(cut: int) -> str:
    """The first line of a stream of which `cut` earlier bytes were not kept."""
    return f"[floxy: {cut} earlier bytes cut]\n"


class Tail:
    """The last `limit` bytes of a stream, trimmed in amortised O(1), and how many were cut."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.cut = 0

    def add(self, chunk: bytes | bytearray | memoryview, *, cut_before: int = 0) -> None:
        """Append `chunk`; `cut_before` bytes that came before it were already dropped."""
        self.cut += cut_before
        if len(chunk) >= self.limit:  # a large chunk: only its tail is ever kept
            self.cut += len(self.buf) + len(chunk) - self.limit
            self.buf = bytearray(chunk[len(chunk) - self.limit :])
            return
        self.buf += chunk
        if len(self.buf) > 2 * self.limit:  # trim rarely: a spewing stream costs one copy per cap
            drop = len(self.buf) - self.limit
            del self.buf[:drop]
            self.cut += drop

    def kept(self) -> tuple[bytes, int]:
        """(the bytes kept, how many earlier bytes were cut)."""
        extra = max(0, len(self.buf) - self.limit)
        return bytes(self.buf[extra:]), self.cut + extra

    def text(self) -> str:
        """The kept bytes as text behind the cut marker, if any; a UTF-8 sequence split by the
        cut is dropped whole, and invalid bytes become U+FFFD (values.py)."""
        data, cut = self.kept()
        if not cut:
            return values.text(data.decode("utf-8", errors="replace"))
        start = 0
        while start < min(len(data), 3) and data[start] & 0xC0 == 0x80:
            start += 1
        return marker(cut + start) + values.text(data[start:].decode("utf-8", errors="replace"))


class Capture:
    """The output of one handler call as its handler reports it; one per `StepContext`."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.stdout = Tail(limit)
        self.stderr = Tail(limit)
        self.exit_code: int | None = None
        """A process's exit status (negative: the signal that killed it), or an HTTP status."""

    def write(
        self, stream: str, data: bytes | bytearray | memoryview | str, *, cut_before: int = 0
    ) -> None:
        """Append to "stdout" or "stderr"."""
        tail = self.stderr if stream == "stderr" else self.stdout
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        tail.add(raw, cut_before=cut_before)

    @property
    def truncated(self) -> bool:
        return self.stdout.kept()[1] > 0 or self.stderr.kept()[1] > 0
