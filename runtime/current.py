"""The actor whose handler is running in this task.

A drain sets it once for its task; eager dispatch, concurrent handlers,
`ask_then` callbacks and `call_as_self` set it around what they run. A send
made while it is set inherits that handler's deadline, tenant and trace
(runtime/ref.py's `outgoing_envelope`): that is how deadlines travel end to
end without a parameter on every call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

__all__ = ["CURRENT"]

# The running handler's ActorContext (runtime/context.py), or None.
CURRENT: ContextVar[Any] = ContextVar("exoarmur_current_actor", default=None)
