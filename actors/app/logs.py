"""The main process's logs: one event per line on stderr, JSON or text.

    {"time": "2026-12-07T07:30:00.123Z", "level": "warning", "event": "nats.disconnected",
     "message": "connection lost", "code": "NATS_DISCONNECTED", "path": "nats/connection"}

    2026-12-07T07:30:00.123Z WARNING exoarmur: connection lost [nats.disconnected code=NATS_DISCONNECTED path=nats/connection]

`[log] format` (or `exoarmur run --log-format`): "json", "text", or "auto"
(the default): text on a terminal, JSON otherwise. `[log] level`: debug,
info (the default), warning, error. Events come from the runtime's
`logged` (runtime/logs.py) and from `LoggedAuditSink`: every audit event
with its code, a few per kind and code each second at most, the ones left
out counted in the next (`suppressed`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import orjson

from exoarmur.runtime import AuditEvent, AuditSink, InvalidInput, ReasonCode
from exoarmur.runtime.logs import EVENT, FIELDS, logged

__all__ = ["FORMATS", "LEVELS", "LogConfig", "LoggedAuditSink", "logging_to_stderr", "parse_log"]

LOGGER = logging.getLogger("exoarmur")
FORMATS = ("auto", "json", "text")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
KEYS = ("format", "level")
# The audit events logged per kind and code: a burst of BURST, then RATE a second.
BURST = 5
RATE = 1.0
ERRORS = frozenset({ReasonCode.ESCALATED, ReasonCode.FATAL})
QUIET_KINDS = {"BREAKER_CLOSED": logging.INFO, "BREAKER_HALF_OPEN": logging.INFO}


@attrs.frozen(kw_only=True)
class LogConfig:
    format: str = "auto"
    level: str = "info"

    def json(self, stream: Any) -> bool:
        if self.format == "auto":
            isatty = getattr(stream, "isatty", None)
            return not (isatty is not None and isatty())
        return self.format == "json"


def parse_log(table: Mapping[str, Any], *, source: str) -> LogConfig:
    for key in table:
        if key not in KEYS:
            raise _invalid(source, f"log.{key}", f"unknown key (expected one of: {', '.join(KEYS)})")
    format_ = table.get("format", "auto")
    if format_ not in FORMATS:
        raise _invalid(source, "log.format", f"must be one of {', '.join(FORMATS)}, got {format_!r}")
    level = table.get("level", "info")
    if level not in LEVELS:
        raise _invalid(source, "log.level", f"must be one of {', '.join(LEVELS)}, got {level!r}")
    return LogConfig(format=format_, level=level)


def _invalid(source: str, key: str, problem: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"{source}: {key}: {problem}")


# ---- formats ---------------------------------------------------------------------


def _time(record: logging.LogRecord) -> str:
    at = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(record: logging.LogRecord) -> str:
    return getattr(record, EVENT, None) or record.name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "event": _event(record),
            "message": record.getMessage(),
        }
        for key, value in getattr(record, FIELDS, {}).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={_shown(value)}" for key, value in getattr(record, FIELDS, {}).items())
        tail = f" [{_event(record)}{' ' + fields if fields else ''}]"
        text = f"{_time(record)} {record.levelname} exoarmur: {record.getMessage()}{tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _shown(value: object) -> str:
    text = str(value)
    return orjson.dumps(text).decode() if not text or any(c.isspace() or c in '"[]=' for c in text) else text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when the record comes (tests swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextlib.contextmanager
def logging_to_stderr(config: LogConfig) -> Iterator[None]:
    """Log the process's events to stderr, as `config` says, until the block ends."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if config.json(sys.stderr) else TextFormatter())
    before = (LOGGER.level, LOGGER.propagate)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(LEVELS[config.level])
    LOGGER.propagate = False  # one line per event, whatever the root logger does
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.level, LOGGER.propagate = before


# ---- the audit events, logged ------------------------------------------------------

AUDIT_LOGGER = logging.getLogger("exoarmur.audit")


class LoggedAuditSink:
    """An AuditSink that hands every event to `inner` and logs it: at most
    BURST at once per kind and code, then RATE a second (on the events' own
    clock); the next one logged says how many were left out."""

    def __init__(self, inner: AuditSink, *, logger: logging.Logger = AUDIT_LOGGER) -> None:
        self.inner = inner
        self.logger = logger
        self._buckets: dict[tuple[str, ReasonCode], list[float]] = {}  # [tokens, at, suppressed]

    def emit(self, event: AuditEvent) -> None:
        self.inner.emit(event)
        key = (event.kind, event.code)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(BURST), event.at, 0]
        tokens = min(float(BURST), bucket[0] + max(event.at - bucket[1], 0.0) * RATE)
        bucket[1] = max(event.at, bucket[1])  # a clock that steps back refills nothing
        if tokens < 1.0:
            bucket[0] = tokens
            bucket[2] += 1
            return
        bucket[0] = tokens - 1.0
        suppressed, bucket[2] = int(bucket[2]), 0
        logged(
            self.logger,
            level_of(event),
            f"audit.{event.kind.lower()}",
            event.detail or event.kind,
            code=event.code.value,
            path=event.path,
            tenant=event.tenant,
            message_type=event.message,
            correlation_id=event.correlation_id,
            trace_id=event.trace_id,
            suppressed=suppressed or None,
        )

    def close(self) -> None:
        self.inner.close()


def level_of(event: AuditEvent) -> int:
    if event.code in ERRORS:
        return logging.ERROR
    return QUIET_KINDS.get(event.kind, logging.WARNING)
