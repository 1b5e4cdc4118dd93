"""`exoarmur config` (the effective config, the environment's credentials
included and masked) and `exoarmur bench NAME` (arguments and --help passed
to the script, a missing extra named): output and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import types

import pytest

from exoarmur.actors.app.cli import main
from exoarmur.actors.app.config import Config, parse_config_text
from exoarmur.benchmarks import EXTRA, EXTRA_PACKAGES
from tests.actors.app.test_cli import REPO


@pytest.fixture(autouse=True)
def no_nats_settings_from_the_environment(monkeypatch):
    """Each test sets what it needs: the runner's own EXOARMUR_NATS_* (and the
    suite's EXOARMUR_HTTP__PORT, tests/conftest.py) stay out."""
    for name in [name for name in os.environ if name.startswith(("EXOARMUR_NATS_", "EXOARMUR_HTTP__"))]:
        monkeypatch.delenv(name)


# ---- exoarmur config -------------------------------------------------------------------


class TestConfigCommand:
    def test_prints_the_defaults_as_toml(self, capsys):
        """Without --config it prints the built-in config, every default spelled out."""
        assert main(["config"]) == 0
        out = capsys.readouterr().out
        assert parse_config_text(out, source="printed", base_dir=None) == Config()
        assert tomllib.loads(out)["timeouts"]["execution_intent"] == 30.0

    def test_prints_a_file_as_json(self, tmp_path, capsys):
        """--format json shows the effective values of a given file."""
        path = tmp_path / "c.toml"
        path.write_text("[timeouts]\nkv_get = 1.5\n", encoding="utf-8")
        assert main(["config", "--config", str(path), "--format", "json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["timeouts"]["kv_get"] == 1.5
        assert shown["timeouts"]["kv_put"] == 5.0

    @pytest.mark.parametrize("fmt", ["toml", "json"])
    def test_credentials_from_the_environment_are_shown_masked(self, monkeypatch, capsys, fmt):
        """A token that only the environment gives shows as "***" (the secret
        never), as `run` would use it; json stays alone on stdout."""
        monkeypatch.setenv("EXOARMUR_NATS_TOKEN", "env-s3cret-token")
        assert main(["config", "--format", fmt]) == 0
        captured = capsys.readouterr()
        assert "env-s3cret-token" not in captured.out + captured.err
        shown = json.loads(captured.out) if fmt == "json" else tomllib.loads(captured.out)
        assert shown["nats"]["token"] == "***"
        if fmt == "toml":
            assert 'token = "***"' in captured.out.splitlines()

    def test_bad_file_exits_2_with_the_code(self, tmp_path, capsys):
        """A bad config is CONFIG_INVALID on stderr and exit code 2."""
        path = tmp_path / "c.toml"
        path.write_text("[nope]\n", encoding="utf-8")
        assert main(["config", "--config", str(path)]) == 2
        assert f"exoarmur: fatal: CONFIG_INVALID: {path}: nope: unknown section" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("text", "detail"),
        [
            ('[execution_types.bad]\nclass = "no.such.module:Nope"\n', "execution_types.bad.class: cannot load"),
            ("[intents]\nlease_ttl = 1\n", "lease_ttl"),
        ],
    )
    def test_execution_types_run_would_refuse_are_refused(self, tmp_path, capsys, text, detail):
        """`config` loads the execution types and checks them against the lease, as `run` does."""
        path = tmp_path / "c.toml"
        path.write_text(text, encoding="utf-8")
        assert main(["config", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "CONFIG_INVALID" in err and detail in err


# ---- exoarmur bench NAME -------------------------------------------------------------------


class TestRunRefusesBeforeStarting:
    @pytest.mark.parametrize(
        "nats, where",
        [
            ('urls = ["nats://127.0.0.1:1"]\ncreds_file = "{missing}"', "nats.creds_file: "),
            ('urls = ["nats://127.0.0.1:1"]\ntls_ca_file = "{missing}"', "nats.tls_ca_file: "),
            ('data_dir = "/proc/exoarmur-cannot-be-here"', "cannot be the data directory ([nats] data_dir)"),
        ],
        ids=["creds-file", "tls-ca-file", "data-dir"],
    )
    def test_a_path_it_cannot_use_is_config_invalid_exit_2(self, tmp_path, capsys, nats, where):
        """A credential file that is not there, or a data directory it cannot
        make, is one CONFIG_INVALID line and exit 2, before anything starts."""
        config = tmp_path / "c.toml"
        state = f'[state]\ndir = "{tmp_path / "state"}"\n'  # not the working directory's: tests run side by side
        config.write_text(state + "[nats]\n" + nats.format(missing=tmp_path / "missing") + "\n")
        assert main(["run", "--config", str(config), "--log-format", "text"]) == 2
        err = capsys.readouterr().err
        assert "exoarmur: fatal: CONFIG_INVALID: " in err and where in err and len(err.splitlines()) == 1
        assert "Traceback" not in err


class TestBench:
    def test_arguments_pass_through_to_the_benchmark(self, monkeypatch):
        """Every argument after `bench kernel` goes to benchmarks.bench_kernel.main (a
        leading `--` dropped) with the command's name for its usage line, and its
        return value is the exit code."""
        seen: list[tuple[list[str], str]] = []

        def fake_main(argv: list[str], *, prog: str) -> int:
            seen.append((argv, prog))
            return 3

        fake = types.ModuleType("exoarmur.benchmarks.bench_kernel")
        fake.main = fake_main  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "exoarmur.benchmarks.bench_kernel", fake)
        assert main(["bench", "kernel", "--quick", "--backend", "trio"]) == 3
        assert main(["bench", "kernel", "--", "--out", "x"]) == 3
        assert seen == [(["--quick", "--backend", "trio"], "exoarmur bench kernel"), (["--out", "x"], "exoarmur bench kernel")]

    @pytest.mark.parametrize("name", ["kernel", "supervision", "nats"])
    def test_help_shows_the_scripts_own_options_and_where_results_go(self, name, capsys):
        """`exoarmur bench NAME --help` is the script's help (its options, under
        the command's name), after the command's line on where results go."""
        assert main(["bench", name, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"exoarmur bench {name} runs exoarmur.benchmarks.bench_{name}")
        assert "Results go to ./benchmark-results/ in the current directory" in out.splitlines()[0]
        assert f"usage: exoarmur bench {name} [-h] [--quick]" in out
        for option in ("--quick", "--backend", "--out DIR", "--json PATH"):
            assert option in out
        assert f"docs/benchmark-results/latest_{name}.json" in out  # how to refresh the published figures

    @pytest.mark.parametrize("package", EXTRA_PACKAGES)
    def test_without_the_bench_extra_it_says_which_extra_to_install(self, package):
        """A package of the `bench` extra missing: exit 2 and one line naming the
        extra and the pip command, no traceback (asked of a benchmark that
        imports it, in a process of its own where `import PACKAGE` fails)."""
        bench = "load" if package in ("rich", "matplotlib") else "kernel"
        code = (
            f"import sys; sys.modules[{package!r}] = None\n"
            "from exoarmur.actors.app.cli import main\n"
            f"sys.exit(main(['bench', {bench!r}, '--quick']))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr == (
            f"exoarmur: bench {bench} needs the bench extra ({package} is missing): pip install 'exoarmur[bench]'\n"
        )

    def test_the_extra_named_is_pyprojects_bench_extra(self):
        """The packages the command looks for are the [bench] extra's, no more, no fewer."""
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert EXTRA in extras
        names = {re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower() for requirement in extras[EXTRA]}
        assert names == set(EXTRA_PACKAGES)

    def test_a_benchmark_that_cannot_be_imported_exits_2_naming_it(self, monkeypatch, capsys):
        """Any other import failure exits 2 and names the module."""
        monkeypatch.setitem(sys.modules, "exoarmur.benchmarks.bench_kernel", None)
        assert main(["bench", "kernel"]) == 2
        assert "bench kernel: cannot import exoarmur.benchmarks.bench_kernel" in capsys.readouterr().err
