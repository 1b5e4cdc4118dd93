"""The publish fast path refuses exactly what nats-py's own publish refuses,
so a run buffered as one command loses nothing and lets nothing bad through."""

from __future__ import annotations

import types

import nats.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoarmur.actors.nats.buffering import PubRun, command, refused
from exoarmur.actors.nats.messages import Publish

client = pytest.importorskip("nats.aio.client")
validate = getattr(client, "_validate_subject", None)

SUBJECT_CHARS = st.sampled_from(list("ab.*>_-09 \t\r\n\x0b\x0c\x85\u00a0\u2028é"))


def nats_refuses(subject: str, reply: str) -> bool:
    try:
        validate(subject)
        if reply:
            validate(reply)
    except nats.errors.BadSubjectError:
        return True
    return False


@pytest.mark.skipif(validate is None, reason="this nats-py validates no subjects")
@given(subject=st.text(SUBJECT_CHARS, max_size=12), reply=st.text(SUBJECT_CHARS, max_size=6))
def test_subjects_are_refused_as_nats_py_refuses_them(subject, reply):
    nc = types.SimpleNamespace(_max_payload=1024)
    error = refused(nc, subject, reply, b"x")
    assert (error is not None) == nats_refuses(subject, reply)
    if error is not None:
        assert isinstance(error, nats.errors.BadSubjectError)


@given(size=st.integers(min_value=0, max_value=2048))
def test_payloads_over_the_servers_limit_are_refused(size):
    nc = types.SimpleNamespace(_max_payload=1024)
    error = refused(nc, "a.b", "", b"x" * size)
    assert (error is not None) == (size > 1024)
    assert error is None or isinstance(error, nats.errors.MaxPayloadError)


HEADER_TEXT = st.text(st.sampled_from(list("aZ-_.:!~ \t\r\né\"(")), max_size=6)


def nats_buffers(m: Publish) -> bytes | None:
    """What nats-py's own publish puts in its buffer for `m`; None if it
    refuses a header key. Driven by hand: with no flusher it never waits."""
    nc = client.Client()
    nc._pending, nc._pending_data_size, nc._max_pending_size, nc._flush_queue = [], 0, 0, None
    coroutine = nc._send_publish(m.subject, m.reply, m.data, len(m.data), m.headers)
    try:
        coroutine.send(None)
    except StopIteration:
        return nc._pending[0]
    except nats.errors.BadHeaderError:
        return None
    raise AssertionError("nats-py waited while buffering a publish")


@given(
    data=st.binary(max_size=20),
    reply=st.sampled_from(["", "_INBOX.x.y"]),
    headers=st.none() | st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=3),
)
def test_a_command_is_byte_for_byte_what_nats_py_buffers(data, reply, headers):
    """The fast path (a served reply, a request) writes the bytes nats-py
    would, headers included; where nats-py refuses a header, it steps aside."""
    m = Publish("a.b", data, headers, reply=reply)
    assert command(m.subject, m.data, m.headers, m.reply) == nats_buffers(m)


RUN_PUBLISHES = st.builds(
    Publish,
    subject=st.sampled_from(["a.b", "a.c", "bad subject", ""]),
    data=st.sampled_from([b"", b"x", b"yy", b"z" * 1025]),
    reply=st.sampled_from(["", "_INBOX.x.y", "bad reply"]),
)


@given(batch=st.lists(RUN_PUBLISHES, max_size=12))
def test_a_gathered_run_is_what_nats_py_buffers_for_each_and_refuses_the_same(batch):
    """Lines made once per (subject, reply, size) in a run: the command is
    still, byte for byte, each accepted publish's in order, and each refused
    one gets the error nats-py's publish would raise."""
    nc = types.SimpleNamespace(_max_payload=1024)
    run = PubRun()
    results = [run.add(nc, m) for m in batch]
    expected = [refused(nc, m.subject, m.reply, m.data) for m in batch]
    assert [type(r) for r in results] == [type(e) for e in expected]
    accepted = [m for m, e in zip(batch, expected) if e is None]
    assert run.command() == b"".join(nats_buffers(m) for m in accepted)
    assert (run.count, run.size) == (len(accepted), sum(len(m.data) for m in accepted))
