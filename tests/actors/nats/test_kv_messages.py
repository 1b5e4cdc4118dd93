"""The KV messages are declared once: each KvBucket form is its operation with
the bucket left to the actor, and the KvBucket actor hands the operation on
as it is, its bucket named (no server: a stand-in connection)."""

from __future__ import annotations

import attrs
import pytest

from exoarmur.actors.nats import KvBucket
from exoarmur.actors.nats.kv_messages import (
    Create,
    Delete,
    Get,
    Keys,
    KvCreate,
    KvDelete,
    KvGet,
    KvKeys,
    KvOpen,
    KvPut,
    KvUpdate,
    Put,
    Update,
)
from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, handles, timeout_category, wire_name

pytestmark = pytest.mark.anyio

FORMS = [(Get, KvGet), (Put, KvPut), (Create, KvCreate), (Update, KvUpdate), (Delete, KvDelete), (Keys, KvKeys)]


class TestForms:
    @pytest.mark.parametrize(("form", "operation"), FORMS)
    def test_a_bucket_form_is_its_operation_with_the_bucket_left_out(self, form, operation):
        """Same fields in the same order but the bucket, which is keyword-only
        and empty; same timeout category; a wire name of its own."""
        assert issubclass(form, operation)
        own = [field.name for field in attrs.fields(operation)]
        assert own[0] == "bucket"
        assert [field.name for field in attrs.fields(form)] == [*own[1:], "bucket"]
        bucket = attrs.fields(form).bucket
        assert bucket.kw_only and bucket.default == ""
        assert timeout_category(form) is timeout_category(operation)
        assert wire_name(form) != wire_name(operation)

    def test_the_operations_keep_their_positional_order(self):
        assert KvGet("b", "k") == KvGet(bucket="b", key="k")
        assert Update("k", b"v", 3) == Update(key="k", value=b"v", last=3, bucket="")
        assert Keys() == Keys(bucket="")


class StandIn(Actor):
    """A connection that opens any bucket and answers each operation with
    what it received."""

    @handles(KvOpen)
    def open(self, m: KvOpen) -> None:
        pass

    @handles(Get, Put, Create, Update, Delete, Keys)
    def operate(self, m: object) -> object:
        return m


class TestKvBucket:
    async def test_each_operation_reaches_the_connection_as_it_is_with_its_bucket_named(self):
        async with ActorSystem() as system:
            await system.spawn(StandIn, name="nats")
            bucket = await system.spawn(KvBucket, name="b", kwargs={"bucket": "intents", "connection": "nats"})
            for m in (Get("k"), Put("k", b"v"), Create("k", b"v"), Update("k", b"v", 2), Delete("k", last=2), Keys()):
                assert await bucket.ask(m) == attrs.evolve(m, bucket="intents")
            assert await bucket.ask(Get("k", bucket="intents")) == Get("k", bucket="intents")

    async def test_an_operation_naming_another_bucket_is_refused(self):
        async with ActorSystem() as system:
            await system.spawn(StandIn, name="nats")
            bucket = await system.spawn(KvBucket, name="b", kwargs={"bucket": "intents", "connection": "nats"})
            with pytest.raises(ExoarmurError) as caught:
                await bucket.ask(Put("k", b"v", bucket="leases"))
            assert caught.value.code is ReasonCode.KV_BUCKET_NOT_FOUND
