"""The main process's logs (actors/app/logs.py): one event per line, JSON or
text; audit events logged with their codes, a flood of one kind kept to a
few lines a second with the rest counted; `[log]` checked like every key."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exoarmur.actors.app.config import parse_config_text
from exoarmur.actors.app.logs import BURST, LogConfig, LoggedAuditSink, logging_to_stderr
from exoarmur.runtime import AuditEvent, InvalidInput, MemoryAuditSink, ReasonCode
from exoarmur.runtime.logs import logged

LOG = logging.getLogger("exoarmur.test")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines()]


def test_json_lines_carry_time_level_event_message_and_fields(capsys):
    with logging_to_stderr(LogConfig(format="json")):
        logged(LOG, logging.WARNING, "nats.disconnected", "connection lost", code="NATS_DISCONNECTED", path="nats/connection", tenant=None)
        LOG.debug("not shown at info")
    [line] = lines(capsys.readouterr().err)
    assert line["level"] == "warning" and line["event"] == "nats.disconnected" and line["message"] == "connection lost"
    assert (line["code"], line["path"]) == ("NATS_DISCONNECTED", "nats/connection")
    assert "tenant" not in line  # None is left out
    assert line["time"].endswith("Z") and line["time"][:4].isdigit()


def test_text_on_a_terminal_json_otherwise():
    assert LogConfig().json(io.StringIO()) is True
    assert LogConfig().json(Terminal()) is False
    assert LogConfig(format="json").json(Terminal()) is True
    assert LogConfig(format="text").json(io.StringIO()) is False


def test_text_lines_read_as_sentences_with_the_fields_after(capsys):
    with logging_to_stderr(LogConfig(format="text", level="debug")):
        logged(LOG, logging.DEBUG, "thing.done", "done", detail="two words", n=3)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ' DEBUG exoarmur: done [thing.done detail="two words" n=3]' in err


def test_the_handler_is_removed_when_the_block_ends(capsys):
    logger = logging.getLogger("exoarmur")
    before = list(logger.handlers)
    with logging_to_stderr(LogConfig(format="json")):
        assert len(logger.handlers) == len(before) + 1
    assert logger.handlers == before
    LOG.warning("after the block")
    assert "after the block" not in capsys.readouterr().err


def event(at: float, *, kind: str = "rejected", code: ReasonCode = ReasonCode.RATE_LIMITED) -> AuditEvent:
    return AuditEvent(kind=kind, code=code, at=at, path="intents/desk", tenant="acme", correlation_id="c-1", detail="too fast")


def test_audit_events_are_logged_with_their_code_and_ids(capsys):
    inner = MemoryAuditSink()
    with logging_to_stderr(LogConfig(format="json")):
        LoggedAuditSink(inner).emit(event(0.0))
    [line] = lines(capsys.readouterr().err)
    assert line["event"] == "audit.rejected" and line["level"] == "warning"
    assert (line["code"], line["path"], line["tenant"], line["correlation_id"]) == ("RATE_LIMITED", "intents/desk", "acme", "c-1")
    assert len(inner.events) == 1  # handed on as well


def test_a_flood_is_a_burst_then_one_a_second_with_the_rest_counted(capsys):
    inner = MemoryAuditSink()
    sink = LoggedAuditSink(inner)
    with logging_to_stderr(LogConfig(format="json")):
        for i in range(1000):  # 1,000 refusals over 2 s
            sink.emit(event(i * 0.002))
        sink.emit(event(0.5, kind="crashed", code=ReasonCode.ACTOR_CRASHED))  # another kind: its own budget
    logged_ = lines(capsys.readouterr().err)
    floods = [line for line in logged_ if line["event"] == "audit.rejected"]
    assert BURST <= len(floods) <= BURST + 3  # the burst, then about one a second
    assert sum(line.get("suppressed", 0) for line in floods) + len(floods) <= 1000
    assert floods[-1]["suppressed"] > 100  # the next one says how many were left out
    assert any(line["event"] == "audit.crashed" for line in logged_)
    assert len(inner.events) == 1001  # the audit trail itself loses nothing


def test_escalations_are_errors_breakers_closing_are_info(capsys):
    with logging_to_stderr(LogConfig(format="json")):
        sink = LoggedAuditSink(MemoryAuditSink())
        sink.emit(event(0.0, kind="crashed", code=ReasonCode.ESCALATED))
        sink.emit(event(0.0, kind="BREAKER_CLOSED", code=ReasonCode.BREAKER_OPEN))
    levels = {line["event"]: line["level"] for line in lines(capsys.readouterr().err)}
    assert levels == {"audit.crashed": "error", "audit.breaker_closed": "info"}


@pytest.mark.parametrize(
    "text, problem",
    [
        ('[log]\nformat = "xml"\n', "log.format: must be one of auto, json, text"),
        ('[log]\nlevel = "loud"\n', "log.level: must be one of debug, info, warning, error"),
        ('[log]\ncolour = true\n', "log.colour: unknown key"),
    ],
)
def test_bad_log_settings_are_config_invalid(text, problem):
    with pytest.raises(InvalidInput) as caught:
        parse_config_text(text, source="t.toml", base_dir=None)
    assert caught.value.code is ReasonCode.CONFIG_INVALID and problem in caught.value.detail


def test_the_environment_sets_the_format():
    config = parse_config_text("", source="t", base_dir=None, environ={"EXOARMUR_LOG__FORMAT": "json"})
    assert config.log == LogConfig(format="json")
