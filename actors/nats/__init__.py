"""NATS as supervised actors.

    server, process     the embedded nats-server (EmbeddedNatsServer)
    connection          the only owner of a nats-py client (NatsConnection),
                        split by idea: see its module documentation
    kv                  one actor per JetStream KV bucket (KvBucket)
    audit_stream        the hash-chained audit stream (AuditStream)

What the code relies on from nats-py and nats-server, and the nats-py
behaviours it works around: docs/nats.md.
"""

from exoarmur.actors.nats.audit_stream import (
    Append,
    AppendAck,
    AuditStream,
    JetStreamAuditSink,
    Record,
    batch_event,
    chain_hash,
    events_of,
    read_records,
    verify_chain,
)
from exoarmur.actors.nats.connection import NatsConnection
from exoarmur.actors.nats.credentials import Credentials
from exoarmur.actors.nats.kv import KvBucket
from exoarmur.actors.nats.kv_messages import (
    Create,
    Delete,
    Get,
    Keys,
    KvChange,
    KvCreate,
    KvDelete,
    KvEntry,
    KvGet,
    KvKeys,
    KvOpen,
    KvPut,
    KvUnwatch,
    KvUpdate,
    KvWatch,
    Put,
    Update,
)
from exoarmur.actors.nats.messages import (
    Delivery,
    Flush,
    NatsStatistics,
    Publish,
    Request,
    Response,
    Serve,
    Statistics,
    Subscribe,
    Unsubscribe,
)
from exoarmur.actors.nats.options import ConnectionOptions
from exoarmur.actors.nats.patience import patiently
from exoarmur.actors.nats.server import EmbeddedNatsServer, NatsEndpoint, ServerInfo
from exoarmur.actors.nats.state import Subscriptions
from exoarmur.actors.nats.stream_messages import (
    FETCH_LIMIT,
    JsPublish,
    PubAck,
    StreamEnsure,
    StreamFetch,
    StreamLast,
    StreamMessage,
    StreamRead,
)

__all__ = [
    "Append",
    "AppendAck",
    "AuditStream",
    "ConnectionOptions",
    "Create",
    "Credentials",
    "Delete",
    "Delivery",
    "EmbeddedNatsServer",
    "FETCH_LIMIT",
    "Flush",
    "Get",
    "JetStreamAuditSink",
    "JsPublish",
    "Keys",
    "KvBucket",
    "KvChange",
    "KvCreate",
    "KvDelete",
    "KvEntry",
    "KvGet",
    "KvKeys",
    "KvOpen",
    "KvPut",
    "KvUnwatch",
    "KvUpdate",
    "KvWatch",
    "NatsConnection",
    "NatsEndpoint",
    "NatsStatistics",
    "PubAck",
    "Publish",
    "Put",
    "Record",
    "Request",
    "Response",
    "Serve",
    "ServerInfo",
    "Statistics",
    "StreamEnsure",
    "StreamFetch",
    "StreamLast",
    "StreamMessage",
    "StreamRead",
    "Subscribe",
    "Subscriptions",
    "Unsubscribe",
    "Update",
    "batch_event",
    "chain_hash",
    "events_of",
    "read_records",
    "patiently",
    "verify_chain",
]
