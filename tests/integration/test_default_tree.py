"""The default tree of `exoarmur run`: what it starts, in which order, and
what it leaves in its state directory for the CLI."""

from __future__ import annotations

import stat

import orjson
import pytest

from exoarmur.actors.app.config import parse_config_text
from exoarmur.actors.app.state import StateDir
from exoarmur.actors.app.tree import build_tree, check_lease
from exoarmur.actors.intents import TypeInfo
from exoarmur.runtime import ActorSystem, InvalidInput, ReasonCode

pytestmark = pytest.mark.anyio

TREE = [
    "nats", "nats/server", "nats/connection",
    "store", "store/audit", "store/records", "store/open", "store/leases", "store/controls", "store/approvals",
    "store/tenant_owners", "store/lease",
    "controls", "controls/audit", "controls/gates", "controls/killswitch", "controls/watch",
    "execution", "execution/ledger", "execution/noop",
    "tenants",
    "intents", "intents/audit", "intents/desk", "intents/router", "intents/resumer", "intents/service",
    "http", "status",
]  # fmt: skip


async def test_the_default_tree_starts_in_order_and_writes_a_private_connection_file(tmp_path):
    config = parse_config_text(f'[state]\ndir = "{tmp_path / "state"}"\n[http]\nport = 0\n', source="test", base_dir=tmp_path)
    async with ActorSystem() as system:
        await build_tree(system, config)
        assert system.paths() == TREE
        file = tmp_path / "state" / "connection.json"
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        data = orjson.loads(file.read_bytes())
        token = (tmp_path / "state" / "nats" / "token").read_text().strip()
        assert data["token"] == token and data["urls"][0].startswith("nats://127.0.0.1:")
        owner = StateDir(tmp_path / "state").owner()
        assert owner.startswith("p-") and StateDir(tmp_path / "state").owner() == owner  # kept
        await system.shutdown()


def test_a_lease_too_short_for_a_type_is_refused_before_anything_starts():
    slow = TypeInfo(name="slow", path="execution/slow", timeout=30.0)
    with pytest.raises(InvalidInput) as caught:
        check_lease(20.0, [slow])
    assert caught.value.code is ReasonCode.CONFIG_INVALID and "slow" in caught.value.detail
    check_lease(47.0, [slow])
