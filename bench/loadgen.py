#!/usr/bin/env python3
"""RADIUS accounting load generator.

Offers RFC 2866 Accounting-Request load to a server on loopback and measures
it: acknowledged packets per second, latency percentiles, retransmits, losses.
Standard library only; attributes are encoded by number, no dictionary.

    python3 bench/loadgen.py --server 127.0.0.1:1813 --secret S --packets 500000
    python3 bench/loadgen.py responder --listen 127.0.0.1:0 --secret S   # bench/responder.py

Every packet is encoded before the timed phase by each worker process, so the
timed phase only sends, receives and verifies.  See bench/README.md.
"""

import argparse
import array
import collections
import hashlib
import ipaddress
import itertools
import json
import math
import multiprocessing
import os
import queue
import random
import select
import signal
import socket
import struct
import sys
import time

ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5

# RFC 2865 / 2866 / 2869 attribute numbers.
USER_NAME = 1
NAS_IP_ADDRESS = 4
SERVICE_TYPE = 6
FRAMED_PROTOCOL = 7
FRAMED_IP_ADDRESS = 8
CALLED_STATION_ID = 30
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
ACCT_STATUS_TYPE = 40
ACCT_INPUT_OCTETS = 42
ACCT_OUTPUT_OCTETS = 43
ACCT_SESSION_ID = 44
ACCT_AUTHENTIC = 45
ACCT_SESSION_TIME = 46
ACCT_INPUT_PACKETS = 47
ACCT_OUTPUT_PACKETS = 48
ACCT_TERMINATE_CAUSE = 49
ACCT_INPUT_GIGAWORDS = 52
ACCT_OUTPUT_GIGAWORDS = 53
EVENT_TIMESTAMP = 55
NAS_PORT_TYPE = 61
CONNECT_INFO = 77
ACCT_INTERIM_INTERVAL = 85
NAS_PORT_ID = 87

STATUS_START, STATUS_STOP, STATUS_INTERIM = 1, 2, 3
STATUS_NAMES = {STATUS_START: "Start", STATUS_STOP: "Stop", STATUS_INTERIM: "Interim-Update"}
INTERIMS_PER_SESSION = 8  # 1 Start + 8 Interim + 1 Stop = 10/80/10 %
STAGES = INTERIMS_PER_SESSION + 2
INTERIM_INTERVAL = 300  # simulated seconds between packets of a session
FIRST_USER_ID = 100000
FRAMED_NET = 0x64400000  # 100.64.0.0/10 (shared address space)
ZERO_AUTH = bytes(16)
IDS_PER_SOCKET = 256
U32 = 0xFFFFFFFF
HEADER = struct.Struct("!BBH")
COUNTERS = struct.Struct("!" + "BBI" * 7)
DEFAULT_PACKETS = 500_000
DEFAULT_SECRET = "radtrack-example-secret"  # the one in config.example.toml
PREENCODE_RATE = 100_000  # packets/s assumed for --duration without --rate
SOCKET_BUFFER = 4 << 20
MAX_WAIT = 0.1  # longest single poll, so stop conditions are seen
RESULT_GRACE = 60.0  # extra seconds main waits for a worker's report


# ---------------------------------------------------------------- addresses


def parse_endpoint(text, default_port):
    """Parse 'host:port', '[::1]:port' or 'host'; refuse anything off loopback."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise SystemExit(f"refusing {host!r}: give a literal loopback address") from None
    if not (
        addr.version == 4
        and addr in ipaddress.ip_network("127.0.0.0/8")
        or addr == ipaddress.ip_address("::1")
    ):
        raise SystemExit(f"refusing {host}: load may only go to 127.0.0.0/8 or ::1")
    if not (port.isdigit() and int(port) <= 65535 if port else True):
        raise SystemExit(f"bad port {port!r}")
    port = int(port) if port else default_port
    return host, port


def udp_socket(host):
    """A non-blocking UDP socket of the right family with large buffers."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------- wire format


def attr_raw(attr_type, value):
    """Encode one attribute: Type, Length, Value (RFC 2865 section 5)."""
    if len(value) > 253:
        raise ValueError(f"attribute {attr_type} too long")
    return bytes((attr_type, len(value) + 2)) + value


