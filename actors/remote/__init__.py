"""Actors in other processes: a gateway per system, and refs that cross NATS.

- `wire.py`: what a request and its reply look like on NATS.
- `gateway.py`: the receiving side (`Gateway`, `answer_remote`); only messages
  an actor exports for remote use (`@handles(..., remote=True)`) cross it,
  never supervision or control signals, and a remote deadline is capped.
- `ref.py`: the sending side (`RemoteRef`), which builds its envelope as a
  local ref does.
"""

from exoarmur.actors.remote.gateway import MAX_REMOTE_DEADLINE, Gateway, answer_remote
from exoarmur.actors.remote.ref import RemoteRef
from exoarmur.actors.remote.wire import gateway_subject

__all__ = ["MAX_REMOTE_DEADLINE", "Gateway", "RemoteRef", "answer_remote", "gateway_subject"]
