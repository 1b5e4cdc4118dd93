"""The remote wire: a request's payload (`ask|tell <path>\\n` then the
envelope) and its reply (a value, a message, or a code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoarmur.actors.remote.wire import (
    CRASH_DETAIL,
    MAX_PATH,
    decode_reply,
    encode_error,
    encode_result,
    frame,
    unframe,
    valid_system_name,
)
from exoarmur.runtime import ExoarmurError, ReasonCode
from tests.runtime.support import Add

# What spawn accepts as a path (runtime/system.py's _PATH).
SEGMENT = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=12)
PATHS = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class TestRequestFrame:
    @given(mode=st.sampled_from([b"ask", b"tell"]), path=PATHS, envelope=st.binary(max_size=64))
    def test_a_framed_request_reads_back_as_written(self, mode, path, envelope):
        assert unframe(frame(mode, path, envelope)) == (mode, path, envelope)

    @given(data=st.binary(max_size=64))
    def test_any_bytes_are_read_or_refused_with_envelope_invalid(self, data):
        try:
            mode, path, envelope = unframe(data)
        except ExoarmurError as exc:
            assert exc.code is ReasonCode.ENVELOPE_INVALID
        else:
            assert mode in (b"ask", b"tell") and data == b"%s %s\n%s" % (mode, path.encode(), envelope)

    @pytest.mark.parametrize("data", [b"", b"ask", b"ask echo", b"ASK echo\n{}", b"ask\n{}", b"ask \xff\n{}"])
    def test_malformed_target_lines_are_refused(self, data):
        with pytest.raises(ExoarmurError) as caught:
            unframe(data)
        assert caught.value.code is ReasonCode.ENVELOPE_INVALID


class TestReply:
    @given(value=JSON)
    def test_a_json_result_reads_back_as_sent(self, value):
        assert decode_reply(encode_result(value)) == value

    def test_a_registered_message_result_reads_back_as_sent(self):
        assert decode_reply(encode_result(Add(3))) == Add(3)

    @pytest.mark.parametrize("value", [(1, 2), {1, 2}, object(), {"k": object()}, {1: "one"}])
    def test_a_result_that_cannot_travel_is_envelope_invalid(self, value):
        with pytest.raises(ExoarmurError) as caught:
            decode_reply(encode_result(value))
        assert caught.value.code is ReasonCode.ENVELOPE_INVALID

    @pytest.mark.parametrize("code", list(ReasonCode))
    def test_a_coded_reply_raises_its_code_and_detail(self, code):
        """Every code travels; a crash's detail (the exception's text) does not."""
        with pytest.raises(ExoarmurError) as caught:
            decode_reply(encode_error(code, "RuntimeError: secret-laden text"))
        crash = code in (ReasonCode.ACTOR_CRASHED, ReasonCode.ESCALATED)
        assert caught.value.code is code
        assert caught.value.detail == (CRASH_DETAIL if crash else "RuntimeError: secret-laden text")

    @pytest.mark.parametrize("name", ["node-a", "node_1", "A" * 128])
    def test_a_system_name_is_one_subject_token(self, name):
        assert valid_system_name(name) == name

    @pytest.mark.parametrize("name", [">", "*", "a.b", "a b", "", "x" * 129, None, 3])
    def test_a_wildcard_dot_or_blank_in_a_system_name_is_config_invalid(self, name):
        """A gateway for ">" would serve every system's subject."""
        with pytest.raises(ExoarmurError) as caught:
            valid_system_name(name)
        assert caught.value.code is ReasonCode.CONFIG_INVALID

    def test_a_target_path_longer_than_an_actors_is_envelope_invalid(self):
        """The path is refused before it is looked up (or kept in an audit event)."""
        with pytest.raises(ExoarmurError) as caught:
            unframe(frame(b"ask", "a" * (MAX_PATH + 1), b"{}"))
        assert caught.value.code is ReasonCode.ENVELOPE_INVALID
        assert len(caught.value.detail) < 100

    @given(data=st.binary(max_size=64))
    def test_any_reply_bytes_give_a_value_or_a_coded_error(self, data):
        try:
            decode_reply(data)
        except ExoarmurError as exc:
            assert isinstance(exc.code, ReasonCode)
