"""Config: defaults, overrides, every kind of bad input (CONFIG_INVALID with file
and key in the detail), and the printed form loading back to the same config."""

from __future__ import annotations

import datetime
import json
import tomllib
from pathlib import Path
from types import MappingProxyType

import pytest

from exoarmur.actors.tenants import TenantLimits
from exoarmur.runtime import InvalidInput, MailboxConfig, Overflow, ReasonCode, TimeoutCategory
from exoarmur.actors.app.config import (
    DEFAULT_FACTORY,
    Config,
    config_to_dict,
    config_to_json,
    config_to_toml,
    default_config_path,
    load_config,
    parse_config_text,
)
from exoarmur.actors.app.nats_config import MASK, NatsConfig
from exoarmur.runtime.timeouts import DEFAULT_SECONDS


def write(tmp_path: Path, text: str, name: str = "exoarmur.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class TestDefaults:
    def test_built_in_file_is_exactly_the_defaults(self):
        """actors/app/default_config.toml spells out Config() and nothing else."""
        assert load_config() == Config()
        assert default_config_path().is_file()

    def test_empty_file_gives_the_defaults(self, tmp_path):
        """Every section and key is optional."""
        config = load_config(write(tmp_path, ""))
        assert config == Config()
        assert config.source == str(tmp_path / "exoarmur.toml")

    def test_default_values(self):
        """The documented defaults: 5 s stop, the default tree, in-memory audit, the timeout table."""
        config = Config()
        assert config.name == "exoarmur"
        assert config.stop_timeout == 5.0
        assert config.tree_factory == DEFAULT_FACTORY == "exoarmur.actors.app.tree:build_tree"
        assert config.audit_path is None
        assert dict(config.mailboxes) == {}
        assert dict(config.tree_options) == {}
        assert dict(config.timeouts.seconds) == dict(DEFAULT_SECONDS)


class TestOverrides:
    def test_system_section(self, tmp_path):
        """[system] sets the name and stop_timeout (an int is read as seconds)."""
        config = load_config(write(tmp_path, '[system]\nname = "edge-1"\nstop_timeout = 2\n'))
        assert config.name == "edge-1"
        assert config.stop_timeout == 2.0
        assert isinstance(config.stop_timeout, float)

    def test_timeouts_override_only_the_named_categories(self, tmp_path):
        """[timeouts] keys are category names in any case; the rest keep their default."""
        config = load_config(write(tmp_path, "[timeouts]\nkv_get = 1.5\nNATS_CONNECT = 3\n"))
        assert config.timeouts[TimeoutCategory.KV_GET] == 1.5
        assert config.timeouts[TimeoutCategory.NATS_CONNECT] == 3.0
        assert config.timeouts[TimeoutCategory.KV_PUT] == DEFAULT_SECONDS[TimeoutCategory.KV_PUT]

    def test_mailbox_overrides_keep_file_order(self, tmp_path):
        """[mailbox."glob"] tables become MailboxConfig, in file order (first match wins)."""
        text = (
            '[mailbox."tenant/*/intent"]\ncapacity = 10\noverflow = "reject"\n'
            '[mailbox."tenant/*"]\ncapacity = 100\noverflow = "shed_oldest"\n'
        )
        config = load_config(write(tmp_path, text))
        assert list(config.mailboxes.items()) == [
            ("tenant/*/intent", MailboxConfig(capacity=10, overflow=Overflow.REJECT)),
            ("tenant/*", MailboxConfig(capacity=100, overflow=Overflow.SHED_OLDEST)),
        ]

    def test_mailbox_override_may_give_one_key_only(self, tmp_path):
        """A mailbox override with only capacity (or only overflow) leaves the other unset."""
        text = '[mailbox."a/*"]\ncapacity = 7\n[mailbox."b/*"]\noverflow = "reject"\n'
        config = load_config(write(tmp_path, text))
        assert config.mailboxes["a/*"] == MailboxConfig(capacity=7)
        assert config.mailboxes["b/*"] == MailboxConfig(overflow=Overflow.REJECT)
        assert tomllib.loads(config_to_toml(config))["mailbox"] == {
            "a/*": {"capacity": 7},
            "b/*": {"overflow": "reject"},
        }

    def test_relative_audit_path_is_anchored_at_the_config_file(self, tmp_path):
        """A relative audit path means the same file whatever the working directory."""
        config = load_config(write(tmp_path, '[audit]\npath = "logs/audit.jsonl"\n'))
        assert config.audit_path == tmp_path / "logs" / "audit.jsonl"

    def test_absolute_audit_path_is_kept(self, tmp_path):
        """An absolute audit path is used as written."""
        target = tmp_path / "elsewhere" / "a.jsonl"
        config = load_config(write(tmp_path, f"[audit]\npath = {json.dumps(str(target))}\n"))
        assert config.audit_path == target

    def test_tenants_start_from_the_default_limits(self, tmp_path):
        config = load_config(write(tmp_path, "[tenants.default]\nrate = 10\n[tenants.acme]\nquota = 5\n"))
        assert config.tenant_default == TenantLimits(rate=10.0)
        assert dict(config.tenant_limits) == {"acme": TenantLimits(rate=10.0, quota=5)}

    def test_tree_factory_and_options_are_read_only(self, tmp_path):
        """[tree.options] is free-form and handed over frozen: tables read-only, arrays tuples."""
        text = (
            '[tree]\nfactory = "pkg.mod:make.tree"\n'
            '[tree.options]\npings = 7\nnames = ["a", "b"]\n[tree.options.nested]\nx = 1\n'
        )
        config = load_config(write(tmp_path, text))
        assert config.tree_factory == "pkg.mod:make.tree"
        options = config.tree_options
        assert isinstance(options, MappingProxyType)
        assert options["pings"] == 7
        assert options["names"] == ("a", "b")
        assert isinstance(options["nested"], MappingProxyType)
        with pytest.raises(TypeError):
            options["nested"]["x"] = 2  # type: ignore[index]

    def test_config_is_frozen(self):
        """Config is an immutable value."""
        config = Config()
        with pytest.raises(AttributeError):
            config.name = "other"  # type: ignore[misc]


# (file text, what the detail must name): each one is CONFIG_INVALID.
BAD = [
    pytest.param("[kafka]\nurl = 'x'\n", "kafka: unknown section", id="unknown-section"),
    pytest.param("[nats]\nurl = 'x'\n", "nats.url: unknown key", id="nats-unknown-key"),
    pytest.param("[nats]\nurls = 'nats://h:1'\n", "nats.urls: must be a list", id="nats-urls-not-list"),
    pytest.param("[nats]\nurls = ['http://h:1']\n", "is not a nats://", id="nats-url-scheme"),
    pytest.param("[nats]\nsync_always = 1\n", "nats.sync_always: must be true or false", id="nats-sync"),
    pytest.param("[nats]\ntoken = 5\n", "nats.token: must be a non-empty string, got ***", id="nats-token-masked"),
    pytest.param("system = 1\n", "system: must be a table", id="section-not-table"),
    pytest.param("[system]\nnmae = 'x'\n", "system.nmae: unknown key", id="unknown-system-key"),
    pytest.param("[system]\nname = ''\n", "system.name: must be a non-empty string", id="empty-name"),
    pytest.param("[system]\nname = 3\n", "system.name: must be a non-empty string", id="name-int"),
    pytest.param("[system]\nstop_timeout = '5'\n", "system.stop_timeout: must be a number", id="stop-str"),
    pytest.param("[system]\nstop_timeout = true\n", "system.stop_timeout: must be a number", id="stop-bool"),
    pytest.param("[system]\nstop_timeout = 0\n", "system.stop_timeout: must be finite and > 0", id="stop-0"),
    pytest.param("[system]\nstop_timeout = -1.0\n", "system.stop_timeout: must be finite", id="stop-neg"),
    pytest.param("[system]\nstop_timeout = inf\n", "system.stop_timeout: must be finite", id="stop-inf"),
    pytest.param("[system]\nstop_timeout = nan\n", "system.stop_timeout: must be finite", id="stop-nan"),
    pytest.param("[timeouts]\nkv_gte = 1\n", "unknown timeout category 'kv_gte'", id="timeout-unknown"),
    pytest.param("[timeouts]\nkv_get = 'fast'\n", "timeout KV_GET: not a number", id="timeout-str"),
    pytest.param("[timeouts]\nkv_get = 0\n", "timeout KV_GET: must be finite and > 0", id="timeout-0"),
    pytest.param("[timeouts]\nkv_get = true\n", "timeout KV_GET: not a number", id="timeout-bool"),
    pytest.param("[timeouts]\nkv_get = 1\nKV_GET = 2\n", "timeouts.KV_GET: same category", id="timeout-twice"),
    pytest.param("mailbox = 3\n", "mailbox: must be a table", id="mailbox-not-table"),
    pytest.param("[mailbox]\n'a/*' = 3\n", 'mailbox."a/*": must be a table', id="mailbox-entry-not-table"),
    pytest.param("[mailbox.'a/*']\n", 'mailbox."a/*": empty', id="empty-override"),
    pytest.param(
        "[mailbox.'a/*']\ncapacity = 5\noverflow = 'wait'\nsize = 1\n",
        'mailbox."a/*".size: unknown key',
        id="mailbox-unknown-key",
    ),
    pytest.param("[mailbox.'a']\ncapacity = 0\noverflow = 'wait'\n", "mailbox.a.capacity: ", id="capacity-0"),
    pytest.param("[mailbox.'a']\ncapacity = '9'\noverflow = 'wait'\n", "mailbox.a.capacity: ", id="capacity-str"),
    pytest.param("[mailbox.'a']\ncapacity = true\noverflow = 'wait'\n", "mailbox.a.capacity: ", id="capacity-bool"),
    pytest.param(
        "[mailbox.'a']\ncapacity = 9\noverflow = 'drop'\n",
        "mailbox.a.overflow: must be one of reject, wait, shed_oldest",
        id="overflow-unknown",
    ),
    pytest.param("[mailbox.'']\ncapacity = 9\noverflow = 'wait'\n", "pattern is empty", id="empty-pattern"),
    pytest.param("[audit]\npath = 3\n", "audit.path: must be a non-empty string", id="audit-int"),
    pytest.param("[audit]\npath = ''\n", "audit.path: must be a non-empty string", id="audit-empty"),
    pytest.param("[audit]\nfile = 'a'\n", "audit.file: unknown key", id="audit-unknown-key"),
    pytest.param("[tree]\nfactory = 'actors.demo'\n", "tree.factory: must be", id="factory-no-colon"),
    pytest.param("[tree]\nfactory = 'a b:c'\n", "tree.factory: must be", id="factory-space"),
    pytest.param("[tree]\nfactory = 1\n", "tree.factory: must be", id="factory-int"),
    pytest.param("[tree]\noptions = 3\n", "tree.options: must be a table", id="options-not-table"),
    pytest.param("[tree]\nfactroy = 'a:b'\n", "tree.factroy: unknown key", id="tree-unknown-key"),
    pytest.param("[system\nname = 1\n", "not valid TOML", id="not-toml"),
    pytest.param("[tenants.default]\nrate = -1\n", "tenants.default.rate: must be a number", id="rate-negative"),
    pytest.param("[tenants.acme]\nburst = 'x'\n", "tenants.acme.burst: must be a number", id="burst-str"),
    pytest.param("[tenants.acme]\nquota = 1.5\n", "tenants.acme.quota: must be an integer", id="quota-float"),
    pytest.param("[tenants.acme]\nspeed = 1\n", "tenants.acme.speed: unknown key", id="tenant-unknown-key"),
    pytest.param("[tenants.'a b']\nrate = 1\n", "tenants.a b: tenant must be", id="tenant-name"),
    pytest.param("[tenants]\nacme = 3\n", "tenants.acme: must be a table", id="tenant-not-table"),
]


class TestInvalid:
    @pytest.mark.parametrize(("text", "names"), BAD)
    def test_bad_input_is_config_invalid_naming_file_and_key(self, tmp_path, text, names):
        """Each kind of bad input raises InvalidInput(CONFIG_INVALID) whose detail names file and key."""
        path = write(tmp_path, text)
        with pytest.raises(InvalidInput) as caught:
            load_config(path)
        assert caught.value.code is ReasonCode.CONFIG_INVALID
        assert caught.value.detail.startswith(f"{path}: ")
        assert names in caught.value.detail

    def test_missing_file(self, tmp_path):
        """A file that does not exist is CONFIG_INVALID, not a bare OSError."""
        path = tmp_path / "absent.toml"
        with pytest.raises(InvalidInput) as caught:
            load_config(path)
        assert caught.value.code is ReasonCode.CONFIG_INVALID
        assert f"{path}: cannot read" in caught.value.detail

    def test_file_that_is_not_utf8(self, tmp_path):
        """Bytes that are not UTF-8 are CONFIG_INVALID."""
        path = tmp_path / "binary.toml"
        path.write_bytes(b"[system]\nname = '\xff'\n")
        with pytest.raises(InvalidInput) as caught:
            load_config(path)
        assert caught.value.code is ReasonCode.CONFIG_INVALID
        assert "cannot read" in caught.value.detail

    def test_invalid_config_is_a_value_error(self):
        """InvalidInput is also the builtin it resembles."""
        with pytest.raises(ValueError):
            parse_config_text("[bogus]\n", source="inline", base_dir=None)


class TestShow:
    FULL = (
        '[system]\nname = "edge \\"1\\" ✓"\nstop_timeout = 0.5\n'
        "[timeouts]\nkv_get = 1.25\n"
        '[mailbox."tenant/*.x"]\ncapacity = 3\noverflow = "reject"\n'
        '[mailbox.plain]\ncapacity = 4\noverflow = "wait"\n'
        '[audit]\npath = "/var/log/exo audit.jsonl"\n'
        '[tree]\nfactory = "pkg.mod:build"\n'
        "[tree.options]\nn = 1\nratio = inf\nflag = true\nwhen = 2024-05-01T10:00:00Z\n"
        'text = "tab\\t del\\u007f 😀"\nitems = [1, [2, 3], {a = "b"}]\n'
        "[tree.options.deep.er]\nk = \"v\"\n"
    )

    def test_toml_output_loads_back_to_the_same_config(self):
        """`exoarmur config` output is TOML that parses to an equal Config."""
        config = parse_config_text(self.FULL, source="full", base_dir=None)
        assert config.tree_options["when"] == datetime.datetime(2024, 5, 1, 10, tzinfo=datetime.UTC)
        again = parse_config_text(config_to_toml(config), source="again", base_dir=None)
        assert again == config

    def test_toml_output_of_defaults_lists_every_timeout_category(self):
        """The printed defaults show every category, so an operator sees what applies."""
        shown = tomllib.loads(config_to_toml(Config()))
        assert set(shown["timeouts"]) == {c.name.lower() for c in TimeoutCategory}
        assert shown["tree"]["factory"] == DEFAULT_FACTORY

    def test_json_output(self):
        """The JSON form has the same sections; datetimes are ISO strings."""
        config = parse_config_text(self.FULL, source="full", base_dir=None)
        shown = json.loads(config_to_json(config))
        assert shown["system"] == {"name": 'edge "1" ✓', "stop_timeout": 0.5}
        assert shown["timeouts"]["kv_get"] == 1.25
        assert shown["mailbox"]["tenant/*.x"] == {"capacity": 3, "overflow": "reject"}
        assert shown["audit"] == {"path": "/var/log/exo audit.jsonl"}
        assert shown["tree"]["options"]["when"] == "2024-05-01T10:00:00+00:00"
        assert shown["tree"]["options"]["items"] == [1, [2, 3], {"a": "b"}]


class TestNatsSection:
    def test_defaults_are_the_embedded_server(self):
        config = load_config()
        assert config.nats.embedded and config.nats.sync_always
        assert config.nats == NatsConfig()

    def test_a_relative_data_dir_is_relative_to_the_file(self, tmp_path):
        path = tmp_path / "exoarmur.toml"
        path.write_text('[nats]\ndata_dir = "state/nats"\n')
        assert load_config(path).nats.data_dir == tmp_path / "state/nats"

    def test_secrets_are_never_shown(self, tmp_path):
        path = tmp_path / "exoarmur.toml"
        path.write_text('[nats]\nurls = ["nats://127.0.0.1:4333"]\ntoken = "s3cret-token"\nuser = "u"\npassword = "pw-s3cret"\n')
        config = load_config(path)
        assert not config.nats.embedded
        for text in (config_to_toml(config), config_to_json(config), repr(config)):
            assert "s3cret-token" not in text and "pw-s3cret" not in text
        assert config_to_dict(config)["nats"]["token"] == MASK

    def test_the_environment_supplies_credentials_and_wins(self):
        config = NatsConfig(token="from-file").with_environment(
            {"EXOARMUR_NATS_TOKEN": "from-env", "EXOARMUR_NATS_USER": "alice"}
        )
        assert (config.token, config.user) == ("from-env", "alice")
        assert NatsConfig().with_environment({}) == NatsConfig()
