"""The wire codec: round trips of every field type, deadlines as remaining
milliseconds re-anchored on the receiver's clock, strict decoding that ends in
an envelope or a coded error and nothing else."""

from __future__ import annotations

import enum
import math
import random
from collections import Counter
from typing import Annotated, Any, Optional

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exoarmur.runtime import (
    Actor,
    ActorSystem,
    DeadlineExceeded,
    Denied,
    Envelope,
    ExoarmurError,
    InvalidInput,
    MessageRegistry,
    ReasonCode,
    TenantMismatch,
    handles,
    message,
)
from exoarmur.runtime.bodies import MAX_DEPTH
from exoarmur.runtime.codec import MAX_BYTES, MAX_HEADER_CHARS, decode, decode_message, encode, encode_message

# ---- messages (wire names "test.codec.*") ---------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Point:
    x: int
    y: int


@message("test.codec.inner")
class Inner:
    label: str


@message("test.codec.everything")
class Everything:
    i: int
    f: float
    s: str
    b: bool
    nothing: None
    maybe: int | None
    optional: Optional[str]  # noqa: UP045 - the typing spelling is supported too
    ints: list[int]
    floats: tuple[float, ...]
    pair: tuple[int, str]
    scores: dict[str, float]
    point: Point
    inner: Inner
    inners: list[Inner]
    color: Color
    level: Level
    anything: Any


@message("test.codec.tree")
class Tree:
    value: int
    children: list[Tree]


@message("test.codec.add")
class Add:
    n: int


@message("test.codec.get")
class Get:
    pass


@message("test.codec.blob")
class Blob:
    data: str


@message("test.codec.annotated")
class Labelled:
    n: Annotated[int, "a label"]


@message("test.codec.positive")
class Positive:
    n: int = attrs.field(validator=attrs.validators.gt(0))


@message("test.codec.set_of_tags")
class SetOfTags:
    tags: set[int]


@attrs.frozen
class HoldsFrozenset:
    items: frozenset[int]


@message("test.codec.bad_nested")
class BadNested:
    holder: HoldsFrozenset


@message("test.codec.either")
class Either:
    value: int | str


@message("test.codec.dangling")
class Dangling:
    value: NoSuchType  # noqa: F821 - never defined, on purpose


@attrs.frozen
class NotAMessage:
    n: int


PRIVATE = MessageRegistry()


@message("test.codec.private", registry=PRIVATE)
class Private:
    n: int


EVERYTHING = Everything(
    i=-7,
    f=2.5,
    s="héllo €",
    b=True,
    nothing=None,
    maybe=None,
    optional="x",
    ints=[1, 2, 3],
    floats=(0.5, -1.0),
    pair=(4, "four"),
    scores={"a": 1.5},
    point=Point(1, 2),
    inner=Inner("in"),
    inners=[Inner("a"), Inner("b")],
    color=Color.GREEN,
    level=Level.HIGH,
    anything={"k": [1, "two", None, 3.5, False]},
)

HEADERS = {"v", "m", "b", "ms", "t", "s", "c", "tr", "k", "a"}
NOW = 100.0


def wire(msg: Any = EVERYTHING, **headers: Any) -> dict[str, Any]:
    """The wire object of `msg` with ten seconds left at NOW."""
    return orjson.loads(encode(Envelope(msg, NOW + 10.0, **headers), now=NOW))


def decode_wire(doc: Any, **options: Any) -> Envelope:
    return decode(orjson.dumps(doc), now=NOW, **options)


def invalid(call: Any, *args: Any, **kwargs: Any) -> str:
    """Call it, expect ENVELOPE_INVALID, return the detail."""
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    assert caught.value.code is ReasonCode.ENVELOPE_INVALID
    return caught.value.detail


def decoded_or_coded(data: Any, **options: Any) -> Envelope | ExoarmurError:
    try:
        return decode(data, now=NOW, **options)
    except ExoarmurError as exc:
        return exc


def assert_envelope_or_code(result: Envelope | ExoarmurError) -> None:
    if isinstance(result, Envelope):
        assert result.deadline > NOW
        assert result.reply_to is None
    else:
        assert result.code in {ReasonCode.ENVELOPE_INVALID, ReasonCode.DEADLINE_EXCEEDED}
        assert result.detail


def nested_lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


# ---- strategies -------------------------------------------------------------

