"""Putting publishes into nats-py's buffer as `nc.publish` would: the one fast path.

`nc.publish` checks a publish, formats its PUB (or HPUB) command, appends it
to the client's pending buffer and kicks the flusher task that writes the
buffer out. Awaited once per publish, that costs a coroutine and, on trio, a
crossing of the bridge each. Here the same steps are taken without a wait
where none is needed (`buffered`, `buffered_run`: connected, the flusher
alive, room in the buffer), and a run of plain publishes becomes one command
(`PubRun`). Whatever needs a wait (a full buffer, a reconnect, a drain) goes
through `publish_all`, which hands those to `nc.publish`: it knows the buffer
limits of every state. docs/nats.md lists the client internals relied on.

Everything here runs on the asyncio side.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import nats

from exoarmur.actors.nats.messages import Publish

__all__ = ["PubRun", "buffered", "buffered_run", "command", "publish_all", "refused"]

# nats-py's header rules: keys are RFC 7230 tokens; CR and LF in values
# become spaces.
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
# What nats-py's publish refuses in a subject (CR/LF would inject protocol).
_SUBJECT_REFUSED = re.compile(r"[ \t\r\n]")


def refused(nc: Any, subject: str, reply: str, data: bytes) -> Exception | None:
    """What `nc.publish` would raise before buffering a publish."""
    if not subject or _SUBJECT_REFUSED.search(subject) or (reply and _SUBJECT_REFUSED.search(reply)):
        return nats.errors.BadSubjectError()
    if len(data) > nc._max_payload:
        return nats.errors.MaxPayloadError()
    return None


def _pub_line(subject: str, reply: str, size: int) -> bytes:
    return b"PUB %s %s %d\r\n" % (subject.encode(), reply.encode(), size)


def command(subject: str, data: bytes, headers: dict[str, str] | None, reply: str) -> bytes | None:
    """The PUB (or HPUB) command `nc.publish` buffers, byte for byte; None
    for a header key nats-py refuses (it raises BadHeaderError)."""
    if headers is None:
        return b"%s%s\r\n" % (_pub_line(subject, reply, len(data)), data)
    block = [b"NATS/1.0\r\n"]
    for key, value in headers.items():
        key = key.strip()
        if not key:
            continue
        if not _HEADER_KEY.fullmatch(key):
            return None
        block.append(b"%s: %s\r\n" % (key.encode(), value.strip().translate(_HEADER_NEWLINES).encode()))
    block.append(b"\r\n")
    header = b"".join(block)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(), reply.encode(), len(header), len(header) + len(data), header, data
    )


class PubRun:
    """A run's publishes without headers, gathered as one command: each
    checked as `nc.publish` checks it, once per (subject, reply, size) in
    the run, whose PUB line is then made once too."""

    __slots__ = ("parts", "count", "size", "_lines")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.count = self.size = 0
        self._lines: dict[tuple[str, str, int], bytes] = {}

    def add(self, nc: Any, m: Publish) -> Exception | None:
        """Gathered; or what `nc.publish` would raise for it (nothing gathered)."""
        key = (m.subject, m.reply, len(m.data))
        line = self._lines.get(key)
        if line is None:
            error = refused(nc, m.subject, m.reply, m.data)
            if error is not None:
                return error
            line = self._lines[key] = _pub_line(*key)
        self.parts += (line, m.data, b"\r\n")
        self.count += 1
        self.size += key[2]
        return None

    def command(self) -> bytes:
        return b"".join(self.parts)


def _takes_publishes(nc: Any) -> bool:
    """nats-py buffers a publish as `nc.publish` would: connected, not draining."""
    return nc.is_connected and not nc.is_draining_pubs and hasattr(nc, "_send_command")


def _can_buffer(nc: Any) -> bool:
    """nats-py takes a publish into its buffer without a wait: it takes
    publishes, and its flusher is alive to write them."""
    return _takes_publishes(nc) and nc._flusher_task is not None and not nc._flusher_task.done()


def _count(nc: Any, messages: int, payload: int) -> None:
    """nats-py's counters, as `nc.publish` keeps them."""
    nc.stats["out_msgs"] += messages
    nc.stats["out_bytes"] += payload


def _flusher_idle(nc: Any) -> bool:
    """Nothing is queued for nats-py's flusher: buffered bytes need a kick."""
    return nc._flush_queue is not None and nc._flush_queue.empty()


def _append(nc: Any, command: bytes, messages: int, payload: int) -> bool:
    """Put `command` in nats-py's buffer as `nc.publish` does, if it has room,
    and kick its flusher; False: no room."""
    if nc._max_pending_size > 0 and nc._pending_data_size + len(command) > nc._max_pending_size:
        return False
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    _count(nc, messages, payload)
    if _flusher_idle(nc):
        nc._flush_queue.put_nowait(asyncio.get_running_loop().create_future())
    return True


def buffered(nc: Any, subject: str, data: bytes, headers: dict[str, str] | None = None, reply: str = "") -> bool:
    """One publish straight into nats-py's buffer, when that needs no wait
    (`_can_buffer`, nothing refused, room). False: it was not (publish it
    through the mailbox, where every state is handled)."""
    if not _can_buffer(nc) or refused(nc, subject, reply, data) is not None:
        return False
    pub = command(subject, data, headers, reply)
    return pub is not None and _append(nc, pub, 1, len(data))


def buffered_run(nc: Any, batch: list[Publish]) -> list[Exception | None] | None:
    """A run of publishes without headers straight into nats-py's buffer, as
    one command, when none needs a wait: one result per publish (None, or
    what `nc.publish` would raise). None: not so, nothing was buffered
    (`publish_all` handles every state)."""
    if not _can_buffer(nc) or any(m.headers for m in batch):
        return None
    run = PubRun()
    results = [run.add(nc, m) for m in batch]
    if run.count and not _append(nc, run.command(), run.count, run.size):
        return None
    return results


async def publish_all(nc: Any, batch: list[Publish]) -> list[Exception | None]:
    """In order, one result per publish (None, or what nats-py raised).
    Connected, the run's plain publishes go into nats-py's buffer as one
    command, with the checks `nc.publish` makes on each; a publish with
    headers, or any while reconnecting or draining, goes through
    `nc.publish` (which knows the buffer limits of those states)."""
    results: list[Exception | None] = [None] * len(batch)
    fast = _takes_publishes(nc)
    run = PubRun()
    for index, m in enumerate(batch):
        if fast and not m.headers:
            results[index] = run.add(nc, m)
            continue
        if run.count:  # keep the order: what is gathered goes first
            await _send_run(nc, run)
            run = PubRun()
        try:
            await nc.publish(m.subject, m.data, reply=m.reply, headers=m.headers)
        except Exception as exc:  # noqa: BLE001 - each publish's own error, coded by the caller
            results[index] = exc
    if run.count:
        await _send_run(nc, run)
    return results


async def _send_run(nc: Any, run: PubRun) -> None:
    """Buffer the gathered PUB commands as one, waiting for room as
    `nc.publish` does, then kick the flusher."""
    _count(nc, run.count, run.size)
    await nc._send_command(run.command())
    if _flusher_idle(nc):
        await nc._flush_pending()