def attr_text(attr_type, text):
    """Encode a string attribute."""
    return attr_raw(attr_type, text.encode())


def attr_int(attr_type, value):
    """Encode a 32-bit integer (or time) attribute."""
    return struct.pack("!BBI", attr_type, 6, value & U32)


def encode_request(identifier, attrs, secret):
    """Build an Accounting-Request with its Request Authenticator (RFC 2866 s3)."""
    header = HEADER.pack(ACCOUNTING_REQUEST, identifier, 20 + len(attrs))
    return header + hashlib.md5(header + ZERO_AUTH + attrs + secret).digest() + attrs


def response_for(request, secret):
    """Return the Accounting-Response for a valid request, or None if invalid."""
    if len(request) < 20 or request[0] != ACCOUNTING_REQUEST:
        return None
    length = int.from_bytes(request[2:4], "big")
    if length < 20 or length > len(request):
        return None
    digest = hashlib.md5(request[:4] + ZERO_AUTH + request[20:length] + secret).digest()
    if digest != request[4:20]:
        return None
    header = HEADER.pack(ACCOUNTING_RESPONSE, request[1], 20)
    return header + hashlib.md5(header + request[4:20] + secret).digest()


def packet_fields(packet):
    """Return (Acct-Session-Id, status name, Event-Timestamp) of an encoded request."""
    fields, pos, end = {}, 20, len(packet)
    while pos + 2 <= end:
        attr_type, length = packet[pos], packet[pos + 1]
        fields[attr_type] = packet[pos + 2 : pos + length]
        pos += max(length, 2)
    return (
        fields[ACCT_SESSION_ID].decode(),
        STATUS_NAMES[int.from_bytes(fields[ACCT_STATUS_TYPE], "big")],
        int.from_bytes(fields[EVENT_TIMESTAMP], "big"),
    )


# ---------------------------------------------------------------- simulation


