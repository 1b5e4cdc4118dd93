"""NATS credentials are declared once (Credentials): the `[nats]` config and
the connection's options carry the same fields, the default tree hands them
all over, and secrets never show in a repr."""

from __future__ import annotations

from pathlib import Path

import attrs

from exoarmur.actors.app.nats_config import ENVIRONMENT, NatsConfig, parse_nats
from exoarmur.actors.app.tree import nats_spec
from exoarmur.actors.nats.credentials import CREDENTIALS, SECRETS, Credentials
from exoarmur.actors.nats.options import ConnectionOptions

EVERY_CREDENTIAL = {name: f"value-of-{name}" for name in CREDENTIALS}


class TestCredentials:
    def test_the_config_and_the_options_take_their_credential_fields_from_credentials(self):
        for settings in (NatsConfig, ConnectionOptions):
            inherited = [field.name for field in attrs.fields(settings) if field.inherited]
            assert inherited == list(CREDENTIALS)

    def test_secrets_are_never_in_a_repr(self):
        assert SECRETS == {"token", "password"}
        for settings in (
            Credentials(**EVERY_CREDENTIAL),
            NatsConfig(**EVERY_CREDENTIAL),
            ConnectionOptions(urls=["nats://127.0.0.1:1"], **EVERY_CREDENTIAL),
        ):
            shown = repr(settings)
            assert all(EVERY_CREDENTIAL[name] not in shown for name in SECRETS)
            assert EVERY_CREDENTIAL["user"] in shown

    def test_the_environment_names_are_those_of_before(self):
        assert ENVIRONMENT == {
            "EXOARMUR_NATS_TOKEN": "token",
            "EXOARMUR_NATS_USER": "user",
            "EXOARMUR_NATS_PASSWORD": "password",
            "EXOARMUR_NATS_CREDS_FILE": "creds_file",
            "EXOARMUR_NATS_NKEYS_SEED_FILE": "nkeys_seed_file",
        }

    def test_every_credential_parsed_from_the_file_reaches_the_connection(self):
        """parse_nats takes each credential key; the default tree's connection
        options get every one of them."""
        config = parse_nats({"urls": ["nats://10.0.0.5:4222"], **EVERY_CREDENTIAL}, source="test", base_dir=None)
        assert config.credentials() == EVERY_CREDENTIAL
        (connection,) = nats_spec(config, data_dir=Path("unused")).children
        options = connection.kwargs["options"]
        assert options.urls == ("nats://10.0.0.5:4222",)
        assert options.credentials() == EVERY_CREDENTIAL

    def test_credentials_become_nats_py_connect_arguments(self):
        options = ConnectionOptions(urls=["nats://h:1"], token="t", user="u", password="p", creds_file="c")
        kwargs = options.client_kwargs()
        assert (kwargs["token"], kwargs["user"], kwargs["password"], kwargs["user_credentials"]) == ("t", "u", "p", "c")
        assert "nkeys_seed" not in kwargs and "tls" not in kwargs
        assert kwargs["servers"] == ["nats://h:1"]


class TestShownUrls:
    def test_a_password_or_token_in_a_url_is_masked_wherever_it_is_shown(self):
        """`exoarmur config` and the connection's errors show URLs through
        redact_url: a password, or a user alone (NATS takes it as a token),
        never appears."""
        from exoarmur.actors.nats.credentials import redact_url

        assert redact_url("nats://alice:s3cret@10.0.0.5:4222") == "nats://alice:***@10.0.0.5:4222"
        assert redact_url("tls://t0ken@nats.example:4222") == "tls://***@nats.example:4222"
        assert redact_url("nats://10.0.0.5:4222") == "nats://10.0.0.5:4222"
        shown = NatsConfig(urls=("nats://alice:s3cret@10.0.0.5:4222",)).shown()
        assert shown["urls"] == ["nats://alice:***@10.0.0.5:4222"]
        assert "s3cret" not in repr(shown)


class TestCredentialFiles:
    def test_a_credential_file_that_is_not_there_is_config_invalid_naming_the_key(self, tmp_path):
        import pytest

        from exoarmur.runtime import InvalidInput, ReasonCode

        real = tmp_path / "ca.pem"
        real.write_text("x")
        NatsConfig(tls_ca_file=str(real)).check_files(source="c.toml")
        for key in ("creds_file", "nkeys_seed_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
            with pytest.raises(InvalidInput) as caught:
                NatsConfig(**{key: str(tmp_path / "missing")}).check_files(source="c.toml")
            assert caught.value.code is ReasonCode.CONFIG_INVALID
            assert f"c.toml: nats.{key}:" in caught.value.detail