ints64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=20)
# Anything orjson can write: ints up to u64 (decoding must refuse the top half).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
# Cheaper to draw ten of: scalars and one level of containers.
json_shallow = (
    json_scalars
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
)
# What a valid `Any` field holds.
any_values = st.recursive(
    st.none() | st.booleans() | ints64 | finite_floats | texts,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
everything = st.builds(
    Everything,
    i=ints64,
    f=finite_floats,
    s=st.text(),
    b=st.booleans(),
    nothing=st.none(),
    maybe=st.none() | ints64,
    optional=st.none() | texts,
    ints=st.lists(ints64, max_size=5),
    floats=st.lists(finite_floats, max_size=5).map(tuple),
    pair=st.tuples(ints64, texts),
    scores=st.dictionaries(texts, finite_floats, max_size=4),
    point=st.builds(Point, ints64, ints64),
    inner=st.builds(Inner, texts),
    inners=st.lists(st.builds(Inner, texts), max_size=3),
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    anything=any_values,
)
optional_texts = st.none() | st.text(max_size=40)

# Wire key (b.<field> for the body) -> the JSON types it accepts.
ACCEPTS: dict[str, set[type]] = {
    "v": {int},
    "m": {str},
    "b": {dict},
    "ms": {int},
    "t": {str, type(None)},
    "s": {str, type(None)},
    "c": {str, type(None)},
    "tr": {str, type(None)},
    "k": {str, type(None)},
    "a": {int},
    "b.i": {int},
    "b.f": {int, float},
    "b.s": {str},
    "b.b": {bool},
    "b.nothing": {type(None)},
    "b.maybe": {int, type(None)},
    "b.optional": {str, type(None)},
    "b.ints": {list},
    "b.floats": {list},
    "b.pair": {list},
    "b.scores": {dict},
    "b.point": {dict},
    "b.inner": {dict},
    "b.inners": {list},
    "b.color": {str},
    "b.level": {int},
}


# ---- round trips -------------------------------------------------------------


class TestRoundTrip:
    def test_every_supported_field_type_survives_a_round_trip(self):
        """A message using every supported field type decodes equal, with the declared types."""
        env = decode(encode(Envelope(EVERYTHING, 110.0), now=NOW), now=NOW)
        got = env.message
        assert got == EVERYTHING
        assert type(got.floats) is tuple and type(got.pair) is tuple
        assert got.color is Color.GREEN and got.level is Level.HIGH
        assert type(got.point) is Point and type(got.inners[1]) is Inner

    def test_header_fields_survive_a_round_trip(self):
        """Tenant, sender, correlation id, trace id, idempotency key and attempt arrive unchanged."""
        sent = Envelope(
            Add(1),
            110.0,
            tenant="acme",
            sender="gateway/in",
            correlation_id="c-1",
            trace_id="t-1",
            idempotency_key="k-1",
            attempt=3,
        )
        got = decode(encode(sent, now=NOW), now=NOW)
        assert got._replace(deadline=0.0) == sent._replace(deadline=0.0)

    def test_wire_object_has_exactly_the_documented_short_keys(self):
        """The wire object has the ten short keys, version 1 and the wire name, nothing else."""
        doc = wire(Add(5), tenant="acme")
        assert set(doc) == HEADERS
        assert doc["v"] == 1 and doc["m"] == "test.codec.add" and doc["b"] == {"n": 5}
        assert (doc["t"], doc["a"]) == ("acme", 1)

    def test_reply_to_never_goes_on_the_wire(self):
        """reply_to changes nothing on the wire and decodes as None."""
        with_reply = encode(Envelope(Add(1), 110.0, reply_to=object()), now=NOW)
        assert with_reply == encode(Envelope(Add(1), 110.0), now=NOW)
        assert decode(with_reply, now=NOW).reply_to is None

    def test_recursive_message_survives_a_round_trip(self):
        """A class whose field refers to itself encodes and decodes."""
        tree = Tree(1, [Tree(2, []), Tree(3, [Tree(4, [])])])
        assert decode(encode(Envelope(tree, 110.0), now=NOW), now=NOW).message == tree

    def test_annotated_field_is_its_underlying_type(self):
        """`Annotated[int, ...]` travels as an int and refuses a str."""
        assert decode(encode(Envelope(Labelled(3), 110.0), now=NOW), now=NOW).message == Labelled(3)
        doc = wire(Labelled(3))
        doc["b"]["n"] = "3"
        assert "field 'n' of test.codec.annotated: expected int, got str" in invalid(decode_wire, doc)

    def test_int_on_the_wire_becomes_a_float_in_a_float_field(self):
        """An int is accepted for a float field and arrives as a float."""
        doc = wire()
        doc["b"]["f"] = 3
        got = decode_wire(doc).message.f
        assert got == 3.0 and type(got) is float

    def test_optional_field_carries_a_value_or_null(self):
        """An `X | None` field takes either a value of X or null."""
        doc = wire()
        doc["b"]["maybe"] = 5
        doc["b"]["optional"] = None
        got = decode_wire(doc).message
        assert (got.maybe, got.optional) == (5, None)

    def test_decode_accepts_bytearray_and_memoryview(self):
        """bytearray and memoryview inputs decode like bytes."""
        data = encode(Envelope(Add(2), 110.0), now=NOW)
        assert decode(bytearray(data), now=NOW).message == Add(2)
        assert decode(memoryview(data), now=NOW).message == Add(2)

    def test_custom_registry_is_the_only_one_consulted(self):
        """With `registry=`, names resolve there and only there, both ways."""
        data = encode(Envelope(Private(1), 110.0), now=NOW, registry=PRIVATE)
        assert decode(data, now=NOW, registry=PRIVATE).message == Private(1)
        assert "unknown message 'test.codec.private'" in invalid(decode, data, now=NOW)
        assert "not in this registry" in invalid(encode, Envelope(Private(1), 110.0), now=NOW)


class TestMessageHelpers:
    def test_encode_message_gives_wire_name_and_body(self):
        """encode_message returns the wire name and a JSON-ready body."""
        assert encode_message(Add(4)) == ("test.codec.add", {"n": 4})

    def test_decode_message_rebuilds_the_message(self):
        """decode_message turns a wire name and body back into the message."""
        assert decode_message("test.codec.everything", orjson.loads(orjson.dumps(
            encode_message(EVERYTHING)[1]))) == EVERYTHING

    def test_decode_message_refuses_an_unknown_name(self):
        """An unregistered wire name is ENVELOPE_INVALID."""
        assert "unknown message" in invalid(decode_message, "test.codec.nope", {})

    def test_decode_message_refuses_a_body_that_is_not_an_object(self):
        """A body that is not a JSON object is ENVELOPE_INVALID."""
        assert "expected object, got list" in invalid(decode_message, "test.codec.add", [])


# ---- deadlines -----------------------------------------------------------------


class TestDeadline:
    def test_deadline_is_reanchored_on_the_receivers_clock(self):
        """2.5 s left when sent at 100.0 means a deadline of 5002.5 when received at 5000.0."""
        data = encode(Envelope(Add(1), 102.5), now=100.0)
        assert orjson.loads(data)["ms"] == 2500
        assert decode(data, now=5000.0).deadline == pytest.approx(5002.5, abs=0.001)

    def test_remaining_time_is_whole_milliseconds_rounded_down(self):
        """1.9 ms left travels as 1 ms: a deadline only gets earlier."""
        assert wire(Add(1))["ms"] == 10_000
        data = encode(Envelope(Add(1), NOW + 0.0019), now=NOW)
        assert orjson.loads(data)["ms"] == 1

    @pytest.mark.parametrize("ms", [0, -1, -(2**63)])
    def test_no_time_left_on_arrival_is_deadline_exceeded(self, ms):
        """A remaining time <= 0 on the wire is DEADLINE_EXCEEDED, a TimeoutError."""
        doc = wire(Add(1))
        doc["ms"] = ms
        with pytest.raises(DeadlineExceeded) as caught:
            decode_wire(doc)
        assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED
        assert isinstance(caught.value, TimeoutError)
        assert "test.codec.add" in caught.value.detail

    @pytest.mark.parametrize("deadline", [NOW - 1.0, NOW, NOW + 0.0009])
    def test_envelope_with_under_a_millisecond_left_is_not_encoded(self, deadline):
        """Less than 1 ms left at encode is DEADLINE_EXCEEDED: nothing expired is sent."""
        with pytest.raises(DeadlineExceeded) as caught:
            encode(Envelope(Add(1), deadline), now=NOW)
        assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED

    @pytest.mark.parametrize("deadline", [math.inf, math.nan, "soon", True])
    def test_deadline_that_is_not_a_finite_number_is_not_encoded(self, deadline):
        """A deadline that is infinite, NaN or not a number is ENVELOPE_INVALID at encode."""
        assert "deadline" in invalid(encode, Envelope(Add(1), deadline), now=NOW)

    def test_expiry_is_reported_before_a_bad_body(self):
        """An expired envelope is DEADLINE_EXCEEDED even if its body is also wrong."""
        doc = wire(Add(1))
        doc["ms"] = 0
        doc["b"] = {"n": "x"}
        with pytest.raises(DeadlineExceeded):
            decode_wire(doc)


# ---- strict decoding -------------------------------------------------------------


def _set(path: str, value: Any):
    """A mutation: set `path` ("ms", or "b.inner.label") of the wire object to `value`."""

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
        return doc

    return mutate


def _delete(path: str):
    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        del target[last]
        return doc

    return mutate


MALFORMED_WIRE = [
    ("missing-header", _delete("v"), "missing header 'v'"),
    ("unknown-header", _set("zz", 1), "unknown header 'zz'"),
    ("version-2", _set("v", 2), "header 'v': unsupported version 2"),
    ("version-bool", _set("v", True), "header 'v': unsupported version True"),
    ("name-not-str", _set("m", 5), "header 'm' (message name): expected str, got 5"),
    ("unknown-name", _set("m", "test.codec.nope"), "unknown message 'test.codec.nope'"),
    ("body-not-object", _set("b", []), "header 'b' (body): expected object, got list"),
    ("ms-str", _set("ms", "100"), "header 'ms' (remaining time): expected an int"),
    ("ms-float", _set("ms", 1.5), "header 'ms' (remaining time)"),
    ("ms-bool", _set("ms", True), "header 'ms' (remaining time)"),
    ("ms-u64", _set("ms", 2**64 - 1), "header 'ms' (remaining time)"),
    ("tenant-int", _set("t", 5), "header 't' (tenant): expected str or null, got 5"),
    ("sender-list", _set("s", []), "header 's' (sender)"),
    ("trace-object", _set("tr", {}), "header 'tr' (trace id)"),
    ("attempt-zero", _set("a", 0), "header 'a' (attempt): expected an int >= 1, got 0"),
    ("attempt-str", _set("a", "1"), "header 'a' (attempt)"),
    ("attempt-bool", _set("a", True), "header 'a' (attempt)"),
    ("missing-field", _delete("b.i"), "test.codec.everything: missing field 'i'"),
    ("extra-field", _set("b.extra", 1), "test.codec.everything: unknown field 'extra'"),
    ("str-for-int", _set("b.i", "1"), "field 'i' of test.codec.everything: expected int, got str"),
    ("bool-for-int", _set("b.i", True), "field 'i' of test.codec.everything: expected int, got bool"),
    ("float-for-int", _set("b.i", 1.0), "field 'i' of test.codec.everything: expected int, got float"),
    ("int-over-64-bits", _set("b.i", 2**63), "field 'i' of test.codec.everything: int"),
    ("str-for-float", _set("b.f", "2.5"), "field 'f' of test.codec.everything: expected float, got str"),
    ("bool-for-float", _set("b.f", False), "field 'f' of test.codec.everything: expected float, got bool"),
    ("int-for-str", _set("b.s", 1), "field 's' of test.codec.everything: expected str, got int"),
    ("int-for-bool", _set("b.b", 1), "field 'b' of test.codec.everything: expected bool, got int"),
    ("value-for-none", _set("b.nothing", 0), "field 'nothing' of test.codec.everything: expected null"),
    ("str-for-optional-int", _set("b.maybe", "1"), "field 'maybe' of test.codec.everything: expected int"),
    ("list-element", _set("b.ints", [1, "2"]), "field 'ints[1]' of test.codec.everything: expected int"),
    ("object-for-list", _set("b.ints", {"0": 1}), "field 'ints' of test.codec.everything: expected list, got object"),
    ("str-for-tuple", _set("b.floats", "x"), "field 'floats' of test.codec.everything: expected list, got str"),
    ("short-pair", _set("b.pair", [1]), "field 'pair' of test.codec.everything: expected 2 elements, got 1"),
    ("pair-element", _set("b.pair", [1, 2]), "field 'pair[1]' of test.codec.everything: expected str"),
    ("dict-value", _set("b.scores", {"a": "x"}), "field 'scores['a']' of test.codec.everything: expected float"),
    ("list-for-dict", _set("b.scores", []), "field 'scores' of test.codec.everything: expected object"),
    ("nested-missing", _set("b.point", {"x": 1}), "field 'point' of test.codec.everything: missing field 'y'"),
    ("nested-wrong", _set("b.point", {"x": 1, "y": "2"}), "field 'point.y' of test.codec.everything"),
    ("nested-message", _set("b.inner", "in"), "field 'inner' of test.codec.everything: expected object"),
    (
        "nested-in-list",
        _set("b.inners", [{"label": "a"}, {"label": 3}]),
        "field 'inners[1].label' of test.codec.everything: expected str, got int",
    ),
    ("enum-unknown", _set("b.color", "blue"), "field 'color' of test.codec.everything: 'blue' is not a Color value"),
    ("enum-by-name", _set("b.color", "RED"), "'RED' is not a Color value"),
    ("enum-wrong-type", _set("b.color", 1), "1 is not a Color value"),
    ("int-enum-bool", _set("b.level", True), "True is not a Level value"),
    ("int-enum-str", _set("b.level", "1"), "'1' is not a Level value"),
    ("int-enum-float", _set("b.level", 1.0), "1.0 is not a Level value"),
    ("any-u64", _set("b.anything", [2**64 - 1]), "field 'anything[0]' of test.codec.everything: int"),
    ("any-too-deep", _set("b.anything", nested_lists(MAX_DEPTH + 5)), f"nested deeper than {MAX_DEPTH} levels"),
]

MALFORMED_BYTES = [
    ("empty", b"", "not JSON"),
    ("truncated", b'{"v":1', "not JSON"),
    ("not-utf8", b'{"v":"\xff"}', "not JSON"),
    ("nan-literal", b"NaN", "not JSON"),
    ("float-overflow", b"1e400", "not JSON"),
    ("too-deep-for-json", b"[" * 2000 + b"]" * 2000, "not JSON"),
    ("array", b"[]", "envelope: expected object, got list"),
    ("null", b"null", "envelope: expected object, got null"),
    ("string", b'"x"', "envelope: expected object, got str"),
]


class TestMalformedInput:
    @pytest.mark.parametrize(
        ("mutate", "detail"),
        [pytest.param(m, d, id=i) for i, m, d in MALFORMED_WIRE],
    )
    def test_malformed_envelope_is_envelope_invalid_saying_what_and_where(self, mutate, detail):
        """Each malformed header or body is ENVELOPE_INVALID with a detail naming it."""
        assert detail in invalid(decode_wire, mutate(wire()))

    @pytest.mark.parametrize(
        ("data", "detail"),
        [pytest.param(b, d, id=i) for i, b, d in MALFORMED_BYTES],
    )
    def test_bytes_that_are_not_a_json_object_are_envelope_invalid(self, data, detail):
        """Non-JSON bytes and JSON that is not an object are ENVELOPE_INVALID."""
        assert detail in invalid(decode, data, now=NOW)

    def test_detail_of_a_wrong_field_names_field_message_and_types(self):
        """The detail reads "field 'n' of <wire name>: expected int, got str"."""
        doc = wire(Add(1))
        doc["b"]["n"] = "1"
        assert invalid(decode_wire, doc) == "field 'n' of test.codec.add: expected int, got str"

    def test_integer_beyond_64_bits_in_the_text_is_envelope_invalid(self):
        """An integer literal too big for 64 bits is refused, not coerced."""
        data = encode(Envelope(Add(1), 110.0), now=NOW).replace(
            b'"n":1', b'"n":123456789012345678901234567890'
        )
        assert "field 'n' of test.codec.add: expected int" in invalid(decode, data, now=NOW)

    def test_input_that_is_not_bytes_is_envelope_invalid(self):
        """A str (or anything but bytes, bytearray, memoryview) is ENVELOPE_INVALID."""
        text = encode(Envelope(Add(1), 110.0), now=NOW).decode()
        assert "expected bytes, got str" in invalid(decode, text, now=NOW)

    def test_recursive_message_nested_too_deep_is_envelope_invalid(self):
        """A self-referential body nested past MAX_DEPTH is refused, not a RecursionError."""
        body: dict[str, Any] = {"value": 0, "children": []}
        for level in range(MAX_DEPTH // 2):  # two levels each: object, list
            body = {"value": level, "children": [body]}
        doc = wire(Tree(0, []))
        doc["b"] = body
        assert f"nested deeper than {MAX_DEPTH} levels" in invalid(decode_wire, doc)

    def test_value_refused_by_the_class_validator_is_envelope_invalid(self):
        """A body whose attrs validator raises is ENVELOPE_INVALID naming the class."""
        doc = wire(Positive(1))
        doc["b"]["n"] = 0
        assert "test.codec.positive: Positive refused it" in invalid(decode_wire, doc)


class TestEncodeErrors:
    def test_class_that_is_not_a_message_is_not_encoded(self):
        """A plain attrs class, not a @message, is ENVELOPE_INVALID at encode."""
        assert "not a @message class" in invalid(encode, Envelope(NotAMessage(1), 110.0), now=NOW)

    @pytest.mark.parametrize(
        ("changes", "detail"),
        [
            ({"i": "1"}, "field 'i' of test.codec.everything: expected int, got str"),
            ({"i": True}, "field 'i' of test.codec.everything: expected int, got bool"),
            ({"i": 2**63}, "field 'i' of test.codec.everything: int"),
            ({"f": math.nan}, "field 'f' of test.codec.everything: float nan is not finite"),
            ({"f": math.inf}, "float inf is not finite"),
            ({"floats": [1.0]}, "field 'floats' of test.codec.everything: expected tuple, got list"),
            ({"ints": (1,)}, "field 'ints' of test.codec.everything: expected list, got tuple"),
            ({"color": "red"}, "field 'color' of test.codec.everything: expected Color, got str"),
            ({"level": 1}, "expected Level, got int"),
            ({"point": Inner("x")}, "field 'point' of test.codec.everything: expected Point, got Inner"),
            ({"scores": {1: 1.0}}, "field 'scores' of test.codec.everything: object key 1 is not a str"),
            ({"anything": {1, 2}}, "field 'anything' of test.codec.everything: set is not a JSON value"),
            ({"anything": {"a": (1,)}}, "field 'anything['a']' of test.codec.everything: tuple is not a JSON"),
            ({"anything": {1: "x"}}, "object key 1 is not a str"),
            ({"s": "\ud800"}, "test.codec.everything: cannot write JSON"),
        ],
    )
    def test_value_that_decode_would_refuse_is_not_encoded(self, changes, detail):
        """A message value of the wrong type is ENVELOPE_INVALID at encode, as at decode."""
        msg = attrs.evolve(EVERYTHING, **changes)
        assert detail in invalid(encode, Envelope(msg, 110.0), now=NOW)

    @pytest.mark.parametrize(
        ("headers", "detail"),
        [
            ({"tenant": 5}, "header 't' (tenant)"),
            ({"idempotency_key": b"k"}, "header 'k' (idempotency key)"),
            ({"attempt": 0}, "header 'a' (attempt)"),
            ({"attempt": True}, "header 'a' (attempt)"),
        ],
    )
    def test_header_that_decode_would_refuse_is_not_encoded(self, headers, detail):
        """A header of the wrong type is ENVELOPE_INVALID at encode."""
        assert detail in invalid(encode, Envelope(Add(1), 110.0, **headers), now=NOW)


class TestUnsupportedTypes:
    def test_unsupported_annotation_names_class_and_field_at_encode(self):
        """A set[int] field is ENVELOPE_INVALID at encode, naming the class and field."""
        detail = invalid(encode, Envelope(SetOfTags({1}), 110.0), now=NOW)
        assert "field 'tags' of SetOfTags: unsupported type set[int]" in detail

    def test_unsupported_annotation_names_class_and_field_at_decode(self):
        """The same class is ENVELOPE_INVALID at decode, naming the class and field."""
        doc = wire(Add(1))
        doc["m"], doc["b"] = "test.codec.set_of_tags", {"tags": [1]}
        assert "field 'tags' of SetOfTags" in invalid(decode_wire, doc)

    def test_unsupported_annotation_in_a_nested_class_names_that_class(self):
        """A bad field one level down names the nested class and its field."""
        detail = invalid(encode, Envelope(BadNested(HoldsFrozenset(frozenset())), 110.0), now=NOW)
        assert "field 'items' of HoldsFrozenset: unsupported type frozenset[int]" in detail

    def test_union_other_than_optional_is_unsupported(self):
        """`int | str` is refused: only `X | None` unions are supported."""
        assert "only X | None unions" in invalid(encode, Envelope(Either(1), 110.0), now=NOW)

    def test_annotation_that_cannot_be_resolved_is_envelope_invalid(self):
        """A string annotation naming nothing is ENVELOPE_INVALID naming the class."""
        detail = invalid(encode, Envelope(Dangling(1), 110.0), now=NOW)
        assert "cannot resolve the annotations of Dangling" in detail


class TestSize:
    def test_input_over_max_bytes_is_envelope_invalid(self):
        """Input longer than the 1 MiB default is refused before parsing."""
        data = b" " * (MAX_BYTES + 1)
        assert f"over the limit of {MAX_BYTES}" in invalid(decode, data, now=NOW)

    def test_max_bytes_is_inclusive_and_configurable(self):
        """An envelope of exactly max_bytes decodes; one byte less of limit refuses it."""
        data = encode(Envelope(Add(1), 110.0), now=NOW)
        assert decode(data, now=NOW, max_bytes=len(data)).message == Add(1)
        assert "over the limit" in invalid(decode, data, now=NOW, max_bytes=len(data) - 1)
        assert "over the limit" in invalid(decode, memoryview(data), now=NOW, max_bytes=len(data) - 1)

    def test_encoding_over_max_bytes_is_envelope_invalid(self):
        """encode refuses to produce more than max_bytes, so decode never sees it."""
        detail = invalid(encode, Envelope(Blob("x" * 100), 110.0), now=NOW, max_bytes=100)
        assert "test.codec.blob:" in detail and "over the limit of 100" in detail


class TestTenant:
    def test_matching_tenant_is_accepted(self):
        """The expected tenant decodes as usual."""
        data = encode(Envelope(Add(1), 110.0, tenant="acme"), now=NOW)
        assert decode(data, now=NOW, expect_tenant="acme").tenant == "acme"

    @pytest.mark.parametrize("tenant", ["other", None, ""])
    def test_other_or_missing_tenant_is_tenant_mismatch(self, tenant):
        """Any tenant but the expected one, even none, is TENANT_MISMATCH (a PermissionError)."""
        data = encode(Envelope(Add(1), 110.0, tenant=tenant), now=NOW)
        with pytest.raises(TenantMismatch) as caught:
            decode(data, now=NOW, expect_tenant="acme")
        assert caught.value.code is ReasonCode.TENANT_MISMATCH
        assert isinstance(caught.value, PermissionError)
        assert "'acme'" in caught.value.detail

    def test_without_expect_tenant_any_tenant_is_accepted(self):
        """No expect_tenant means no tenant check."""
        data = encode(Envelope(Add(1), 110.0, tenant="other"), now=NOW)
        assert decode(data, now=NOW).tenant == "other"

    def test_tenant_is_checked_before_the_deadline(self):
        """An expired envelope for another tenant is TENANT_MISMATCH."""
        doc = wire(Add(1), tenant="other")
        doc["ms"] = 0
        with pytest.raises(TenantMismatch):
            decode_wire(doc, expect_tenant="acme")


class TestHeaderBounds:
    @pytest.mark.parametrize("key", ["t", "s", "c", "tr", "k"])
    def test_a_header_string_longer_than_an_id_is_envelope_invalid_both_ways(self, key):
        """What a peer sends as an id is bounded (audit events keep these
        fields): one character past MAX_HEADER_CHARS is refused, with a
        detail that does not repeat it; at the bound it decodes."""
        doc = wire(Add(1))
        doc[key] = "x" * MAX_HEADER_CHARS
        assert decode_wire(doc)
        doc[key] = "x" * (MAX_HEADER_CHARS + 1)
        with pytest.raises(InvalidInput) as caught:
            decode_wire(doc)
        assert caught.value.code is ReasonCode.ENVELOPE_INVALID and len(caught.value.detail) < 120
        field = {"t": "tenant", "s": "sender", "c": "correlation_id", "tr": "trace_id", "k": "idempotency_key"}[key]
        with pytest.raises(InvalidInput):
            encode(Envelope(Add(1), 110.0)._replace(**{field: "x" * (MAX_HEADER_CHARS + 1)}), now=NOW)


class TestAccept:
    def test_a_type_the_receiver_does_not_take_is_not_exported_before_its_body_is_read(self):
        """`accept` False: NOT_EXPORTED (a PermissionError), even for a body
        that would not decode, and before the tenant and the deadline."""
        doc = wire(Add(1), tenant="other")
        doc["b"] = {"not": "a field"}
        doc["ms"] = 0
        seen: list[type] = []

        def accept(cls: type) -> bool:
            seen.append(cls)
            return False

        with pytest.raises(Denied) as caught:
            decode_wire(doc, expect_tenant="acme", accept=accept)
        assert caught.value.code is ReasonCode.NOT_EXPORTED and isinstance(caught.value, PermissionError)
        assert caught.value.detail.startswith("test.codec.add:")
        assert seen == [Add]

    def test_a_type_the_receiver_takes_decodes_as_usual(self):
        data = encode(Envelope(Add(1), 110.0), now=NOW)
        assert decode(data, now=NOW, accept=lambda cls: cls is Add).message == Add(1)


# ---- properties ---------------------------------------------------------------


VALID = encode(Envelope(EVERYTHING, 110.0, tenant="acme", trace_id="t"), now=NOW)
BASES = [
    orjson.loads(encode(Envelope(msg, 110.0, tenant=tenant), now=NOW))
    for msg in (Add(1), Get(), EVERYTHING)
    for tenant in (None, "acme")
]
# Header values likely to be valid somewhere, so that some replacements decode.
PLAUSIBLE = [1, 0, -1, 2500, None, "acme", "", {}, {"n": 3}, "test.codec.get", "test.codec.add"]


class TestProperties:
    @settings(max_examples=500, deadline=None)
    @given(data=st.binary(max_size=300))
    def test_random_bytes_decode_or_raise_a_coded_error(self, data):
        """Random bytes give an Envelope or an ExoarmurError, never another exception."""
        assert_envelope_or_code(decoded_or_coded(data))

    @settings(max_examples=400, deadline=None)
    @given(
        edits=st.lists(
            st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255), st.sampled_from("rid")),
            min_size=1,
            max_size=4,
        )
    )
    def test_mutated_valid_bytes_decode_or_raise_a_coded_error(self, edits):
        """A valid encoding with bytes replaced, inserted or deleted never escapes the codes."""
        data = bytearray(VALID)
        for position, byte, how in edits:
            position = min(position, len(data) - 1)
            if how == "r":
                data[position] = byte
            elif how == "i":
                data.insert(position, byte)
            else:
                del data[position]
        assert_envelope_or_code(decoded_or_coded(bytes(data)))

    @settings(max_examples=200, deadline=None)
    @given(value=json_values)
    def test_random_json_values_decode_or_raise_a_coded_error(self, value):
        """Any JSON value, dumped with orjson, gives an Envelope or a coded error."""
        assert_envelope_or_code(decoded_or_coded(orjson.dumps(value)))

    @settings(max_examples=300, deadline=None)
    @given(
        base=st.sampled_from(BASES),
        replaced=st.dictionaries(
            st.sampled_from(sorted(HEADERS)), st.sampled_from(PLAUSIBLE) | json_shallow, max_size=3
        ),
        expect_tenant=st.none() | st.just("acme"),
    )
    def test_valid_envelope_with_random_headers_decodes_or_raises_a_coded_error(
        self, base, replaced, expect_tenant
    ):
        """A valid envelope with up to three headers replaced at random never escapes the codes."""
        result = decoded_or_coded(orjson.dumps({**base, **replaced}), expect_tenant=expect_tenant)
        if isinstance(result, TenantMismatch):
            assert expect_tenant is not None
        else:
            assert_envelope_or_code(result)

    @settings(max_examples=300, deadline=None)
    @given(key=st.sampled_from(sorted(ACCEPTS)), data=st.data())
    def test_wrong_typed_header_or_field_is_envelope_invalid(self, key, data):
        """Replacing one header or body field by a JSON value of a wrong type is ENVELOPE_INVALID naming it."""
        # orjson writes a non-finite float as null, which is not a wrong type on the wire.
        value = data.draw(
            json_values.filter(
                lambda v: type(v) not in ACCEPTS[key] and not (isinstance(v, float) and not math.isfinite(v))
            ),
            label="value",
        )
        doc = orjson.loads(VALID)
        if key.startswith("b."):
            doc["b"][key[2:]] = value
            named = f"field '{key[2:]}"
        else:
            doc[key] = value
            named = f"header '{key}'"
        assert named in invalid(decode_wire, doc)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        msg=everything,
        tenant=optional_texts,
        sender=optional_texts,
        trace_id=optional_texts,
        attempt=st.integers(1, 2**63 - 1),
        ms=st.integers(1, 10**12),
        sent_at=st.floats(0.0, 1e6),
        received_at=st.floats(0.0, 1e6),
    )
    def test_valid_messages_survive_a_round_trip(
        self, msg, tenant, sender, trace_id, attempt, ms, sent_at, received_at
    ):
        """Any valid message and headers decode equal; the remaining time carries over."""
        sent = Envelope(
            msg, sent_at + ms / 1000, tenant=tenant, sender=sender, trace_id=trace_id, attempt=attempt
        )
        try:
            data = encode(sent, now=sent_at)
        except DeadlineExceeded:
            assert ms == 1  # float rounding ate the only millisecond
            return
        got = decode(data, now=received_at)
        assert got.message == msg
        assert got._replace(message=None, deadline=0.0) == sent._replace(message=None, deadline=0.0)
        assert got.deadline == pytest.approx(received_at + ms / 1000, abs=0.002)

    @settings(max_examples=25, deadline=None)
    @given(
        size=st.integers(MAX_BYTES - 300, MAX_BYTES + 300),
        char=st.sampled_from(["x", "é", "€", "😀", "\x00"]),
    )
    def test_payloads_near_the_size_limit_end_in_an_envelope_or_a_coded_error(self, size, char):
        """Strings around max_bytes encode and decode, or are refused as ENVELOPE_INVALID; never a MemoryError."""
        blob = Blob(char * (size // len(char.encode())))
        try:
            data = encode(Envelope(blob, 110.0), now=NOW)
        except InvalidInput as exc:
            assert "over the limit" in exc.detail
            doc = wire(Blob(""))
            doc["b"]["data"] = blob.data
            data = orjson.dumps(doc)
            assert len(data) > MAX_BYTES
            assert "over the limit" in invalid(decode, data, now=NOW)
        else:
            assert len(data) <= MAX_BYTES
            assert decode(data, now=NOW).message == blob
        raw = b"[" * size
        assert invalid(decode, raw, now=NOW)


# ---- a gateway in front of an actor ------------------------------------------


class Tally(Actor):
    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    @handles(Add)
    def add(self, msg: Add) -> None:
        self.count += 1
        self.total += msg.n

    @handles(Get)
    def get(self, msg: Get) -> tuple[int, int]:
        return self.count, self.total


def garbage(*, seed: int, count: int) -> list[bytes]:
    """Valid Add envelopes (60 s left at time 0), some left alone, some with
    bytes flipped, some truncated, some replaced by random bytes."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(encode(Envelope(Add(rng.randrange(100)), 60.0), now=0.0))
        how = rng.randrange(4)
        if how == 1:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 2:
            del data[rng.randrange(len(data)) :]
        elif how == 3:
            data = bytearray(rng.randbytes(rng.randrange(200)))
        out.append(bytes(data))
    return out


class TestGateway:
    @pytest.mark.anyio
    async def test_actor_behind_a_decoding_gateway_survives_200_garbage_inputs(self):
        """Every input is delivered or counted under a code, and the actor still answers with the right count."""
        async with ActorSystem() as system:
            ref = await system.spawn(Tally, name="tally")
            decoded_ok = 0
            codes: Counter[ReasonCode] = Counter()
            adds = total = 0
            for data in garbage(seed=20240601, count=200):
                try:
                    env = decode(data, now=system.now())
                    await ref.tell(env.message, deadline=env.deadline)
                except ExoarmurError as exc:
                    codes[exc.code] += 1
                    continue
                decoded_ok += 1
                if isinstance(env.message, Add):
                    adds += 1
                    total += env.message.n
            assert decoded_ok + sum(codes.values()) == 200
            assert decoded_ok > 0 and codes[ReasonCode.ENVELOPE_INVALID] > 0
            assert await ref.ask(Get()) == (adds, total)
