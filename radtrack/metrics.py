"""Prometheus metrics at GET /metrics, rendered at scrape time from counters the daemon keeps
anyway: nothing is added to the per-packet path. Names follow Prometheus conventions
(``radtrack_..._total``, base units); no user and no session ever appears in a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from radtrack import gcpolicy
from radtrack.accounting import Accountant
from radtrack.api.app import GraphQLApp
from radtrack.api.thread import ThreadedServer
from radtrack.radsec import CLOSES, REFUSALS, RadsecIntake
from radtrack.service import ACK_BUCKETS, DROP_REASONS, AccountingService
from radtrack.store.base import COMMIT_BUCKETS, Store
from radtrack.store.index import SessionIndex
from radtrack.transport import UdpListener


class Observed(Protocol):
    """What the metrics read: radtrack.daemon.Daemon is one (the daemon imports this module,
    not the other way round)."""

    @property
    def service(self) -> AccountingService | None: ...
    @property
    def listeners(self) -> Sequence[UdpListener]: ...
    @property
    def radsec(self) -> RadsecIntake | None: ...
    @property
    def index(self) -> SessionIndex: ...
    @property
    def accountant(self) -> Accountant: ...
    @property
    def store(self) -> Store: ...
    @property
    def disconnect_results(self) -> Mapping[str, int]: ...
    @property
    def app(self) -> GraphQLApp | None: ...
    @property
    def http_server(self) -> ThreadedServer | None: ...


def _histogram(
    name: str, doc: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> HistogramMetricFamily:
    buckets = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class DaemonCollector:
    def __init__(self, daemon: Observed) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        if daemon.service is not None:
            yield from self._packets(daemon.service)
        if daemon.radsec is not None:
            yield from self._radsec(daemon.radsec)
        yield from self._sessions()
        yield from self._store()
        yield from self._control_and_api()

    def _packets(self, service: AccountingService) -> Iterator[Metric]:
        daemon = self.daemon
        stats = service.stats
        for name, value, doc in (
            ("received", stats.received, "Datagrams read from the accounting sockets."),
            ("accepted", stats.accepted, "Verified Accounting-Requests handled."),
            ("acknowledged", stats.acknowledged, "Accounting-Responses sent after commit."),
            ("duplicate", stats.duplicates, "Retransmissions answered from the cache."),
            ("status_server", stats.status_server, "Status-Server requests answered."),
            ("ignored_status", stats.ignored_status, "Acknowledged, not tracked."),
        ):
            yield CounterMetricFamily(f"radtrack_packets_{name}", doc, value=value)
        dropped = CounterMetricFamily(
            "radtrack_packets_dropped",
            "Datagrams dropped unanswered, by reason.",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            dropped.add_metric([reason], stats.dropped.get(reason, 0))
        # overload the event loop could not even read: the kernel's count for our sockets
        dropped.add_metric(["socket_buffer"], sum(lst.kernel_drops() for lst in daemon.listeners))
        yield dropped
        yield CounterMetricFamily(
            "radtrack_replies_send_failed",
            "Accounting-Responses the socket refused (the NAS retransmits; the cache answers).",
            value=sum(lst.send_errors for lst in daemon.listeners)
            + (daemon.radsec.replies.send_errors if daemon.radsec is not None else 0),
        )
        yield _histogram(
            "radtrack_ack_latency_seconds",
            "From reading an Accounting-Request to sending its response.",
            ACK_BUCKETS,
            stats.ack_buckets,
            stats.ack_latency_sum,
        )

    def _radsec(self, intake: RadsecIntake) -> Iterator[Metric]:
        """RadSec's connections; its packets are in the radtrack_packets_* counters too."""
        stats = intake.stats
        yield GaugeMetricFamily(
            "radtrack_radsec_connections_open",
            "RadSec connections open now (TLS handshakes included).",
            value=len(intake.connections),
        )
        yield CounterMetricFamily(
            "radtrack_radsec_connections_accepted",
            "RadSec connections whose handshake completed with a known client's certificate.",
            value=stats.accepted,
        )
        yield CounterMetricFamily(
            "radtrack_radsec_packets_received",
            "Packets read from RadSec connections (also in radtrack_packets_received_total).",
            value=stats.received,
        )
        for name, doc, reasons, counts in (
            ("refused", "RadSec connections refused, by reason.", REFUSALS, stats.refused),
            ("closed", "RadSec connections closed, by reason.", CLOSES, stats.closed),
        ):
            family = CounterMetricFamily(f"radtrack_radsec_{name}", doc, labels=["reason"])
            for reason in reasons:
                family.add_metric([reason], counts.get(reason, 0))
            yield family

    def _sessions(self) -> Iterator[Metric]:
        daemon = self.daemon
        yield GaugeMetricFamily(
            "radtrack_sessions_online", "Sessions online now.", value=len(daemon.index)
        )
        per_nas = GaugeMetricFamily(
            "radtrack_sessions_online_by_nas", "Sessions online now, per NAS.", labels=["nas"]
        )
        for nas, count in sorted(daemon.index.per_nas.items()):
            per_nas.add_metric([nas], count)
        yield per_nas
        accountant = daemon.accountant
        yield CounterMetricFamily(
            "radtrack_sessions_started",
            "Sessions that came online here: a Start, or an Interim of a session not seen before.",
            value=accountant.sessions_opened,
        )
        yield CounterMetricFamily(
            "radtrack_sessions_ended",
            "Sessions that went offline here: a Stop, an Accounting-On/Off, the stale rule.",
            value=accountant.sessions_closed,
        )
        yield GaugeMetricFamily(
            "radtrack_gc_frozen_objects",
            "Objects the cyclic GC no longer scans (radtrack/gcpolicy.py); follows the sessions.",
            value=gcpolicy.frozen(),
        )

    def _store(self) -> Iterator[Metric]:
        daemon = self.daemon
        store = daemon.store.stats
        for name, doc, value in (
            ("commits", "Group commits to the store.", store.commits),
            ("commit_rows", "Session rows written.", store.rows),
            ("commit_failures", "Commits that failed (no replies sent).", store.failures),
            (
                "commit_rejected_rows",
                "Session rows the store could not hold (their packets unanswered, the rest "
                "stored).",
                store.rejected_rows,
            ),
            ("journal_folds", "Folds of the journal into the sessions table.", store.folds),
            ("journal_folded_rows", "Journal rows folded.", store.folded_rows),
            (
                "journal_fold_failures",
                "Folds that failed (retried; acknowledgements go on).",
                store.fold_failures,
            ),
            (
                "feed_sessions",
                "Session states other nodes committed, applied here (PostgreSQL).",
                store.remote_sessions,
            ),
            (
                "feed_failures",
                "Reads of the change feed that failed (PostgreSQL; retried).",
                store.feed_failures,
            ),
        ):
            yield CounterMetricFamily(f"radtrack_{name}", doc, value=value)
        yield _histogram(
            "radtrack_commit_seconds",
            "Duration of one group commit.",
            COMMIT_BUCKETS,
            store.commit_buckets,
            store.commit_seconds_sum,
        )
        for name, doc, value in (
            ("commit_batch_rows", "Rows in the last commit.", store.last_batch),
            (
                "journal_pending_rows",
                "Journal rows committed but not folded into the sessions table yet.",
                store.pending_rows,
            ),
            (
                "packets_in_flight",
                "Accepted packets waiting for their commit.",
                daemon.store.queued,
            ),
            ("database_healthy", "1 while commits succeed.", 1 if daemon.store.healthy else 0),
            (
                "recovered_from_snapshot",
                "1 if start-up read the live state from the snapshot a clean stop wrote "
                "(SQLite), 0 if from the sessions table.",
                int(store.recovered_from_snapshot),
            ),
        ):
            yield GaugeMetricFamily(f"radtrack_{name}", doc, value=value)

    def _control_and_api(self) -> Iterator[Metric]:
        daemon = self.daemon
        disconnects = CounterMetricFamily(
            "radtrack_disconnects", "Disconnect-Requests by result.", labels=["result"]
        )
        for result in ("ACK", "NAK", "TIMEOUT"):
            disconnects.add_metric([result], daemon.disconnect_results.get(result, 0))
        yield disconnects
        app = daemon.app
        if app is not None:
            yield CounterMetricFamily(
                "radtrack_api_requests",
                "GraphQL requests answered.",
                value=app.requests,
            )
            errors = CounterMetricFamily(
                "radtrack_api_errors", "GraphQL errors by code.", labels=["code"]
            )
            for code, count in sorted(app.errors.items()):
                errors.add_metric([code], count)
            yield errors
        if daemon.http_server is not None:
            guard = daemon.http_server.guard
            yield GaugeMetricFamily(
                "radtrack_api_connections_open",
                "HTTP connections open now (those upgraded to WebSocket not counted).",
                value=guard.open,
            )
            yield CounterMetricFamily(
                "radtrack_api_connections_timed_out",
                "HTTP connections closed (408) for a request that took longer than "
                "api.request_timeout to arrive.",
                value=guard.timed_out,
            )
            yield CounterMetricFamily(
                "radtrack_api_connections_refused",
                "HTTP connections refused (503) at api.max_connections.",
                value=guard.refused,
            )


def renderer(daemon: Observed) -> Callable[[], bytes]:
    """A function rendering the metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))

    def render() -> bytes:
        return generate_latest(registry)

    return render
