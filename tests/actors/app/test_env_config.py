"""Every config key from the environment (actors/app/env_config.py): laid
over the file, checked as the file's keys are, a bad one CONFIG_INVALID
naming its variable; any environment is a config or that one error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.app.config import load_config, parse_config_text
from exoarmur.actors.tenants import TenantLimits
from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode

FILE = '[tenants.default]\nrate = 5\n[intents]\nlease_ttl = 20.0\n'


def parsed(environ: dict[str, str], text: str = FILE):
    return parse_config_text(text, source="test.toml", base_dir=None, environ=environ)


def test_a_variable_overrides_its_key_and_values_are_read_as_toml():
    config = parsed({
        "EXOARMUR_TENANTS__DEFAULT__RATE": "50",
        "EXOARMUR_TENANTS__ACME__QUOTA": "7",
        "EXOARMUR_INTENTS__LEASE_TTL": "30.5",
        "EXOARMUR_NATS__SYNC_ALWAYS": "false",
        "EXOARMUR_NATS__URLS": '["nats://127.0.0.1:4333", "nats://127.0.0.1:4334"]',
        "EXOARMUR_SYSTEM__NAME": "edge-1",  # not TOML: a string
        "PATH_NOT_OURS__X": "1", "EXOARMUR_NATS_TOKEN": "s3cret",  # not overrides of a key
    })  # fmt: skip
    assert config.tenant_default == TenantLimits(rate=50.0)
    assert config.tenant_limits["acme"] == TenantLimits(rate=50.0, quota=7)  # from the default's, as in a file
    assert config.lease_ttl == 30.5 and config.name == "edge-1"
    assert config.nats.sync_always is False and config.nats.urls == ("nats://127.0.0.1:4333", "nats://127.0.0.1:4334")


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"EXOARMUR_TENANTS__DEFAULT__RATE": "-1"}, "EXOARMUR_TENANTS__DEFAULT__RATE: test.toml: tenants.default.rate"),
        ({"EXOARMUR_INTENTS__LEASE_TTL": '"soon"'}, "EXOARMUR_INTENTS__LEASE_TTL"),
        ({"EXOARMUR_INTENTS__NOPE": "1"}, "EXOARMUR_INTENTS__NOPE"),
        ({"EXOARMUR_NOPE__X": "1"}, "unknown section 'nope'"),
        ({"EXOARMUR_TENANTS____RATE": "1"}, "must name a key"),
        ({"EXOARMUR_INTENTS__LEASE_TTL__X": "1"}, "intents.lease_ttl is not a table"),
    ],
)
def test_a_bad_variable_is_config_invalid_naming_it(environ, names):
    with pytest.raises(InvalidInput) as caught:
        parsed(environ)
    assert caught.value.code is ReasonCode.CONFIG_INVALID and names in caught.value.detail
    assert caught.value.detail.startswith("environment EXOARMUR_")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.builds(lambda parts: "EXOARMUR_" + "__".join(parts),
              st.lists(st.sampled_from(["TENANTS", "DEFAULT", "RATE", "INTENTS", "LEASE_TTL", "X", "nats", "URLS", ""]),
                       min_size=1, max_size=4)),
    st.text(max_size=20) | st.sampled_from(["1", "-1", "true", "[1]", '"a"', "1e9", "{}", "nan"]),
    max_size=4,
))  # fmt: skip
def test_any_environment_is_a_config_or_config_invalid(environ):
    try:
        parsed(environ)
    except ExoarmurError as exc:
        assert exc.code is ReasonCode.CONFIG_INVALID


def test_exoarmur_config_shows_what_the_environment_sets_and_refuses_a_bad_one(tmp_path):
    env = {**os.environ, "EXOARMUR_TENANTS__DEFAULT__RATE": "50"}
    done = subprocess.run([sys.executable, "-m", "exoarmur", "config"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and "[tenants.default]\nrate = 50.0" in done.stdout, done.stderr
    env["EXOARMUR_TENANTS__DEFAULT__RATE"] = "fast"
    done = subprocess.run([sys.executable, "-m", "exoarmur", "config"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert "CONFIG_INVALID: environment EXOARMUR_TENANTS__DEFAULT__RATE" in done.stderr


def test_load_config_without_an_environment_is_the_file_alone(monkeypatch):
    monkeypatch.setenv("EXOARMUR_SYSTEM__NAME", "from-env")
    assert load_config().name == "exoarmur"
    assert load_config(environ=os.environ).name == "from-env"


@pytest.mark.parametrize(
    ("urls", "extra", "secure"),
    [
        (["nats://127.0.0.1:4222", "nats://[::1]:4222", "nats://localhost:4222"], "", True),  # loopback
        (["nats://10.0.0.5:4222"], "", False),
        (["nats://nats.internal:4222"], "", False),  # a name could be anywhere
        (["nats://127.0.0.1:4222", "nats://10.0.0.5:4222"], "", False),  # one is enough
        (["nats://10.0.0.5:4222"], 'token = "t"', True),
        (["nats://10.0.0.5:4222"], 'user = "u"\npassword = "p"', True),
        (["tls://10.0.0.5:4222"], "", True),
    ],
)
def test_a_nats_url_outside_loopback_needs_credentials_or_tls(urls, extra, secure):
    urls_toml = ", ".join(f'"{url}"' for url in urls)
    config = parse_config_text(f"[nats]\nurls = [{urls_toml}]\n{extra}\n", source="t.toml", base_dir=None)
    if secure:
        config.nats.check_secure()
        return
    with pytest.raises(InvalidInput) as caught:
        config.nats.check_secure()
    assert caught.value.code is ReasonCode.CONFIG_INVALID and "neither credentials nor TLS" in caught.value.detail


def test_exoarmur_run_refuses_an_insecure_nats_before_it_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOARMUR_")}
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur", "run", "--nats-url", "nats://10.0.0.5:4222", "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "CONFIG_INVALID: nats.urls: nats://10.0.0.5:4222 is outside loopback" in done.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was made


def test_exoarmur_run_refuses_health_and_metrics_outside_loopback_unless_allowed(tmp_path):
    """One JSON line on stderr (it is not a terminal), CONFIG_INVALID, exit 2, nothing made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOARMUR_")}
    env["EXOARMUR_HTTP__ADDRESS"] = "0.0.0.0"
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur", "run", "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    event = json.loads(line)
    assert (event["level"], event["event"], event["code"]) == ("error", "process.fatal", "CONFIG_INVALID")
    assert "http.address: 0.0.0.0 is outside loopback" in event["message"] and "allow_remote" in event["message"]
    assert not (tmp_path / "s").exists()
    allowed = parse_config_text('[http]\naddress = "0.0.0.0"\nallow_remote = true\n', source="t", base_dir=None)
    allowed.http.check_secure()  # the explicit opt-in
