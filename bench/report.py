"""Turns bench/run_all.py's results into docs/performance.md (also: python3 bench/report.py
docs/performance.json > docs/performance.md)."""

from __future__ import annotations

import json
import sys
from typing import Any

# the targets of performance round 3 (issue 15)
TARGETS = {
    "ingest": 20_000,
    "ratio": 10.0,
    "ack_p99_ms": 20.0,
    "query_rps": 2_000,
    "query_p99_ms": 5.0,
    "bytes_per_session": 600,
    "recovery_s": 8.0,
    "flat": 0.8,  # the scaling rows' ingest and query rates within 20 % of the best
}


ANALYSIS = """
## Where the time goes, and what would close the gaps (round 3, issue 15)

Method: per-thread CPU from `/proc/PID/task/*/stat` (threads are named), py-spy samples of the
daemon under full load (`py-spy record --threads -f raw`), valgrind instruction counts of the
event loop's path (`bench/hotpath.py`; they repeat within 0.3 % whatever the box does),
`gc.callbacks` probes, and A/B runs that alternate builds on one scenario in one run
(`bench/ab.py query|ingest|latency|saturated --tree A --tree B`). This box is shared: the
figures of one build swing 1.5-10x between identical runs (this run's FreeRADIUS did 2,085/s
against 2,698/s at 14:17 the same day; radtrack 14,906 against 19,049), so compare only within
a run, and read the A/B pairs below rather than one table.

**This run's tails are the box's.** Ack p99 at 5,000 packets/s was 227.6 ms (19.8 ms at 14:17),
and 3,873 ms beside saturated queries. An A/B right after, alternating the session's starting
point (e4a57b7) with this build: ack p99 557 / 48 ms against 363 / 1,006 ms (`bench/ab.py
latency`); beside saturated queries 107 / 177 ms for this build against 285 / 99 ms for this
build with the API on the ingest loop (`bench/ab.py saturated`), 0 lost and no drops in all.
An fdatasync of 4 KiB took 0.21 ms p50, 0.68 ms p99 at the time.

**What round 3 changed, and what each measured.**
1. *The API on a thread and event loop of its own* (`radtrack/api/thread.py`). Reads of the live
   state run there under the GIL (a user's chain walk retries when an unlink overlapped it:
   `SessionIndex.relinks`); writes, the store, Disconnect and /metrics run on the ingest loop.
   3b A/B (200 req/s beside 5,000 packets/s, 15 s a round): p99 6.5 / 10.5 / 9.7 ms threaded
   against 4.8 / 8.0 / 9.4 ms on the ingest loop, and 10.7 / 5.8 / 7.9 against 10.5 / 8.3 /
   12.3 in a second run: no difference beyond the box's noise. Kept because a query no longer
   waits for the ingest loop at all (tests/test_api_thread.py: answered in < 0.5 s while the
   loop is blocked 1.5 s; the previous main waited the 1.5 s). Its cost: every callback of the
   API's loop takes the GIL anew, up to the switch interval (0.5 ms) while ingest holds it, so
   saturated queries beside ingest run ~20 % slower (1,624 / 1,368 req/s against 1,944 / 1,764);
   ingest itself is not slowed (3c above). A 0.1 ms switch interval changed nothing measurable.
2. *No collection scans the sessions any more* (`radtrack/gcpolicy.py`). A full collection
   scanned every session made since start-up (1,000,000 of them: 0.38 s with the GIL held).
   Every 5 s the daemon now collects the young and middle generations and freezes the rest:
   0.4-16 ms a round, where a full collection would have taken 23-89 ms over the 25,000-65,000
   sessions made meanwhile and found no garbage. `radtrack_gc_frozen_objects` shows the count.
3. *Memory*: 567 bytes a session built by ingest (709 before), 585 rebuilt from SQLite (693):
   `bench/memory_fields.py` gives the bytes by field. The Session object 272 -> 224 bytes (NAS
   name and address, Connect-Info and start_seen in one shared `Origin`; close reason,
   terminate cause and disconnecting in one `Ending`, both interned through bounded tables in
   `radtrack/shared.py`); Calling-Station-Ids and whole-second start times shared (80 -> 39 and
   32 -> 14 bytes); user id and name shared with the user's other sessions on recovery too.
   The journal's rows are built by plain code instead of `operator.attrgetter` (a counters row
   3,160 -> 1,600 instructions), which paid for the rest: the loop's path is 102,400
   instructions a packet, as at the start of the round. Not shrunk: the id, Acct-Session-Id
   and Framed-IP strings (208 bytes, unique per session). A session that has sent an Interim
   carries its own counters and timestamps: ~808 bytes.
4. *The scaling table's load*: the same 10,000 sessions at every size (it used min(online,
   100,000), so the 10k row was mostly Interims and the others mostly session starts).

**Tried and not kept.** `recvmmsg(2)` intake (branch `recvmmsg`, `fastpath/intake.py`): equal
user-space instructions (117,843 against 117,249 a packet, `hotpath.py --socket`), 2.0-3.2 us
a datagram against 2.2-4.2 us for recvfrom on queued datagrams; but it holds the GIL for the
call, so the API's thread and the commit thread would wait the switch interval more often; in
the daemon (`bench/ab.py ingest`, 200,000 packets) 15,742 / 16,982 packets/s against 17,681 /
16,985 without it, the loop's CPU 41 against 39 us a packet: no gain, not merged. (RadSec's lower
CPU a packet in the table above comes from TCP: many packets a read, one write a commit.)
A doorbell instead of a Condition for the commit thread: py-spy's share of the submit lock's
line stayed 4.3 %. GC thresholds 1,000 / 2 instead of 2,000 / 2: young pauses 0.26 instead of
0.48 ms but 60 % more GC CPU (1.09 against 0.69 ms per 1,000 packets); at 5,000 packets/s GC
holds the GIL < 0.6 % of the time either way, too little to set a p99.

**Ingest (1, 1b: not met) and why Python on two cores stops short.** Per packet in this run:
the event loop 45.5 us, the commit thread 26.5 us, the fold 9.7 us, the load generator ~11-17 us:
~95 us of CPU on two cores, a ceiling near 21,000/s with both cores full, and the loop alone
caps at ~22,000/s on a core of its own. 10x this run's FreeRADIUS would be 20,850/s, 10x the
14:17 run's 26,980/s. In py-spy's samples of the loop, `recvfrom` is 14-22 %, the rest spread
over decode, the authenticator check, the accounting rules and the submit (none above 5 %).
What would reach it: the packet path (decode, authenticator, the Interim rule, the journal row)
in C behind the same differential tests, which would take the loop from ~45 to ~15 us a packet;
or the commit thread in a process of its own fed packed rows, which would give the loop the GIL
to itself.

**Queries beside ingest (3b: not met).** getOnlineSessions costs ~0.3 ms of CPU. Its p99 at
200 req/s beside 5,000 packets/s swings 4.8-12 ms between identical runs of one build in the
A/B runs above (20.4 ms in this table). What is left after (1) and (2) is the box (the load
generator and the query client share the two cores with the daemon's three busy threads) and
the GIL's hand-offs; a query answered without the GIL (a reader process over a shared-memory
copy of the online index, or C) is what would take it under 5 ms reliably.

**Restart (4b: not met in this run).** The daemon was ready 8.57 s after its process started
with 1,000,000 online (7.41 s at 14:17), and recovery alone took 8.86 s (`bench/memory.py`;
6.0-6.9 s for both the old and the new session layout in alternating `--recover-only` runs an
hour earlier, load ~1). Recovery is ~99 % CPU: SQLite's row fetch (Python 3.11's sqlite3
releases and retakes the GIL around every column), shared-value lookups and index inserts
(cache misses). Closing it: a compact snapshot of the live set written by the fold (one blob per
NAS) read at start-up instead of 1,000,000 rows, or a C row decoder.

**Scaling (5: 0.78, just short of 0.8).** With the same load at every size, ingest is 19,822 /
19,343 / 15,518 packets/s at 10k / 100k / 1M online and queries 3,826 / 3,590 / 3,919 req/s.
At 1M the index's dicts (and the fold's B-tree) no longer fit in cache.

Earlier rounds (kept): the acknowledgement journal and its fold, replies sent by the commit
thread with one sendmmsg(2) per commit, the learned packet layouts of the fast path, and the
checkpoint writeback in 1 MB slices (docs/reliability.md).

Commands: the whole table `python3 bench/run_all.py`; one scenario, two builds alternated
`python3 bench/ab.py query --tree A --tree B --rounds 3`; the loop's instructions `valgrind
--tool=cachegrind --cache-sim=no python3 bench/hotpath.py --runs 1 --packets N` (N = 5,000 and
20,000, the difference over 15,000); bytes by field `python3 bench/memory_fields.py --sessions
200000`; recovery alone `python3 bench/memory.py --db m1m.db --only-db` then `--recover-only`."""


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
        *(
            [
                "",
                "Kept from the previous run of the suite on the same machine and day "
                f"(`--resume`): {', '.join(r['resumed_keys'])}.",
            ]
            if r.get("resumed_keys")
            else []
        ),
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    ingest = r.get("ingest_full") or {}
    rate = float(ingest.get("acked_per_s", 0))
    lines.append(
        f"| 1. durable ingest >= 20,000 packets/s (synchronous=FULL), none lost | "
        f"{rate:,.0f} packets/s, {ingest.get('lost', '?')} lost of {ingest.get('sent', '?')} "
        f"| {_ok(rate >= TARGETS['ingest'] and ingest.get('lost') == 0)} |"
    )
    fr = r.get("freeradius_sqltuned4")
    if fr:
        fr_rate = float(fr.get("acked_per_s", 0)) or 1.0
        lines.append(
            f"| 1b. >= 10x FreeRADIUS+SQLite (tuned: WAL, sync=NORMAL, 4 threads), same load "
            f"| {rate / fr_rate:.1f}x ({rate:,.0f} vs {fr_rate:,.0f} packets/s) "
            f"| {_ok(rate / fr_rate >= TARGETS['ratio'])} |"
        )
    else:
        lines.append("| 1b. >= 10x FreeRADIUS+SQLite | not run (no FreeRADIUS set up) | |")
    lat = r.get("latency_5k") or {}
    p99 = float(lat.get("latency_p99_ms", 0))
    lines.append(
        f"| 2. ack latency at 5,000 packets/s: p99 <= 20 ms | p50 {lat.get('latency_p50_ms')} ms, "
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
        f"| 4a. {mem.get('sessions', 0):,} online sessions: <= 600 bytes each "
        f"| {per} bytes (rebuilt from SQLite), {mem.get('bytes_per_session_built')} built "
        f"by ingest | {_ok(0 < per <= TARGETS['bytes_per_session'])} |"
    )
    rec = float(mem.get("recovery_seconds", 0))
    scaling = r.get("scaling", [])
    largest = max(scaling, key=lambda row: row["online"]) if scaling else {}
    ready = float(largest.get("startup_s", 0))
    restart = float(largest.get("restart_snapshot_s", 0))
    if restart:  # a clean stop, then a start from its snapshot (store/snapshot.py)
        table = largest.get("restart_table_s")
        lines.append(
            f"| 4b. restart with {largest.get('online', 0):,} online: process start to ready "
            f"<= 8 s | after a clean stop (snapshot) {restart} s; from the table (a crash) "
            f"{table} s, first start {ready} s; clean stop {largest.get('stop_s')} s "
            f"| {_ok(0 < restart <= TARGETS['recovery_s'])} |"
        )
    else:
        lines.append(
            f"| 4b. restart with {largest.get('online', 0):,} online: process start to ready "
            f"<= 8 s | daemon {ready} s (scaling step); recovery alone {rec} s "
            f"(bench/memory.py) "
            f"| {_ok(0 < ready <= TARGETS['recovery_s'] and 0 < rec <= TARGETS['recovery_s'])} |"
        )
    if scaling:
        ingest_rates = [float(_get(row, "ingest", "acked_per_s", default=0)) for row in scaling]
        query_rates = [float(_get(row, "query", "requests_per_s", default=0)) for row in scaling]
        flat_ingest = min(ingest_rates) / max(max(ingest_rates), 1.0)
        flat_query = min(query_rates) / max(max(query_rates), 1.0)
        lines.append(
            f"| 5. scaling (10k / 100k / 1M online): ingest and query rate within 20 % "
            f"| slowest / fastest: ingest {flat_ingest:.2f}, queries {flat_query:.2f} "
            f"| {_ok(min(flat_ingest, flat_query) >= TARGETS['flat'])} |"
        )
    lines += [
        "",
        "## How cost grows (5.)",
        "",
        "A daemon for each size, all running; three rounds over them in turn (ingest, then",
        "queries, one daemon after another); each figure the median round, the rounds beside it.",
        "",
        "| online sessions | start-up (process start to ready) | ingest packets/s | ack p99 ms "
        "| query req/s (8 conn.) | query p99 ms | RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]

    def rounds(row: dict[str, Any], key: str, figure: str) -> str:
        seen = [str(round(float(x[figure]))) for x in row.get(key, [])]
        return f" ({' / '.join(seen)})" if seen else ""

    for row in r.get("scaling", []):
        ingest_seen = rounds(row, "ingest_rounds", "acked_per_s")
        query_seen = rounds(row, "query_rounds", "requests_per_s")
        lines.append(
            f"| {row['online']:,} | {row['startup_s']} s "
            f"| {_get(row, 'ingest', 'acked_per_s')}{ingest_seen} "
            f"| {_get(row, 'ingest', 'latency_p99_ms')} "
            f"| {_get(row, 'query', 'requests_per_s')}{query_seen} "
            f"| {_get(row, 'query', 'latency_p99_ms')} | {row['rss_mb']:.0f} |"
        )
    radsec = r.get("radsec_beside_udp")
    if radsec:
        lines += [
            "",
            "## RadSec (RFC 6614) beside UDP, one node, one run (issue 17)",
            "",
            "`bench/radsec_load.py --udp`: TLS connections with a window of requests each "
            "(loadgen's packets, signed with the secret `radsec`), then bench/loadgen.py over UDP "
            "against the same daemon; both closed loop, replies after the COMMIT.",
            "",
            "| transport | packets/s acked | p50 ms | p99 ms | server CPU us a packet |",
            "|---|---|---|---|---|",
        ]
        for row in radsec:
            lines.append(
                f"| {row.get('transport')} | {row.get('acked_per_s')} "
                f"| {row.get('latency_p50_ms')} | {row.get('latency_p99_ms')} "
                f"| {row.get('server_cpu_us_per_packet')} |"
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
    by_thread = ingest.get("server_cpu_us_per_packet_by_thread")
    if by_thread:
        lines += [
            "",
            "radtrack's CPU per acknowledged packet in that run, by thread (`python3` is the "
            "event loop): "
            + ", ".join(f"{name} {us} us" for name, us in sorted(by_thread.items()))
            + ".",
        ]
    lines += ANALYSIS.splitlines()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(write_report(json.loads(open(sys.argv[1]).read())))
