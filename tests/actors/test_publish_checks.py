"""The publish fast path refuses exactly what nats-py's own publish refuses,
so a run buffered as one command loses nothing and lets nothing bad through."""

from __future__ import annotations

import types

import nats.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.nats_connection import Publish, _command, _refused

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
    error = _refused(nc, subject, reply, b"x")
    assert (error is not None) == nats_refuses(subject, reply)
    if error is not None:
        assert isinstance(error, nats.errors.BadSubjectError)


@given(size=st.integers(min_value=0, max_value=2048))
def test_payloads_over_the_servers_limit_are_refused(size):
    nc = types.SimpleNamespace(_max_payload=1024)
    error = _refused(nc, "a.b", "", b"x" * size)
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
    assert _command(m.subject, m.data, m.headers, m.reply) == nats_buffers(m)
