"""Benchmarks: scripts that print a table, write JSON, and compare against a raw
baseline measured in the same run.

Each runs as `exoarmur bench NAME [OPTIONS]` or `python -m MODULE [OPTIONS]`
(SCRIPTS: bench_NAME, and load_nodes_peers for the load), from any directory; results go to
`./benchmark-results/` there (or `--out DIR`), never next to the scripts
(`report.py`). They need the `bench` extra: `pip install 'exoarmur[bench]'`.
"""

import sys
from types import MappingProxyType

# How a script starts a Python child (`exoarmur run`, `replay`, a flood): -P
# keeps the working directory off its path, so a folder named `exoarmur`
# there (a checkout, say) is never imported in place of the installed code.
PYTHON = (sys.executable, "-P")

# name -> (module, one line for `exoarmur bench --help`)
SCRIPTS = MappingProxyType(
    {
        "kernel": ("exoarmur.benchmarks.bench_kernel", "tell/ask throughput and latency of the kernel"),
        "supervision": (
            "exoarmur.benchmarks.bench_supervision",
            "restart latency, and throughput of 1,000 supervised children at 0% and 1% crashes",
        ),
        "nats": (
            "exoarmur.benchmarks.bench_nats",
            "publish, request, KV and audit through the NATS actors, next to raw nats-py",
        ),
        "intents": (
            "exoarmur.benchmarks.bench_intents",
            "execution intents end to end (submit -> SUCCEEDED) through exoarmur run, next to the same writes with "
            "raw nats-py; RSS per terminal intent",
        ),
        "tenants": (
            "exoarmur.benchmarks.bench_tenants",
            "isolation: one tenant flooding at 10x its rate limit, another at half its own; the second's p99 "
            "against its own alone",
        ),
        "replay": (
            "exoarmur.benchmarks.bench_replay",
            "replay --verify of N intents' audit and KV records, against the REPLAY_PROCESSING budget",
        ),
        "load": (
            "exoarmur.benchmarks.load_nodes_peers",
            "1,000 logical nodes and 500 peer identities across 10 tenants: capacity by a ramp, then nominal, "
            "overload (2x), scale (10x the sources) and, with --chaos, faults under load; each verified from what "
            "the system stored (terminal, ledger, replay)",
        ),
    }
)

# The extra the scripts need beyond exoarmur's own dependencies, and its
# packages: pyproject.toml's [project.optional-dependencies] bench (a test pins it).
EXTRA = "bench"
EXTRA_PACKAGES = ("pykka", "psutil", "rich", "matplotlib")
INSTALL_EXTRA = f"pip install 'exoarmur[{EXTRA}]'"

# Where results go by default, relative to the current directory.
RESULTS_DIR = "benchmark-results"
# Where a checkout keeps the last full runs' figures (refreshed by hand, from RESULTS_DIR).
PUBLISHED_DIR = "docs/benchmark-results"
