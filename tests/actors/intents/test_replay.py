"""`verify` against a real nats-server: intents written to KV and audited by
AuditStream actors verify; a record deleted, forged or moved in the stream,
and a KV that disagrees with the audit, are found and named."""

from __future__ import annotations

import orjson
import pytest

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.replay import verify
from exoarmur.actors.intents.replay_problems import ProblemKind as K
from exoarmur.actors.intents.states import IntentState
from exoarmur.actors.intents.trail import chain_of, message_id, transition_event
from exoarmur.actors.nats import (
    Append,
    AuditStream,
    Create,
    Delete,
    JsPublish,
    KvBucket,
    Put,
    Record,
    Request,
    StreamFetch,
    Update,
)
from exoarmur.runtime import ActorSystem, ExoarmurError, ReasonCode
from tests.actors.intents.test_reducer import code_of, kernel_event
from tests.integration.conftest import anyio_backend, no_task_outlives_the_test  # noqa: F401 - real clocks
from tests.integration.support import connect, running_server

pytestmark = pytest.mark.anyio

S = IntentState
BUCKET = "exoarmur_intents"
STREAM = "EXOARMUR_AUDIT"
PATHS = {
    "i-1": (S.APPROVED, S.EXECUTING, S.SUCCEEDED),
    "i-2": (S.AWAITING_APPROVAL, S.DENIED),
    "i-3": (S.APPROVED, S.EXECUTING, S.FAILED),
}


class Deployment:
    """Intents of two tenants written as the intent actor writes them: each
    KV write (a compare-and-set) followed by its audit append."""

    def __init__(self, system: ActorSystem, conn) -> None:
        self.system, self.conn = system, conn

    async def start(self) -> None:
        self.records = await self.system.spawn(
            KvBucket, name="records", kwargs={"bucket": BUCKET, "connection": "nats"}
        )
        self.audit = {}
        for chain in ("main", chain_of("acme"), chain_of("bolt")):
            self.audit[chain] = await self.system.spawn(
                AuditStream, name=f"audit-{chain}", kwargs={"connection": "nats", "chain": chain}
            )

    async def run(self, tenant: str, intent_id: str, path) -> IntentRecord:
        record = IntentRecord.received(intent_id=intent_id, tenant=tenant, type="ledger", params={"n": 1},
                                       owner="p-a", now=1_000.0, deadline=1_030.0)  # fmt: skip
        record = record.at(await self.records.ask(Create(record.kv_key, record.to_bytes())))
        await self.audited(record)
        for n, state in enumerate(path, start=1):
            after = record.moved(state, now=1_000.0 + n, code=code_of(state), attempt=state is S.EXECUTING)
            record = after.at(await self.records.ask(Update(after.kv_key, after.to_bytes(), record.revision)))
            await self.audited(record)
            await self.audit["main"].ask(Append(kernel_event(n)))
        return record

    async def audited(self, record: IntentRecord) -> None:
        await self.audit[chain_of(record.tenant)].ask(Append(transition_event(record), msg_id=message_id(record)))

    async def all(self) -> dict[str, IntentRecord]:
        return {
            f"{tenant}.{intent_id}": await self.run(tenant, intent_id, path)
            for tenant in ("acme", "bolt")
            for intent_id, path in PATHS.items()
        }

    async def stored(self) -> list:
        return await self.conn.ask(StreamFetch(STREAM, 1, 1_000))

    async def delete(self, seq: int) -> None:
        reply = await self.conn.ask(Request(f"$JS.API.STREAM.MSG.DELETE.{STREAM}", orjson.dumps({"seq": seq})))
        assert orjson.loads(reply.data)["success"]

    async def verify(self, **options):
        return await verify(self.system, records_bucket=BUCKET, batch=7, **options)


async def deployed(system: ActorSystem, server) -> tuple[Deployment, dict[str, IntentRecord]]:
    deployment = Deployment(system, await connect(system, server))
    await deployment.start()
    return deployment, await deployment.all()


def of_chain(messages, chain: str) -> list:
    return [m for m in messages if Record.from_bytes(m.data).chain == chain]


