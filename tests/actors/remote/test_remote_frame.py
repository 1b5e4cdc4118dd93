"""The gateway's request payload: `ask|tell <path>\\n` then the envelope."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoarmur.actors.remote.gateway import frame, unframe
from exoarmur.runtime import ExoarmurError, ReasonCode

# What spawn accepts as a path (runtime/system.py's _PATH).
SEGMENT = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=12)
PATHS = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)


@given(mode=st.sampled_from([b"ask", b"tell"]), path=PATHS, envelope=st.binary(max_size=64))
def test_a_framed_request_reads_back_as_written(mode, path, envelope):
    assert unframe(frame(mode, path, envelope)) == (mode, path, envelope)


@given(data=st.binary(max_size=64))
def test_any_bytes_are_read_or_refused_with_envelope_invalid(data):
    try:
        mode, path, envelope = unframe(data)
    except ExoarmurError as exc:
        assert exc.code is ReasonCode.ENVELOPE_INVALID
    else:
        assert mode in (b"ask", b"tell") and data == b"%s %s\n%s" % (mode, path.encode(), envelope)


@pytest.mark.parametrize("data", [b"", b"ask", b"ask echo", b"ASK echo\n{}", b"ask\n{}", b"ask \xff\n{}"])
def test_malformed_target_lines_are_refused(data):
    with pytest.raises(ExoarmurError) as caught:
        unframe(data)
    assert caught.value.code is ReasonCode.ENVELOPE_INVALID