class Slot:
    """One place in the pool of concurrent sessions: a NAS port whose user runs
    sessions back to back (Start, 8 Interim-Updates, Stop, then a new Start)."""

    def __init__(self, index, cfg, rng, new_session_id):
        """Fix the user, NAS and device of pool place `index` (global numbering)."""
        nas = index % cfg.nases + 1
        nas_ip = f"127.{nas >> 16 & 255}.{nas >> 8 & 255}.{nas & 255}"
        mac = bytes([rng.randrange(256) & 0xFC | 0x02] + [rng.randrange(256) for _ in range(5)])
        self.static = b"".join(
            [
                attr_text(USER_NAME, str(FIRST_USER_ID + rng.randrange(max(1, cfg.sessions // 2)))),
                attr_raw(NAS_IP_ADDRESS, socket.inet_aton(nas_ip)),
                attr_text(NAS_IDENTIFIER, f"nas{nas:03d}"),
                attr_text(NAS_PORT_ID, f"wg0/{index}"),
                attr_int(NAS_PORT_TYPE, 5),  # Virtual
                attr_int(SERVICE_TYPE, 2),  # Framed-User
                attr_int(FRAMED_PROTOCOL, 1),  # PPP
                attr_text(CALLING_STATION_ID, ":".join(f"{b:02X}" for b in mac)),
                attr_text(CALLED_STATION_ID, f"{nas_ip}:51820"),
                attr_raw(FRAMED_IP_ADDRESS, struct.pack("!I", FRAMED_NET | (index + 1) & 0x3FFFFF)),
                attr_int(ACCT_AUTHENTIC, 1),  # RADIUS
                attr_int(ACCT_INTERIM_INTERVAL, INTERIM_INTERVAL),
            ]
        )
        self.rng = rng
        self.new_session_id = new_session_id
        self.clock = cfg.epoch + rng.uniform(0, INTERIM_INTERVAL)
        # Start the run in steady state: the first session is already at a random stage.
        self.stage = rng.randrange(STAGES)
        self.session = b""
        self.started = self.rate_in = self.rate_out = 0.0
        if self.stage:
            self.begin_session(self.clock - self.stage * INTERIM_INTERVAL)

    def begin_session(self, started):
        """Pick a new Acct-Session-Id and traffic rates (about 3% heavy users)."""
        rng = self.rng
        self.session = attr_text(ACCT_SESSION_ID, self.new_session_id())
        self.started = started
        self.rate_in = rng.uniform(2e6, 6e6) if rng.random() < 0.03 else rng.expovariate(1 / 20000)
        self.rate_out = self.rate_in * rng.uniform(1, 6)

    def next_attrs(self):
        """Return (status type, attribute bytes) of this slot's next packet."""
        stage, ts = self.stage, int(self.clock)
        if stage == 0:
            self.begin_session(self.clock)
            status = STATUS_START
            dynamic = (
                attr_int(ACCT_STATUS_TYPE, STATUS_START)
                + attr_int(EVENT_TIMESTAMP, ts)
                + attr_text(CONNECT_INFO, "WireGuard")
            )
        else:
            status = STATUS_STOP if stage == STAGES - 1 else STATUS_INTERIM
            elapsed = ts - int(self.started)
            octets_in, octets_out = int(self.rate_in * elapsed), int(self.rate_out * elapsed)
            dynamic = COUNTERS.pack(
                ACCT_STATUS_TYPE,
                6,
                status,
                EVENT_TIMESTAMP,
                6,
                ts,
                ACCT_SESSION_TIME,
                6,
                elapsed,
                ACCT_INPUT_OCTETS,
                6,
                octets_in & U32,
                ACCT_OUTPUT_OCTETS,
                6,
                octets_out & U32,
                ACCT_INPUT_PACKETS,
                6,
                octets_in // 600 & U32,
                ACCT_OUTPUT_PACKETS,
                6,
                octets_out // 1100 & U32,
            )
            if octets_in >> 32:
                dynamic += attr_int(ACCT_INPUT_GIGAWORDS, octets_in >> 32)
            if octets_out >> 32:
                dynamic += attr_int(ACCT_OUTPUT_GIGAWORDS, octets_out >> 32)
            if status == STATUS_STOP:
                dynamic += attr_int(ACCT_TERMINATE_CAUSE, 1)  # User-Request
        self.stage = (stage + 1) % STAGES
        self.clock += INTERIM_INTERVAL
        return status, self.static + self.session + dynamic


def build_packets(cfg, worker, count, nsock):
    """Encode this worker's `count` requests; packet i goes out on socket
    i % nsock with Identifier (i // nsock) % 256.  Returns (packets, mix)."""
    rng = random.Random(f"{cfg.seed}:{worker}")
    tag = random.Random(f"tag:{cfg.seed}").getrandbits(24)
    counter = itertools.count()

    def new_id():
        """Next Acct-Session-Id: seed tag, worker, counter (16 hex digits)."""
        return f"{tag:06X}{worker:02X}{next(counter) & U32:08X}"

    slots = [Slot(g, cfg, rng, new_id) for g in range(worker, cfg.sessions, cfg.workers)]
    order = list(range(len(slots)))
    rng.shuffle(order)
    packets, mix = [], {STATUS_START: 0, STATUS_INTERIM: 0, STATUS_STOP: 0}
    secret = cfg.secret.encode()
    while len(packets) < count:
        for s in order[: count - len(packets)]:  # one round: each slot sends once
            status, attrs = slots[s].next_attrs()
            packets.append(encode_request(len(packets) // nsock & 255, attrs, secret))
            mix[status] += 1
    return packets, mix


# ---------------------------------------------------------------- timed phase


def drive(cfg, packets, socks, rate, stop):  # noqa: C901 - the send/receive/retry loop
    """Send `packets` (closed loop with cfg.window outstanding, or paced at
    `rate`/s), match and verify responses, retransmit, and return statistics.
    Ends when every sent packet is acked or lost; stops sending new ones after
    cfg.duration seconds or when stop[0] is set."""
    n, nsock, secret = len(packets), len(socks), cfg.secret.encode()
    timeout, retries = cfg.timeout, cfg.retries
    window = cfg.window if rate is None else n + 1
    occupant = [-1] * (nsock * IDS_PER_SOCKET)  # (socket, identifier) -> packet index
    first_sent = array.array("d", [0.0]) * n
    tries = bytearray(n)  # transmissions so far; 0 = done or unsent
    timers = collections.deque()  # (deadline, packet, attempt), deadlines rise
    ready = collections.deque()  # packets whose identifier became free
    waiting = {}  # busy key -> deque of packets waiting for it
    latencies, acked_order = array.array("d"), array.array("I")
    stats = dict.fromkeys(
        (
            "retransmits",
            "lost",
            "id_waits",
            "send_errors",
            "stalled",
            "bad_authenticator",
            "unmatched_responses",
            "malformed_responses",
        ),
        0,
    )
    poller, by_fd = select.epoll(), {}
    for k, sock in enumerate(socks):
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = (sock, k * IDS_PER_SOCKET)
    md5, clock = hashlib.md5, time.perf_counter

    def release(key):
        """Free an identifier; the first packet waiting for it becomes ready."""
        occupant[key] = -1
        if key in waiting:
            ready.append(waiting[key].popleft())
            if not waiting[key]:
                del waiting[key]

    outstanding = next_new = sent = acked = 0
    t0 = last_send = last_ack = clock()
    lost_since_ack = False
    end_send, limit = math.inf, n
    if cfg.duration:  # open loop: send what is due within it
        end_send = t0 + cfg.duration + (MAX_WAIT if rate else 0)
        limit = min(n, math.ceil(cfg.duration * rate)) if rate else n
    sending = True
    while True:
        now = clock()
        if sending and (now >= end_send or stop[0]):
            sending = False
        elif sending and lost_since_ack and now - last_ack > cfg.stall_limit:
            sending = False  # server silent: give up, drain, report
            stats["stalled"] = 1
        if sending:  # 1. send what the window or the pace allows
            allowed = n if rate is None else min(limit, int((now - t0) * rate) + 1)
            while outstanding < window and (ready or next_new < allowed):
                if ready:
                    i = ready.popleft()
                else:
                    i, next_new = next_new, next_new + 1
                key = i % nsock * IDS_PER_SOCKET + (i // nsock & 255)
                if occupant[key] >= 0:  # identifier still in use: wait for it
                    waiting.setdefault(key, collections.deque()).append(i)
                    stats["id_waits"] += 1
                    continue
                try:
                    socks[i % nsock].send(packets[i])
                except BlockingIOError:
                    ready.appendleft(i)
                    break
                except OSError:
                    stats["send_errors"] += 1  # e.g. ICMP refused; the timer retries
                occupant[key], first_sent[i], tries[i] = i, now, 1
                timers.append((now + timeout, i, 1))
                outstanding += 1
                sent += 1
                last_send = now
        if outstanding == 0 and (not sending or next_new >= limit and not ready):
            break
        while timers and timers[0][0] <= now:  # 2. retransmit or give up on late packets
            _, i, attempt = timers.popleft()
            if tries[i] != attempt:
                continue  # answered meanwhile
            key = i % nsock * IDS_PER_SOCKET + (i // nsock & 255)
            if attempt <= retries:  # same bytes: same Identifier + Authenticator
                try:
                    socks[i % nsock].send(packets[i])
                except OSError:
                    stats["send_errors"] += 1
                tries[i] = attempt + 1
                timers.append((now + timeout, i, attempt + 1))
                stats["retransmits"] += 1
                continue
            tries[i] = 0
            release(key)
            stats["lost"] += 1
            lost_since_ack = True
            outstanding -= 1
        wait = MAX_WAIT  # 3. wait for responses, match and verify
        if timers:
            wait = min(wait, timers[0][0] - now)
        if sending and outstanding < window and (ready or next_new < limit):
            wait = 0 if ready or rate is None else min(wait, t0 + next_new / rate - now)
        for fd, _ in poller.poll(max(wait, 0)):
            sock, base = by_fd[fd]
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    continue  # ICMP port unreachable reported; read on
                except OSError:
                    break
                if len(data) < 20 or data[0] != ACCOUNTING_RESPONSE:
                    stats["malformed_responses"] += 1
                    continue
                key = base + data[1]
                i = occupant[key]
                if i < 0:
                    stats["unmatched_responses"] += 1
                    continue
                length = data[2] << 8 | data[3]
                if length < 20 or length > len(data):
                    stats["malformed_responses"] += 1
                    continue
                if (
                    md5(data[:4] + packets[i][4:20] + data[20:length] + secret).digest()
                    != data[4:20]
                ):
                    stats["bad_authenticator"] += 1
                    continue
                last_ack = clock()
                lost_since_ack = False
                latencies.append(last_ack - first_sent[i])
                acked_order.append(i)
                tries[i] = 0
                release(key)
                outstanding -= 1
                acked += 1
    poller.close()
    stats.update(
        sent=sent,
        acked=acked,
        unsent=n - sent,
        t0=t0,
        last_send=last_send,
        last_ack=last_ack,
        t_end=clock(),
    )
    return stats, latencies, acked_order


def write_ack_log(path, packets, acked_order):
    """Write '<Acct-Session-Id>\\t<status>\\t<Event-Timestamp>' per acked packet."""
    with open(path, "w") as out:
        out.writelines("{}\t{}\t{}\n".format(*packet_fields(packets[i])) for i in acked_order)


def worker_main(cfg, worker, count, nsock, rate, barrier, results):
    """Worker process: encode, wait for all workers, run the timed phase, report."""
    stop = [False]
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        packets, mix = build_packets(cfg, worker, count, nsock)
        encode_cpu, encode_wall = time.process_time() - cpu, time.perf_counter() - wall
        socks = [udp_socket(cfg.host) for _ in range(nsock)]
        for sock in socks:
            sock.connect((cfg.host, cfg.port))
        barrier.wait(timeout=cfg.barrier_timeout)
        cpu = time.process_time()
        stats, latencies, acked_order = drive(cfg, packets, socks, rate, stop)
        stats["cpu_s"] = time.process_time() - cpu
        for sock in socks:
            sock.close()
        if cfg.ack_log:
            write_ack_log(f"{cfg.ack_log}.part{worker}", packets, acked_order)
        stats.update(
            worker=worker,
            encode_cpu_s=encode_cpu,
            encode_s=encode_wall,
            mix=mix,
            bytes=sum(map(len, packets)),
            prepared=len(packets),
            latencies=latencies.tobytes(),
        )
        results.put(stats)
    except Exception as exc:  # report instead of hanging the others
        barrier.abort()
        results.put({"worker": worker, "error": f"{type(exc).__name__}: {exc}"})


# ---------------------------------------------------------------- main process


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list (0 if empty)."""
    if not sorted_values:
        return 0.0
    return sorted_values[
        min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    ]


def collect(procs, results, time_limit):
    """Gather one report per worker; give up on workers that died or overran."""
    reports, deadline = {}, time.monotonic() + time_limit
    while len(reports) < len(procs) and time.monotonic() < deadline:
        try:
            report = results.get(timeout=0.5)
            reports[report["worker"]] = report
        except queue.Empty:
            for w, proc in enumerate(procs):
                if w not in reports and proc.exitcode is not None and results.empty():
                    reports[w] = {"worker": w, "error": f"exited with code {proc.exitcode}"}
    for w, proc in enumerate(procs):
        proc.join(timeout=5)
        if proc.is_alive():  # a worker this process started
            proc.terminate()
            proc.join(timeout=5)
        reports.setdefault(w, {"worker": w, "error": "no report before the time limit"})
    return [reports[w] for w in range(len(procs))]


def summarize(cfg, reports, total, nsock):
    """Merge the worker reports into the summary dictionary."""
    latencies = array.array("d")
    for r in reports:
        latencies.frombytes(r["latencies"])
    lat = sorted(latencies)

    def total_of(key):
        """Sum of one counter over all workers."""
        return sum(r[key] for r in reports)

    t0 = min(r["t0"] for r in reports)
    sent, acked = total_of("sent"), total_of("acked")
    send_span = max(r["last_send"] for r in reports) - t0
    ack_span = max(r["last_ack"] for r in reports) - t0
    mix = {
        name: sum(r["mix"][code] for r in reports)
        for code, name in (
            (STATUS_START, "start"),
            (STATUS_INTERIM, "interim"),
            (STATUS_STOP, "stop"),
        )
    }
    cpu = total_of("cpu_s")
    return {
        "server": f"{cfg.host}:{cfg.port}",
        "mode": "closed" if cfg.rate is None else "open",
        "rate": cfg.rate,
        "window": cfg.window if cfg.rate is None else None,
        "workers": cfg.workers,
        "sockets_per_worker": nsock,
        "sessions": cfg.sessions,
        "nases": cfg.nases,
        "seed": cfg.seed,
        "epoch": cfg.epoch,
        "timeout_s": cfg.timeout,
        "retries": cfg.retries,
        "prepared": total,
        "mix": mix,
        "avg_packet_bytes": round(total_of("bytes") / max(1, total_of("prepared")), 1),
        "sent": sent,
        "acked": acked,
        "retransmits": total_of("retransmits"),
        "lost": total_of("lost"),
        "unsent": total_of("unsent"),
        "duration_s": round(max(r["t_end"] for r in reports) - t0, 3),
        "sent_per_s": round(sent / send_span, 1) if send_span > 0 else 0.0,
        "acked_per_s": round(acked / ack_span, 1) if ack_span > 0 else 0.0,
        "latency_p50_ms": round(percentile(lat, 0.50) * 1e3, 3),
        "latency_p90_ms": round(percentile(lat, 0.90) * 1e3, 3),
        "latency_p99_ms": round(percentile(lat, 0.99) * 1e3, 3),
        "latency_max_ms": round((lat[-1] if lat else 0.0) * 1e3, 3),
        "generator_cpu_s": round(cpu, 3),
        "generator_cpu_us_per_packet": round(cpu * 1e6 / max(1, sent), 2),
        "encode_s": round(max(r["encode_s"] for r in reports), 3),
        "encode_cpu_s": round(total_of("encode_cpu_s"), 3),
        **{
            key: total_of(key)
            for key in (
                "stalled",
                "id_waits",
                "send_errors",
                "bad_authenticator",
                "unmatched_responses",
                "malformed_responses",
            )
        },
    }


def print_table(summary):
    """Print the summary as an aligned two-column table."""
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif value is None:
            value = "-"
        print(f"{key:<30} {value}")


def generator_parser():
    """Command line of the load generator."""
    p = argparse.ArgumentParser(
        prog="loadgen.py",
        description="RADIUS accounting load generator (loopback only).",
        epilog="Self-test responder: loadgen.py responder --help",
    )
    p.add_argument(
        "--server",
        default="127.0.0.1:1813",
        help="target host:port, 127.0.0.0/8 or [::1] only (default 127.0.0.1:1813)",
    )
    p.add_argument(
        "--secret", default=DEFAULT_SECRET, help=f"shared secret (default {DEFAULT_SECRET})"
    )
    p.add_argument(
        "--sessions",
        type=int,
        default=100_000,
        help="concurrent sessions in the pool (default 100000)",
    )
    p.add_argument(
        "--nases", type=int, default=10, help="simulated NASes 127.0.0.1..N (default 10)"
    )
    p.add_argument("--workers", type=int, default=2, help="sender processes (default 2)")
    p.add_argument(
        "--window",
        type=int,
        default=256,
        help="closed loop (the default mode): requests outstanding per worker (default 256)",
    )
    p.add_argument("--rate", type=float, help="open loop instead: total packets/s, paced")
    p.add_argument(
        "--packets",
        type=int,
        help=f"total packets (default {DEFAULT_PACKETS}; with "
        f"--duration: rate*duration, or {PREENCODE_RATE}*duration in closed loop)",
    )
    p.add_argument("--duration", type=float, help="stop sending new packets after S seconds")
    p.add_argument(
        "--timeout", type=float, default=2.0, help="seconds before a retransmit (default 2)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retransmits before a packet counts as lost (default 3)",
    )
    p.add_argument(
        "--stall-limit",
        type=float,
        default=30.0,
        help="stop sending new packets when packets were lost and nothing was "
        "acknowledged for S seconds (default 30)",
    )
    p.add_argument(
        "--sockets",
        type=int,
        help="UDP sockets per worker, 256 identifiers each "
        "(default: enough for 4 windows, or for rate*timeout; at least 16)",
    )
    p.add_argument("--seed", type=int, help="random seed (default: random, shown in the summary)")
    p.add_argument(
        "--epoch",
        type=int,
        help="Unix time of the first round of packets (default: "
        "now); each later round is 300 simulated seconds on",
    )
    p.add_argument("--ack-log", metavar="FILE", help="write one line per acknowledged packet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON, not a table")
    return p


def validate(cfg):
    """Exit with a message if an option is out of range."""
    rules = [
        (cfg.workers >= 1, "--workers must be >= 1"),
        (cfg.sessions >= cfg.workers, "--sessions must be >= --workers"),
        (1 <= cfg.nases <= 65534, "--nases must be 1..65534"),
        (cfg.window >= 1, "--window must be >= 1"),
        (cfg.rate is None or cfg.rate > 0, "--rate must be > 0"),
        (cfg.packets is None or cfg.packets >= 1, "--packets must be >= 1"),
        (cfg.duration is None or cfg.duration > 0, "--duration must be > 0"),
        (cfg.timeout > 0, "--timeout must be > 0"),
        (0 <= cfg.retries <= 250, "--retries must be 0..250"),
        (cfg.stall_limit > 0, "--stall-limit must be > 0"),
        (cfg.sockets is None or 1 <= cfg.sockets <= 1000, "--sockets must be 1..1000"),
        (bool(cfg.secret), "--secret must not be empty"),
    ]
    for ok, message in rules:
        if not ok:
            raise SystemExit(message)


def run_generator(argv):
    """Parse options, start the workers, wait for them and print the summary."""
    cfg = generator_parser().parse_args(argv)
    cfg.host, cfg.port = parse_endpoint(cfg.server, 1813)
    if cfg.port == 0:
        raise SystemExit("--server needs a port")
    validate(cfg)
    if cfg.ack_log:
        try:
            open(cfg.ack_log, "w").close()  # fail now, not after the run
        except OSError as exc:
            raise SystemExit(f"--ack-log: {exc}") from None
    if cfg.seed is None:
        cfg.seed = int.from_bytes(os.urandom(4), "big")
    total = cfg.packets or (
        math.ceil(cfg.duration * (cfg.rate or PREENCODE_RATE)) if cfg.duration else DEFAULT_PACKETS
    )
    counts = [total // cfg.workers + (w < total % cfg.workers) for w in range(cfg.workers)]
    rate = cfg.rate / cfg.workers if cfg.rate else None
    if cfg.sockets:
        nsock = cfg.sockets
    elif rate is None:
        nsock = max(16, math.ceil(4 * cfg.window / IDS_PER_SOCKET))
    else:
        nsock = min(256, max(16, math.ceil(rate * cfg.timeout / IDS_PER_SOCKET)))
    if cfg.epoch is None:
        cfg.epoch = int(time.time())
    cfg.barrier_timeout = 60 + total * 2e-4  # generous bound on encoding time
    log = sys.stderr.write
    log(
        f"loadgen: encoding {total} packets in {cfg.workers} workers "
        f"({nsock} sockets each), seed {cfg.seed}\n"
    )
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(cfg.workers), ctx.Queue()
    procs = [
        ctx.Process(
            target=worker_main,
            args=(cfg, w, counts[w], nsock, rate, barrier, results),
            name=f"loadgen-{w}",
        )
        for w in range(cfg.workers)
    ]
    for proc in procs:
        proc.start()
    signal.signal(
        signal.SIGINT, lambda *_: log("loadgen: interrupted, draining in-flight packets\n")
    )
    run_bound = cfg.duration or (
        max(counts) / rate if rate else total * (cfg.retries + 1) * cfg.timeout
    )
    reports = collect(
        procs,
        results,
        cfg.barrier_timeout + run_bound + (cfg.retries + 1) * cfg.timeout + RESULT_GRACE,
    )
    errors = [f"worker {r['worker']}: {r['error']}" for r in reports if "error" in r]
    if errors:
        raise SystemExit("loadgen: " + "; ".join(errors))
    if cfg.ack_log:
        with open(cfg.ack_log, "wb") as out:
            for w in range(cfg.workers):
                part = f"{cfg.ack_log}.part{w}"
                with open(part, "rb") as src:
                    out.write(src.read())
                os.remove(part)
    summary = summarize(cfg, reports, total, nsock)
    if cfg.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


def main(argv=None):
    """Dispatch to the responder sub-command or the generator."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "responder":
        from responder import run_responder  # bench/responder.py, beside this file

        return run_responder(argv[1:])
    return run_generator(argv)


if __name__ == "__main__":
    sys.exit(main())
