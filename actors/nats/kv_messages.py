"""The KV messages, each operation declared once.

An operation's class names its bucket: `KvGet("intents", "i-1")`, asked of
the NatsConnection. Its KvBucket form (`Get("i-1")`, asked of the bucket's
actor, actors/nats/kv.py) is the same class with the bucket left to that
actor: a subclass whose only field of its own is `bucket`, keyword-only and
empty until the actor names it. The fields, the timeout category and the
meaning are the operation's; the connection takes either form once its
bucket is named.

    KvGet(bucket, key)                Get(key)                   KV_GET
    KvPut(bucket, key, value)         Put(key, value)            KV_PUT
    KvCreate(bucket, key, value)      Create(key, value)         KV_PUT
    KvUpdate(bucket, key, value, last) Update(key, value, last)  KV_PUT
    KvDelete(bucket, key, last=None)  Delete(key, last=None)     KV_DELETE
    KvKeys(bucket, filter=">")        Keys(filter=">")           KV_GET
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs

from exoarmur.runtime import TimeoutCategory, message, timeout_category

__all__ = [
    "Create",
    "Delete",
    "Get",
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
    "Keys",
    "Put",
    "Update",
    "bucket_form",
]

T = TypeVar("T", bound=type)

# The `bucket` of a KvBucket form: named by the actor it is asked of.
THIS_BUCKET = ""


def bucket_form(name: str) -> Callable[[T], T]:
    """Register a KvBucket form under the wire name `name`, with the timeout
    category of the operation it subclasses (its first base)."""

    def decorate(cls: T) -> T:
        return message(name, timeout=timeout_category(cls.__bases__[0]))(cls)

    return decorate


@message("exoarmur.kv.open", timeout=TimeoutCategory.KV_CREATE)
class KvOpen:
    """Create the bucket if absent (with these settings), else open it."""

    bucket: str
    replicas: int = 1
    history: int = 1


@attrs.frozen
class KvEntry:
    key: str
    value: bytes
    revision: int


@message("exoarmur.kv.get", timeout=TimeoutCategory.KV_GET)
class KvGet:
    """The key's latest entry, read from the stream leader (never a direct
    get, which any replica may answer stale); None if absent or deleted."""

    bucket: str
    key: str


@message("exoarmur.kv.put", timeout=TimeoutCategory.KV_PUT)
class KvPut:
    """Answers the new revision."""

    bucket: str
    key: str
    value: bytes


@message("exoarmur.kv.create", timeout=TimeoutCategory.KV_PUT)
class KvCreate:
    """Put only if the key is absent (or deleted); KV_CONFLICT otherwise."""

    bucket: str
    key: str
    value: bytes


@message("exoarmur.kv.update", timeout=TimeoutCategory.KV_PUT)
class KvUpdate:
    """Put only if the key's revision is still `last`; KV_CONFLICT otherwise."""

    bucket: str
    key: str
    value: bytes
    last: int


@message("exoarmur.kv.delete", timeout=TimeoutCategory.KV_DELETE)
class KvDelete:
    """Delete the key; with `last`, only if its revision is still that.
    `erase`: purge the key's subject from the bucket's stream instead, so no
    delete marker stays (a listing of the keys reads every marker: an index
    that deletes each key it adds would otherwise grow without end); it
    takes no `last`."""

    bucket: str
    key: str
    last: int | None = None
    erase: bool = attrs.field(default=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.erase and self.last:
            raise ValueError("an erasing delete takes no `last`")


@message("exoarmur.kv.keys", timeout=TimeoutCategory.KV_GET)
class KvKeys:
    """The bucket's keys matching `filter` (NATS subject wildcards: "acme.*"),
    sorted. The server filters by subject, so a filter that names a prefix
    reads only what matches."""

    bucket: str
    filter: str = ">"


# The KvBucket forms: the operation, its bucket named by the actor.


@bucket_form("exoarmur.bucket.get")
@attrs.frozen
class Get(KvGet):
    bucket: str = attrs.field(default=THIS_BUCKET, kw_only=True)


@bucket_form("exoarmur.bucket.put")
@attrs.frozen
class Put(KvPut):
    bucket: str = attrs.field(default=THIS_BUCKET, kw_only=True)


@bucket_form("exoarmur.bucket.create")
@attrs.frozen
class Create(KvCreate):
    bucket: str = attrs.field(default=THIS_BUCKET, kw_only=True)


@bucket_form("exoarmur.bucket.update")
@attrs.frozen
class Update(KvUpdate):
    bucket: str = attrs.field(default=THIS_BUCKET, kw_only=True)


@bucket_form("exoarmur.bucket.delete")
@attrs.frozen
class Delete(KvDelete):
    bucket: str = attrs.field(default=THIS_BUCKET, kw_only=True)


@bucket_form("exoarmur.bucket.keys")
@attrs.frozen
class Keys(KvKeys):
    bucket: str = attrs.field(default=THIS_BUCKET, kw_only=True)


@message("exoarmur.kv.watch", timeout=TimeoutCategory.KV_GET)
class KvWatch:
    """Tell the actor at `target` a KvChange for the latest value of every key
    matching `keys`, then for every change after it; answers the watch id.
    After a reconnect or a restart of this connection the watch resumes after
    the last revision it delivered (nothing twice, nothing skipped)."""

    bucket: str
    target: str
    keys: str = ">"


@message("exoarmur.kv.unwatch", timeout=TimeoutCategory.KV_GET)
class KvUnwatch:
    watch: int


@message("exoarmur.kv.change", timeout=TimeoutCategory.KV_GET)
class KvChange:
    watch: int
    key: str
    value: bytes
    revision: int
    deleted: bool
