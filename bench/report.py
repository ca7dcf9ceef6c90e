"""Turns bench/run_all.py's results into docs/performance.md (also: python3 bench/report.py
docs/performance.json > docs/performance.md)."""

from __future__ import annotations

import json
import sys
from typing import Any

TARGETS = {
    "ingest": 15_000,
    "ratio": 4.0,
    "ack_p99_ms": 50.0,
    "query_rps": 2_000,
    "query_p99_ms": 5.0,
    "bytes_per_session": 750,
    "recovery_s": 8.0,
}


def _ok(good: bool) -> str:
    return "met" if good else "**not met**"


def _get(data: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def write_report(r: dict[str, Any]) -> str:  # noqa: C901 - one section per target
    lines = [
        "# Performance",
        "",
        f"Measured {r['date']} on {r['machine']}.",
        f"Load average before / after the run: {r['load_before']} / {r['load_after']} "
        "(other tenants share this machine; compare only figures from the same run).",
        "",
        "Reproduce: `python3 bench/run_all.py` (about 10 minutes; as root it also sets up and",
        "runs FreeRADIUS 3.2 + SQLite from `../shared/bench/freeradius/`). Raw figures:",
        "`docs/performance.json`. Load generator: `bench/loadgen.py` (pre-encoded packets,",
        "2 processes, closed loop, correct authenticators; mix 10 % Start, 80 % Interim, 10 % Stop",
        "over 100,000 concurrent sessions); queries: `bench/graphql_load.py`.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    ingest = r.get("ingest_full") or {}
    rate = float(ingest.get("acked_per_s", 0))
    lines.append(
        f"| 1. durable ingest >= 15,000 packets/s (synchronous=FULL), none lost | "
        f"{rate:,.0f} packets/s, {ingest.get('lost', '?')} lost of {ingest.get('sent', '?')} "
        f"| {_ok(rate >= TARGETS['ingest'] and ingest.get('lost') == 0)} |"
    )
    fr = r.get("freeradius_sqltuned4")
    if fr:
        fr_rate = float(fr.get("acked_per_s", 0)) or 1.0
        lines.append(
            f"| 1b. >= 4x FreeRADIUS+SQLite (tuned: WAL, sync=NORMAL, 4 threads), same load "
            f"| {rate / fr_rate:.1f}x ({rate:,.0f} vs {fr_rate:,.0f} packets/s) "
            f"| {_ok(rate / fr_rate >= TARGETS['ratio'])} |"
        )
    else:
        lines.append("| 1b. >= 4x FreeRADIUS+SQLite | not run (no FreeRADIUS set up) | |")
    lat = r.get("latency_5k") or {}
    p99 = float(lat.get("latency_p99_ms", 0))
    lines.append(
        f"| 2. ack latency at 5,000 packets/s: p99 <= 50 ms | p50 {lat.get('latency_p50_ms')} ms, "
        f"p99 {p99} ms, {lat.get('acked_per_s')} acked/s, {lat.get('lost')} lost "
        f"| {_ok(0 < p99 <= TARGETS['ack_p99_ms'])} |"
    )
    sat = r.get("graphql_saturated") or {}
    rps = float(sat.get("requests_per_s", 0))
    lines.append(
        f"| 3a. getOnlineSessions with {r.get('online_for_queries', 0):,.0f} online: "
        f">= 2,000 req/s | {rps:,.0f} req/s (32 connections), p99 {sat.get('latency_p99_ms')} ms "
        f"| {_ok(rps >= TARGETS['query_rps'])} |"
    )
    q200 = r.get("graphql_200_with_ingest") or {}
    beside = r.get("ingest_beside_graphql") or {}
    qp99 = float(q200.get("latency_p99_ms", 0))
    lines.append(
        f"| 3b. p99 <= 5 ms at 200 req/s while ingest runs at 5,000 packets/s, none lost "
        f"| p99 {qp99} ms at {q200.get('requests_per_s')} req/s; ingest "
        f"{beside.get('acked_per_s')} acked/s, {beside.get('lost')} lost "
        f"| {_ok(0 < qp99 <= TARGETS['query_p99_ms'] and beside.get('lost') == 0)} |"
    )
    sat_ingest = r.get("ingest_beside_saturated_graphql") or {}
    drops = r.get("drops_beside_graphql") or {}
    lines.append(
        f"| 3c. GraphQL saturated (64 connections) never makes ingest drop packets "
        f"| ingest at 3,000/s offered: {sat_ingest.get('acked_per_s')} acked/s, "
        f"{sat_ingest.get('lost')} lost, p99 {sat_ingest.get('latency_p99_ms')} ms; "
        f"server drops: {drops or 'none'} | {_ok(sat_ingest.get('lost') == 0 and not drops)} |"
    )
    mem = r.get("memory") or {}
    per = mem.get("bytes_per_session_recovered", 0)
    lines.append(
        f"| 4a. {mem.get('sessions', 0):,} online sessions: <= 750 bytes each "
        f"| {per} bytes (rebuilt from SQLite), {mem.get('bytes_per_session_built')} built "
        f"by ingest | {_ok(0 < per <= TARGETS['bytes_per_session'])} |"
    )
    rec = float(mem.get("recovery_seconds", 0))
    lines.append(
        f"| 4b. start-up recovery of {mem.get('sessions', 0):,} sessions <= 8 s "
        f"| {rec} s | {_ok(0 < rec <= TARGETS['recovery_s'])} |"
    )
    lines += [
        "",
        "## How cost grows (5.)",
        "",
        "| online sessions | start-up (process start to ready) | ingest packets/s | ack p99 ms "
        "| query req/s (8 conn.) | query p99 ms | RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r.get("scaling", []):
        lines.append(
            f"| {row['online']:,} | {row['startup_s']} s | {_get(row, 'ingest', 'acked_per_s')} "
            f"| {_get(row, 'ingest', 'latency_p99_ms')} | {_get(row, 'query', 'requests_per_s')} "
            f"| {_get(row, 'query', 'latency_p99_ms')} | {row['rss_mb']:.0f} |"
        )
    lines += ["", "## Side by side, same load generator, same run", ""]
    lines.append("| server | packets/s acked | lost | server CPU s | p50 ms | p99 ms |")
    lines.append("|---|---|---|---|---|---|")
    for label, key in (
        ("radtrack (SQLite, synchronous=FULL, ack after COMMIT)", "ingest_full"),
        ("FreeRADIUS 3.2.1 sqltuned4 (rlm_sql_sqlite, WAL, NORMAL)", "freeradius_sqltuned4"),
        ("FreeRADIUS 3.2.1 `ok` (stores nothing)", "freeradius_ok"),
    ):
        row = r.get(key)
        if row:
            lines.append(
                f"| {label} | {row.get('acked_per_s')} | {row.get('lost')} "
                f"| {row.get('server_cpu_s')} | {row.get('latency_p50_ms')} "
                f"| {row.get('latency_p99_ms')} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(write_report(json.loads(open(sys.argv[1]).read())))
