"""/metrics: what the process does, in the Prometheus text format.

Gathered when scraped, from what the process counts anyway:
- each actor type's mailboxes and restarts (`ActorSystem.totals`, stopped
  actors included, so counters never go back);
- the audit events, by kind and code (`AuditCounts`, a sink in front of the
  system's): envelopes rejected, deadlines exceeded, breaker transitions;
- the breakers of the top-level supervisors' children, from the tree;
- the NATS connection's own statistics (reconnects, drops);
- the audit chains' appends, and this process's intents (`Observed`);
- the process itself (CPU, memory, file descriptors).

prometheus-client renders them (the encoder `choose_encoder` picks for the
scraper's Accept header); nothing here writes the exposition format by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exoarmur.actors.app.audit_sink import StreamAuditSink
from exoarmur.actors.intents.tally import IntentTally
from exoarmur.actors.nats import NatsStatistics
from exoarmur.runtime import ActorTotals, AuditEvent, AuditSink, ReasonCode
from exoarmur.supervisors import AUDIT_KINDS, BreakerState, Node

__all__ = ["AuditCounts", "Observed", "exposition"]

BREAKER_KINDS = {kind: state.value for state, kind in AUDIT_KINDS.items()}


class AuditCounts:
    """An AuditSink in front of another: counts every event by kind and code."""

    def __init__(self, inner: AuditSink) -> None:
        self.inner = inner
        self.counts: Counter[tuple[str, ReasonCode]] = Counter()

    def emit(self, event: AuditEvent) -> None:
        self.counts[(event.kind, event.code)] += 1
        self.inner.emit(event)

    def close(self) -> None:
        self.inner.close()


@attrs.define(kw_only=True)
class Observed:
    """What the default tree counts for /metrics, shared with the actors that count."""

    audit: AuditCounts
    appends: dict[str, Counter[str]]  # audit chain -> "stored" | "duplicate" | code -> appends
    intents: IntentTally = attrs.field(factory=IntentTally)
    sink: StreamAuditSink | None = None  # the system's sink on the audit stream


@attrs.frozen
class _Families:
    families: tuple[Metric, ...]

    def collect(self) -> Iterator[Metric]:
        yield from self.families


PROCESS = ProcessCollector(registry=None)


def exposition(
    encoder: Callable[[Any], bytes],
    *,
    totals: Mapping[str, ActorTotals],
    dead_letters: int,
    observed: Observed,
    nodes: Iterable[Node],
    nats: NatsStatistics | None,
    info: Mapping[str, str],
) -> bytes:
    families = [
        *_actors(totals),
        *_audit(observed.audit.counts),
        _breakers(nodes),
        *_nats(nats),
        _appends(observed.appends),
        _refused(observed.sink),
        *_intents(observed.intents),
        _counter("exoarmur_dead_letters", "Envelopes that reached nobody.", dead_letters),
        _info(info),
        *PROCESS.collect(),
    ]
    return encoder(_Families(tuple(families)))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _info(info: Mapping[str, str]) -> InfoMetricFamily:
    family = InfoMetricFamily("exoarmur", "This process: version, backend, owner id.")
    family.add_metric([], dict(info))
    return family


def _actors(totals: Mapping[str, ActorTotals]) -> list[Metric]:
    label = ["actor"]
    gauges = {
        "actors": GaugeMetricFamily("exoarmur_actors", "Live actors, per actor type.", labels=label),
        "depth": GaugeMetricFamily("exoarmur_mailbox_depth", "Envelopes waiting in mailboxes, per actor type.", labels=label),
        "capacity": GaugeMetricFamily("exoarmur_mailbox_capacity", "Mailbox capacity, summed per actor type.", labels=label),
    }
    counters = {
        "accepted": CounterMetricFamily("exoarmur_envelopes_accepted", "Envelopes taken into mailboxes.", labels=label),
        "processed": CounterMetricFamily("exoarmur_envelopes_processed", "Envelopes handled.", labels=label),
        "rejected": CounterMetricFamily("exoarmur_mailbox_full", "Envelopes refused by a full mailbox.", labels=label),
        "expired": CounterMetricFamily("exoarmur_envelopes_expired", "Envelopes dropped unhandled at their deadline.", labels=label),
        "shed": CounterMetricFamily("exoarmur_envelopes_shed", "Envelopes shed for newer ones (shed_oldest).", labels=label),
        "restarts": CounterMetricFamily("exoarmur_restarts", "Actor restarts by their supervisors.", labels=label),
    }
    for actor, figures in sorted(totals.items()):
        for name, family in (*gauges.items(), *counters.items()):
            family.add_metric([actor], getattr(figures, name))
    return [*gauges.values(), *counters.values()]


def _audit(counts: Mapping[tuple[str, ReasonCode], int]) -> list[Metric]:
    events = CounterMetricFamily("exoarmur_audit_events", "Audit events, by kind and code.", labels=["kind", "code"])
    rejected = CounterMetricFamily("exoarmur_envelopes_rejected", "Envelopes refused, by code.", labels=["code"])
    deadlines = CounterMetricFamily("exoarmur_deadlines_exceeded", "Work ended by its deadline, by code.", labels=["code"])
    transitions = CounterMetricFamily("exoarmur_breaker_transitions", "Breaker transitions, by new state.", labels=["state"])
    by_state: Counter[str] = Counter()
    for (kind, code), count in sorted(counts.items()):
        events.add_metric([kind, code.value], count)
        if kind == "rejected":
            rejected.add_metric([code.value], count)
        elif kind == "deadline":
            deadlines.add_metric([code.value], count)
        elif kind in BREAKER_KINDS:
            by_state[BREAKER_KINDS[kind]] += count
    for state, count in sorted(by_state.items()):
        transitions.add_metric([state], count)
    return [events, rejected, deadlines, transitions]


def _breakers(nodes: Iterable[Node]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "exoarmur_breaker_state", "1 for each breaker's current state (the connection, the buckets, the controls, the execution types).", labels=["path", "state"]
    )
    for node in nodes:
        for child in node.children:
            if child.breaker:
                current = child.breaker.split("(", 1)[0]
                for state in BreakerState:
                    family.add_metric([child.path, state.value], 1.0 if state.value == current else 0.0)
    return family


def _nats(stats: NatsStatistics | None) -> list[Metric]:
    connected = GaugeMetricFamily("exoarmur_nats_connected", "1 while the NATS connection is up.")
    connected.add_metric([], 1.0 if stats is not None and stats.connected else 0.0)
    if stats is None:  # the connection did not answer: its counters are unknown now
        return [connected]
    return [
        connected,
        _counter("exoarmur_nats_reconnects", "Reconnects of the NATS client.", stats.reconnects),
        _counter("exoarmur_nats_disconnects", "Connections lost.", stats.disconnects),
        _counter("exoarmur_nats_slow_consumer_drops", "Messages nats-py dropped (pending limits).", stats.slow_consumer_drops),
        _counter("exoarmur_nats_mailbox_drops", "Deliveries a full actor mailbox refused.", stats.mailbox_drops),
    ]


def _appends(appends: Mapping[str, Counter[str]]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "exoarmur_audit_appends", "Appends to the audit chains: stored, duplicate, or the failure code.", labels=["chain", "result"]
    )
    for chain, counts in sorted(appends.items()):
        for result, count in sorted(counts.items()):
            family.add_metric([chain, result], count)
    return family


def _refused(sink: StreamAuditSink | None) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "exoarmur_audit_sink_refused", "Audit events kept locally but not handed to the audit stream, by code.", labels=["code"]
    )
    for code, count in sorted((sink.refusals() if sink is not None else {}).items()):
        family.add_metric([code.value], count)
    return family


def _intents(tally: IntentTally) -> list[Metric]:
    states = CounterMetricFamily("exoarmur_intents", "Intents written into each state by this process.", labels=["state"])
    for state, count in sorted(tally.states.items()):
        states.add_metric([state], count)
    return [states, *tally.settle.collect()]
