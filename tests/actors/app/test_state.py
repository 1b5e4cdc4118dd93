"""The connection file a running process leaves: what the CLI reads, and a
dead process's file told apart from a live one at once."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from exoarmur.actors.app.state import StateDir
from exoarmur.runtime import ExoarmurError, ReasonCode


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_file_is_private_and_read_back(tmp_path):
    state = StateDir(tmp_path)
    file = state.write_connection(urls=("nats://127.0.0.1:4",), credentials={"token": "s3cret"}, embedded=True)
    assert file.stat().st_mode & 0o777 == 0o600
    urls, credentials = state.read_connection()
    assert urls == ("nats://127.0.0.1:4",) and credentials.token == "s3cret"


def test_the_file_names_the_health_url_when_there_is_one(tmp_path):
    state = StateDir(tmp_path)
    state.write_connection(urls=("nats://127.0.0.1:4",), credentials={}, http="http://127.0.0.1:9464")
    assert orjson.loads((tmp_path / "connection.json").read_bytes())["http"] == "http://127.0.0.1:9464"
    state.write_connection(urls=("nats://127.0.0.1:4",), credentials={})
    assert "http" not in orjson.loads((tmp_path / "connection.json").read_bytes())


def test_a_dead_process_with_its_own_nats_is_told_at_once(tmp_path):
    """Its embedded NATS ended with it: nothing to wait for."""
    (tmp_path / "connection.json").write_bytes(
        orjson.dumps({"urls": ["nats://127.0.0.1:4"], "pid": dead_pid(), "embedded": True})
    )
    with pytest.raises(ExoarmurError) as caught:
        StateDir(tmp_path).read_connection()
    assert caught.value.code is ReasonCode.NATS_DISCONNECTED and "not running" in caught.value.detail


def test_a_dead_process_on_a_shared_nats_still_lets_others_answer(tmp_path):
    """Another process on the same NATS may serve the request."""
    (tmp_path / "connection.json").write_bytes(
        orjson.dumps({"urls": ["nats://127.0.0.1:4"], "pid": dead_pid(), "embedded": False})
    )
    assert StateDir(tmp_path).read_connection()[0] == ("nats://127.0.0.1:4",)
    (tmp_path / "connection.json").write_bytes(
        orjson.dumps({"urls": ["nats://127.0.0.1:4"], "pid": os.getpid(), "embedded": True})
    )
    assert StateDir(tmp_path).read_connection()[0] == ("nats://127.0.0.1:4",)
