"""`exoarmur intent`, `killswitch`, `replay` and `status` against a running `exoarmur run`:
JSON on stdout alone with --json, the code on stderr, the documented exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import nats
import orjson
import pytest

from tests.actors.app.test_cli import REPO

EXIT_OK, EXIT_FAILURE, EXIT_INPUT, EXIT_INTENT_FAILED = 0, 1, 2, 3


@pytest.fixture
def anyio_backend():
    """Plain tests driving subprocesses: one pass, not one per backend (the
    process under test is the same either way)."""
    return "asyncio"


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One `exoarmur run` for the module's tests (its state dir)."""
    root = tmp_path_factory.mktemp("cli")
    env = {"PYTHONPATH": str(REPO)}
    config = root / "cli.toml"
    config.write_text('[execution_types.approved]\nclass = "tests.integration.cli_types:Approved"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "exoarmur", "run", "--state-dir", str(root / "state"), "--config", str(config)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**__import__("os").environ, **env},
    )
    deadline = time.monotonic() + 60
    while not (root / "state" / "connection.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
        time.sleep(0.05)
    yield root / "state"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def cli(state, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exoarmur", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_submit_with_json_prints_only_the_intent_and_a_duplicate_is_suppressed(running):
    done = cli(running, "intent", "submit", "--tenant", "acme", "--type", "ledger", "--id", "c-1", "--wait", "10", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    intent = json.loads(done.stdout)  # stdout holds the JSON and nothing else
    assert (intent["id"], intent["state"], intent["attempts"]) == ("c-1", "SUCCEEDED", 1)
    again = cli(running, "intent", "submit", "--tenant", "acme", "--type", "ledger", "--id", "c-1", "--json")
    assert again.returncode == EXIT_OK and json.loads(again.stdout)["revision"] == intent["revision"]
    assert "DUPLICATE_SUPPRESSED" in again.stderr


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (("intent", "get", "--tenant", "acme", "missing"), "INTENT_NOT_FOUND", EXIT_FAILURE),
        (("intent", "submit", "--tenant", "acme", "--type", "nope"), "EXECUTION_TYPE_UNKNOWN", EXIT_INPUT),
        (("intent", "submit", "--tenant", "a.b", "--type", "noop"), "INTENT_INVALID", EXIT_INPUT),
        (("intent", "submit", "--tenant", "acme", "--type", "noop", "--param", "novalue"), "INTENT_INVALID", EXIT_INPUT),
        (("intent", "revert", "--tenant", "acme", "missing"), "INTENT_NOT_FOUND", EXIT_FAILURE),
    ],
)
def test_failures_are_coded_on_stderr_and_as_json_with_the_documented_exit(running, args, code, exit_code):
    done = cli(running, *args, "--json")
    assert done.returncode == exit_code, done.stderr
    assert json.loads(done.stdout) == {"ok": False, "code": code, "detail": json.loads(done.stdout)["detail"]}
    assert done.stderr.startswith(f"exoarmur: {code}: ")


def test_an_intent_that_ends_failed_exits_3(running):
    done = cli(running, "intent", "submit", "--tenant", "acme", "--type", "noop", "--timeout", "0.001", "--wait", "10")
    assert done.returncode == EXIT_INTENT_FAILED, done.stderr
    assert "EXPIRED" in done.stdout and "DEADLINE_EXCEEDED" in done.stderr


def test_get_with_wait_shows_the_intent_once_it_ends(running):
    done = cli(running, "intent", "submit", "--tenant", "acme", "--type", "noop", "--id", "g-1", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    got = cli(running, "intent", "get", "--tenant", "acme", "g-1", "--wait", "10", "--json")
    assert got.returncode == EXIT_OK, got.stderr
    assert json.loads(got.stdout)["state"] == "SUCCEEDED"
    bad = cli(running, "intent", "get", "--tenant", "acme", "g-1", "--wait", "-1", "--json")
    assert bad.returncode == EXIT_INPUT and json.loads(bad.stdout)["code"] == "INTENT_INVALID"


def test_list_shows_a_tenants_intents_by_state(running):
    for n in range(3):
        cli(running, "intent", "submit", "--tenant", "listed", "--type", "noop", "--id", f"l-{n}", "--wait", "10")
    done = cli(running, "intent", "list", "--tenant", "listed", "--state", "SUCCEEDED", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    listed = json.loads(done.stdout)
    assert [i["id"] for i in listed["intents"]] == ["l-0", "l-1", "l-2"] and listed["truncated"] is False
    table = cli(running, "intent", "list", "--tenant", "listed")
    assert table.stdout.splitlines()[0].split() == ["id", "type", "state", "code", "attempts", "revision"]


def test_replay_verifies_then_names_a_record_changed_behind_its_back(running):
    ok = cli(running, "replay", "--verify", "--json")
    assert ok.returncode == EXIT_OK, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    cli(running, "intent", "submit", "--tenant", "tampered", "--type", "noop", "--id", "t-1", "--wait", "10")
    asyncio.run(tamper(running, "tampered.t-1"))
    diverged = cli(running, "replay", "--verify", "--json")
    assert diverged.returncode == EXIT_FAILURE
    report = json.loads(diverged.stdout)
    assert report["ok"] is False and "REPLAY_DIVERGED" in diverged.stderr
    assert any(p.get("intent") == "t-1" and p.get("tenant") == "tampered" for p in report["problems"]), report


async def tamper(state, key: str) -> None:
    """Rewrite a record in KV as an attacker with the credentials would."""
    info = orjson.loads((state / "connection.json").read_bytes())
    client = await nats.connect(servers=info["urls"], token=info["token"])
    try:
        kv = await client.jetstream().key_value("exoarmur_intents")
        entry = await kv.get(key)
        record = orjson.loads(entry.value)
        record["params"] = {"changed": True}
        await kv.put(key, orjson.dumps(record))
    finally:
        await client.close()


@pytest.mark.parametrize(
    "args",
    [
        ("--wait", "-1"), ("--wait", "nan"), ("--timeout", "inf"), ("--param", "x=99999999999999999999"),
        ("--param", "bad name=1"),
    ],
)  # fmt: skip
def test_bad_submit_options_are_refused_before_anything_is_sent(running, args):
    done = cli(running, "intent", "submit", "--tenant", "opts", "--type", "noop", "--id", "never", *args, "--json")
    assert done.returncode == EXIT_INPUT, done.stderr
    assert json.loads(done.stdout)["code"] == "INTENT_INVALID"
    assert cli(running, "intent", "get", "--tenant", "opts", "never").returncode == EXIT_FAILURE  # nothing was sent


def test_param_values_are_numbers_only_when_written_as_json_numbers(running):
    done = cli(
        running, "intent", "submit", "--tenant", "opts", "--type", "noop", "--id", "typed",
        "--param", "a=007", "--param", "b=1_000", "--param", "c=42", "--param", "d=true", "--json",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["params"] == {"a": "007", "b": "1_000", "c": 42, "d": True}


def test_killswitch_set_status_clear_with_their_exit_codes(running):
    """A tenant's switch: set (user@host recorded), an intent of that tenant
    KILLED (exit 3), status exits 4 while one is active, clear, then 0."""
    done = cli(running, "killswitch", "set", "--tenant", "ks", "--reason", "drill", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    switch = json.loads(done.stdout)
    assert (switch["tenant"], switch["active"], switch["reason"]) == ("ks", True, "drill") and "@" in switch["who"]
    try:
        killed = cli(running, "intent", "submit", "--tenant", "ks", "--type", "ledger", "--wait", "10", "--json")
        assert killed.returncode == EXIT_INTENT_FAILED, killed.stderr
        assert (json.loads(killed.stdout)["state"], json.loads(killed.stdout)["code"]) == ("KILLED", "KILL_SWITCH_ACTIVE")
        status = cli(running, "killswitch", "status", "--json")
        assert status.returncode == 4 and json.loads(status.stdout)["active"] is True
        table = cli(running, "killswitch", "status", "--tenant", "ks")
        assert table.returncode == 4 and "ks" in table.stdout and "ACTIVE" in table.stdout and "drill" in table.stdout
    finally:
        cleared = cli(running, "killswitch", "clear", "--tenant", "ks", "--json")
    assert cleared.returncode == EXIT_OK and json.loads(cleared.stdout)["active"] is False
    assert cli(running, "killswitch", "status", "--tenant", "ks", "--json").returncode == EXIT_OK


@pytest.mark.parametrize(
    "args",
    [
        ("killswitch", "set", "--tenant", "a.b"),
        ("killswitch", "clear", "--reason", "x" * 1001),
    ],
)
def test_a_bad_killswitch_request_is_control_invalid_and_exits_2(running, args):
    done = cli(running, *args, "--json")
    assert done.returncode == EXIT_INPUT, done.stderr
    assert json.loads(done.stdout)["code"] == "CONTROL_INVALID" and done.stderr.startswith("exoarmur: CONTROL_INVALID: ")


def test_approve_and_deny_decide_once_with_their_exit_codes(running):
    """An intent of a type that asks for approval waits; `approve` lets it
    run (who and why kept), again is a no-op (exit 0, DUPLICATE_SUPPRESSED);
    `deny` then, or a decision on what waits for none, exits 1."""
    done = cli(running, "intent", "submit", "--tenant", "acme", "--type", "approved", "--id", "ap-1", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    waiting = cli(running, "intent", "get", "--tenant", "acme", "ap-1", "--wait", "0.5", "--json")
    assert waiting.returncode == EXIT_FAILURE and "AWAITING_APPROVAL" in waiting.stderr  # still waiting after 0.5 s
    approved = cli(running, "intent", "approve", "--tenant", "acme", "ap-1", "--reason", "seen", "--json")
    assert approved.returncode == EXIT_OK, approved.stderr
    decision = json.loads(approved.stdout)["approval"]
    assert (decision["decision"], decision["reason"], "@" in decision["who"]) == ("approved", "seen", True)
    ended = cli(running, "intent", "get", "--tenant", "acme", "ap-1", "--wait", "10", "--json")
    assert json.loads(ended.stdout)["state"] == "SUCCEEDED"
    again = cli(running, "intent", "approve", "--tenant", "acme", "ap-1")
    assert again.returncode == EXIT_OK and "DUPLICATE_SUPPRESSED" in again.stderr
    for args in (("deny", "--tenant", "acme", "ap-1"), ("approve", "--tenant", "acme", "c-1"), ("deny", "--tenant", "acme", "nope")):
        refused = cli(running, "intent", *args, "--json")
        assert refused.returncode == EXIT_FAILURE, refused.stderr
        assert json.loads(refused.stdout)["code"] in ("INTENT_STATE_INVALID", "INTENT_NOT_FOUND")
    denied = cli(running, "intent", "submit", "--tenant", "acme", "--type", "approved", "--id", "ap-2")
    assert denied.returncode == EXIT_OK
    assert cli(running, "intent", "deny", "--tenant", "acme", "ap-2", "--reason", "no").returncode == EXIT_OK
    ended = cli(running, "intent", "get", "--tenant", "acme", "ap-2", "--wait", "10", "--json")
    assert ended.returncode == EXIT_INTENT_FAILED and json.loads(ended.stdout)["code"] == "APPROVAL_DENIED"


def test_status_shows_the_live_tree_of_the_process_of_the_state_dir(running):
    done = cli(running, "status", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    reply = json.loads(done.stdout)
    owner = (running / "owner").read_text().strip()
    assert reply["ok"] and reply["process"]["owner"] == owner and reply["process"]["backend"] == "asyncio"
    nodes = {}

    def walk(node):
        nodes[node["path"]] = node
        for child in node["children"]:
            walk(child)

    for node in reply["tree"]:
        walk(node)
    assert {"nats/connection", "store/records", "controls/gates", "intents/service", "status"} <= set(nodes)
    connection = nodes["nats/connection"]
    assert connection["state"] == "running" and connection["capacity"] > 0 and connection["breaker"].startswith("closed")
    table = cli(running, "status")
    assert table.returncode == EXIT_OK and f"process {owner}" in table.stdout
    assert any(line.split()[:2] == ["intents/service", "IntentService"] for line in table.stdout.splitlines())


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (("--process", "p-0000000000000000"), "NATS_NO_RESPONDERS", EXIT_FAILURE),  # no such process
        (("--process", "someone"), "CONFIG_INVALID", EXIT_INPUT),
    ],
)
def test_status_of_a_process_that_is_not_there_is_coded(running, args, code, exit_code):
    done = cli(running, "status", "--json", *args)
    assert done.returncode == exit_code, done.stderr
    assert json.loads(done.stdout) == {"ok": False, "code": code, "detail": json.loads(done.stdout)["detail"]}
    assert code in done.stderr


def test_version_names_exoarmur_python_and_nats_server():
    done = subprocess.run([sys.executable, "-m", "exoarmur", "version", "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_OK and set(json.loads(done.stdout)) == {"exoarmur", "python", "nats-server"}
    assert json.loads(done.stdout)["nats-server"].startswith("v")



def test_status_without_a_process_or_a_url_is_config_invalid(tmp_path):
    done = cli(tmp_path / "never-ran", "status", "--json")
    assert done.returncode == EXIT_INPUT and json.loads(done.stdout)["code"] == "CONFIG_INVALID"
    assert "no process has run with this state directory" in done.stderr


def test_status_through_a_url_alone_is_answered_by_any_process(running, tmp_path):
    connection = json.loads((running / "connection.json").read_text())
    env = {**__import__("os").environ, "EXOARMUR_NATS_TOKEN": connection.get("token", "")}
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur", "status", "--json", "--state-dir", str(tmp_path), "--nats-url", connection["urls"][0]],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["process"]["owner"] == (running / "owner").read_text().strip()
