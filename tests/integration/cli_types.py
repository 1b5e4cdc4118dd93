"""An execution type for the CLI tests: noop, but every intent of it waits
for an operator's approval (`[execution_types.approved] class = ...`)."""

from __future__ import annotations

from exoarmur.actors.execution import Noop


class Approved(Noop):
    name = "approved"
    approval = True
