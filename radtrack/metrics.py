"""Prometheus metrics at GET /metrics, rendered at scrape time from counters the daemon keeps
anyway: nothing is added to the per-packet path. Names follow Prometheus conventions
(``radtrack_..._total``, base units); no user and no session ever appears in a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from radtrack.service import ACK_BUCKETS, DROP_REASONS
from radtrack.store.writer import COMMIT_BUCKETS

if TYPE_CHECKING:
    from radtrack.daemon import Daemon


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
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:  # noqa: C901 - one block per metric family
        daemon = self.daemon
        service = daemon.service
        if service is not None:
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
            dropped.add_metric(
                ["socket_buffer"], sum(lst.kernel_drops() for lst in daemon.listeners)
            )
            yield dropped
            yield CounterMetricFamily(
                "radtrack_replies_send_failed",
                "Accounting-Responses the socket refused (the NAS retransmits; the cache answers).",
                value=sum(lst.send_errors for lst in daemon.listeners),
            )
            yield _histogram(
                "radtrack_ack_latency_seconds",
                "From reading an Accounting-Request to sending its response.",
                ACK_BUCKETS,
                stats.ack_buckets,
                stats.ack_latency_sum,
            )
        yield GaugeMetricFamily(
            "radtrack_sessions_online", "Sessions online now.", value=len(daemon.index)
        )
        per_nas = GaugeMetricFamily(
            "radtrack_sessions_online_by_nas", "Sessions online now, per NAS.", labels=["nas"]
        )
        for nas, count in sorted(daemon.index.per_nas.items()):
            per_nas.add_metric([nas], count)
        yield per_nas
        writer = daemon.writer.stats
        yield CounterMetricFamily(
            "radtrack_commits", "Group commits to SQLite.", value=writer.commits
        )
        yield CounterMetricFamily(
            "radtrack_commit_rows", "Session rows written.", value=writer.rows
        )
        yield CounterMetricFamily(
            "radtrack_commit_failures",
            "Commits that failed (no replies sent).",
            value=writer.failures,
        )
        yield CounterMetricFamily(
            "radtrack_commit_rejected_rows",
            "Session rows the store could not hold (their packets unanswered, the rest stored).",
            value=writer.rejected_rows,
        )
        yield _histogram(
            "radtrack_commit_seconds",
            "Duration of one group commit.",
            COMMIT_BUCKETS,
            writer.commit_buckets,
            writer.commit_seconds_sum,
        )
        yield GaugeMetricFamily(
            "radtrack_commit_batch_rows", "Rows in the last commit.", value=writer.last_batch
        )
        yield CounterMetricFamily(
            "radtrack_journal_folds",
            "Folds of the journal into the sessions table.",
            value=writer.folds,
        )
        yield CounterMetricFamily(
            "radtrack_journal_folded_rows", "Journal rows folded.", value=writer.folded_rows
        )
        yield CounterMetricFamily(
            "radtrack_journal_fold_failures",
            "Folds that failed (retried; acknowledgements go on).",
            value=writer.fold_failures,
        )
        yield GaugeMetricFamily(
            "radtrack_journal_pending_rows",
            "Journal rows committed but not folded into the sessions table yet.",
            value=writer.pending_rows,
        )
        yield GaugeMetricFamily(
            "radtrack_packets_in_flight",
            "Accepted packets waiting for their commit.",
            value=daemon.writer.queued,
        )
        yield GaugeMetricFamily(
            "radtrack_database_healthy",
            "1 while commits succeed.",
            value=1 if daemon.writer.healthy else 0,
        )
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


def renderer(daemon: Daemon) -> Callable[[], bytes]:
    """A function rendering the metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))

    def render() -> bytes:
        return generate_latest(registry)

    return render
