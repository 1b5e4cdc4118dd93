"""The actor whose handler is running in this task.

A drain sets it once for its task; eager dispatch, concurrent handlers,
`ask_then` callbacks and `call_as_self` set it around what they run. A send
made while it is set inherits that handler's deadline, tenant and trace
(runtime/ref.py's `outgoing_envelope`): that is how deadlines travel end to
end without a parameter on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["CURRENT", "detached"]

# The running handler's ActorContext (runtime/context.py), or None.
CURRENT: ContextVar[Any] = ContextVar("exoarmur_current_actor", default=None)


@contextmanager
def detached() -> Iterator[None]:
    """Sends made inside inherit nothing from the running handler (deadline,
    tenant, trace): for work that is not the handler's own and must outlive
    its deadline, such as an audit sink handing over the handler's failure."""
    token = CURRENT.set(None)
    try:
        yield
    finally:
        CURRENT.reset(token)
