"""Execution types: the plug-in API, the actor that hosts a type, the registry
(entry points and config), and the two shipped types, `noop` and `ledger`.

How to write one: docs/execution-types.md. What an intent asks of a type and
what it is answered: actors/intents/effects.py.
"""

from exoarmur.actors.execution.actor import ExecutionActor
from exoarmur.actors.execution.api import ExecutionError, ExecutionType
from exoarmur.actors.execution.ledger import Ledger, read_ledger
from exoarmur.actors.execution.ledger_file import LedgerScan, scan_ledger
from exoarmur.actors.execution.noop import Noop
from exoarmur.actors.execution.registry import GROUP, execution_spec, load_types
from exoarmur.actors.intents.effects import Reconciled
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import IntentState

__all__ = [
    "GROUP",
    "ExecutionActor",
    "ExecutionError",
    "ExecutionType",
    "IntentRecord",
    "IntentState",
    "Ledger",
    "LedgerScan",
    "Noop",
    "Reconciled",
    "execution_spec",
    "load_types",
    "read_ledger",
    "scan_ledger",
]