async def test_an_untouched_deployment_verifies_with_its_counts(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        deployment, _ = await deployed(system, server)
        report = await deployment.verify()
        assert report.ok, report.lines()
        summary = report.summary
        assert (summary.chains, summary.intents, summary.kv_records) == (3, 6, 6)
        assert (summary.intent_records, summary.other_records, summary.records) == (22, 16, 38)
        assert summary.last_seq == 38 and summary.records_per_s > 0
        assert orjson.loads(orjson.dumps(report.to_dict()))["ok"] is True


async def test_a_record_deleted_from_the_stream_is_named_by_chain_and_position(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        deployment, _ = await deployed(system, server)
        acme = of_chain(await deployment.stored(), chain_of("acme"))
        await deployment.delete(acme[2].seq)
        report = await deployment.verify()
        missing = [p for p in report.problems if p.kind is K.RECORDS_MISSING]
        assert [(p.chain, p.position) for p in missing] == [(chain_of("acme"), 2)]
        # Its intent's trail now skips a step: named too.
        assert K.TRANSITION_INVALID in {p.kind for p in report.problems} and not report.ok


async def test_a_forged_record_published_on_a_chain_is_named(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        deployment, records = await deployed(system, server)
        target = Record.from_bytes(of_chain(await deployment.stored(), chain_of("bolt"))[1].data)
        event = {**target.event, "record": {**target.event["record"], "state": "SUCCEEDED"}}
        forged = Record(target.chain, target.position, target.prev, event, target.hash)  # its old hash
        await deployment.conn.ask(JsPublish(f"exoarmur.audit.{target.chain}", forged.to_bytes()))
        report = await deployment.verify()
        found = {(p.kind, p.chain, p.position) for p in report.problems}
        assert found == {
            (K.RECORD_ALTERED, target.chain, target.position),
            (K.POSITION_REPEATED, target.chain, target.position),
        }


async def test_a_record_moved_to_the_end_of_the_stream_is_named_out_of_order(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        deployment, _ = await deployed(system, server)
        moved = of_chain(await deployment.stored(), chain_of("acme"))[4]  # i-2's RECEIVED
        await deployment.delete(moved.seq)
        await deployment.conn.ask(JsPublish(moved.subject, moved.data))  # the same bytes, stored last
        report = await deployment.verify()
        assert [p.position for p in report.problems if p.kind is K.RECORD_OUT_OF_ORDER] == [4]
        # In stream order i-2's trail now starts after its first record: named too, and nothing else.
        others = [(p.kind, p.intent, p.revision) for p in report.problems if p.kind is not K.RECORD_OUT_OF_ORDER]
        received = Record.from_bytes(moved.data).event["revision"]
        assert others == [(K.FIRST_NOT_RECEIVED, "i-2", received + 1), (K.REVISION_REGRESSED, "i-2", received)]


async def test_kv_that_disagrees_with_the_audit_is_named_per_intent(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        deployment, records = await deployed(system, server)
        bucket = deployment.records
        edited = records["acme.i-1"].moved(S.REVERTING, now=2_000.0)  # written, never audited
        await bucket.ask(Update("acme.i-1", edited.to_bytes(), records["acme.i-1"].revision))
        await bucket.ask(Delete("bolt.i-2"))
        stray = IntentRecord.received(intent_id="i-9", tenant="acme", type="ledger", params={}, owner="p-a",
                                      now=1_000.0, deadline=1_030.0)  # fmt: skip
        await bucket.ask(Put(stray.kv_key, stray.to_bytes()))
        report = await deployment.verify()
        assert [(p.kind, p.tenant, p.intent) for p in report.problems] == [
            (K.AUDIT_BEHIND, "acme", "i-1"),
            (K.MISSING_FROM_AUDIT, "acme", "i-9"),
            (K.MISSING_FROM_KV, "bolt", "i-2"),
        ]
        behind = report.problems[0]
        assert behind.details["kv_state"] == "REVERTING" and behind.details["audit_state"] == "SUCCEEDED"
        as_json = report.to_dict()
        assert as_json["ok"] is False and [p["kind"] for p in as_json["problems"]] == [
            "audit_behind", "missing_from_audit", "missing_from_kv",
        ]  # fmt: skip


async def test_a_replay_over_its_time_is_a_coded_failure(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        deployment, _ = await deployed(system, server)
        with pytest.raises(ExoarmurError) as caught:
            await deployment.verify(timeout=1e-6)
        assert caught.value.code is ReasonCode.TIMEOUT_REPLAY_PROCESSING
