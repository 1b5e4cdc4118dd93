"""Log events for people: what the runtime and its actors tell the operator.

The audit trail is the record of decisions; logs say what happened and
when, for whoever runs the process. An event is a standard `logging` record
with a stable dotted name and fields:

    logged(logger, logging.WARNING, "nats.disconnected", "connection lost", path="nats/connection")

How it is shown (JSON lines or text on stderr) is the main process's choice
(actors/app/logs.py). The record is made only if the level is enabled.
"""

from __future__ import annotations

import logging

__all__ = ["FIELDS", "logged"]

FIELDS = "exoarmur_fields"  # the record attribute that carries an event's fields
EVENT = "exoarmur_event"


def logged(logger: logging.Logger, level: int, event: str, message: str, **fields: object) -> None:
    """Log `event` (a dotted name) with `message` and `fields` (None values left out)."""
    if logger.isEnabledFor(level):
        kept = {key: value for key, value in fields.items() if value is not None}
        logger.log(level, message, extra={EVENT: event, FIELDS: kept})
