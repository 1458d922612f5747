"""Where a request's time goes: per-stage timings, the models it ran and the errors it
answered, collected while it runs and read once at its end (for its log line and metrics).

The record is the request's own: `begin()` makes a fresh one in the request's context (a
`ContextVar`, so each request, thread or greenlet sees only its own) and `end()` drops it.
The code that does the work marks its stage where it happens (`with timed("decode"): ...`);
outside a request (tests, the command line, the benchmark's in-process side) there is no
record and marking costs one lookup. A leaf module: it imports nothing of the service.

Stages: read_body, decode, preprocess, infer, postprocess, render, serialize. A stage's time
is its own: a stage timed inside another (decoding inside rendering a picture) is taken out of
the outer one, so the stages of a request add up to at most its latency.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

STAGES = ("read_body", "decode", "preprocess", "infer", "postprocess", "render", "serialize")
# The detector's own timing names (DetectionResult.timings_ms) -> our stage names.
DETECTOR_STAGES: Mapping[str, str] = {
    "preprocess": "preprocess",
    "inference": "infer",
    "postprocess": "postprocess",
}


@dataclass
class RequestRecord:
    """What one request did. Mutable, and only ever reachable from that request's context."""

    # (stage, seconds) in the order they happened; one entry per image for per-image stages.
    events: list[tuple[str, float]] = field(default_factory=list)
    models: set[str] = field(default_factory=set)
    images: int = 0  # images that went through the detector
    errors: list[str] = field(default_factory=list)  # error codes answered (request, images)
    _open: list[float] = field(default_factory=list)  # time of nested stages, per open stage

    def add(self, stage: str, seconds: float) -> None:
        self.events.append((stage, seconds))
        if self._open:
            self._open[-1] += seconds

    def stage_ms(self) -> dict[str, float]:
        """Milliseconds per stage, summed over the request's images, in STAGES order."""
        totals = dict.fromkeys(STAGES, 0.0)
        for stage, seconds in self.events:
            totals[stage] = totals.get(stage, 0.0) + seconds * 1000
        return {stage: round(ms, 2) for stage, ms in totals.items() if ms > 0}

    @property
    def model(self) -> str:
        """One label value for the request: its model, `multiple`, or `none`."""
        if len(self.models) == 1:
            return next(iter(self.models))
        return "multiple" if self.models else "none"


class _Timed(Protocol):
    @property
    def timings_ms(self) -> Mapping[str, float]: ...


_Result = TypeVar("_Result", bound=_Timed)

_current: ContextVar[RequestRecord | None] = ContextVar("detection_request", default=None)


def begin() -> tuple[RequestRecord, Token[RequestRecord | None]]:
    record = RequestRecord()
    return record, _current.set(record)


def end(token: Token[RequestRecord | None]) -> None:
    _current.reset(token)


def current() -> RequestRecord | None:
    return _current.get()


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time the block as `stage` of the current request (its own time: nested stages out)."""
    record = _current.get()
    if record is None:
        yield
        return
    started = time.perf_counter()
    record._open.append(0.0)
    try:
        yield
    finally:
        nested = record._open.pop()
        elapsed = time.perf_counter() - started
        record.events.append((stage, max(0.0, elapsed - nested)))
        if record._open:
            record._open[-1] += elapsed


def uses_models(names: Iterable[str]) -> None:
    """The models the request's images run on (registry names, checked before this)."""
    record = _current.get()
    if record is not None:
        record.models.update(names)


def detected(model: str, result: _Result) -> _Result:
    """One image through the detector, with the detector's own stage timings; returns the
    result unchanged."""
    record = _current.get()
    if record is None:
        return result
    record.models.add(model)
    record.images += 1
    for name, ms in result.timings_ms.items():
        stage = DETECTOR_STAGES.get(name)
        if stage is not None:
            record.add(stage, ms / 1000)
    return result


def answered_error(code: str) -> None:
    """An error answered to the caller: the whole request's, or one image's in a batch."""
    record = _current.get()
    if record is not None:
        record.errors.append(code)
