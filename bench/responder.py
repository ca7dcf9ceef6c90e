#!/usr/bin/env python3
"""Minimal RADIUS accounting responder for self-testing bench/loadgen.py.

Answers every valid Accounting-Request (correct Request Authenticator) with a
correct Accounting-Response and stores nothing.  Several processes read the
one bound socket.  Loopback only; every process exits by itself.

    python3 bench/loadgen.py responder --listen 127.0.0.1:0 --secret S
    python3 bench/responder.py --listen 127.0.0.1:0 --secret S      # the same
"""

import argparse
import multiprocessing
import random
import select
import signal
import sys
import time

from loadgen import DEFAULT_SECRET, parse_endpoint, response_for, udp_socket


def serve(sock, secret, drop, seed, duration, idle):
    """Answer valid Accounting-Requests on `sock` until `duration` seconds pass,
    nothing arrives for `idle` seconds, or the socket is closed; return counters."""
    rng = random.Random(seed)
    counts = {"received": 0, "answered": 0, "invalid": 0, "dropped": 0}
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    start = last = time.monotonic()
    cpu = time.process_time()
    received = seen = 0
    while True:
        try:
            data, addr = sock.recvfrom(4096)
        except BlockingIOError:
            now = time.monotonic()
            if received != seen:
                last, seen = now, received
            if now - start >= duration or now - last >= idle:
                break
            poller.poll(500)
            continue
        except OSError:  # closed by a signal handler
            break
        received += 1
        if received & 4095 == 0 and time.monotonic() - start >= duration:
            break
        response = response_for(data, secret)
        if response is None:
            counts["invalid"] += 1
            continue
        if drop and rng.random() < drop:
            counts["dropped"] += 1
            continue
        try:
            sock.sendto(response, addr)
            counts["answered"] += 1
        except OSError:
            counts["dropped"] += 1
    counts["received"] = received
    counts["cpu_s"] = round(time.process_time() - cpu, 3)
    return counts


def serve_and_report(sock, args, index):
    """Serve on `sock` until done, then print this process's counters on stderr.
    SIGTERM (and SIGINT in the first process) closes the socket, ending serve()."""
    signal.signal(signal.SIGTERM, lambda *_: sock.close())
    signal.signal(signal.SIGINT, (lambda *_: sock.close()) if index == 0 else signal.SIG_IGN)
    counts = serve(
        sock, args.secret.encode(), args.drop, f"{args.seed}:{index}", args.duration, args.idle
    )
    sock.close()
    print(
        f"responder[{index}] " + " ".join(f"{k}={v}" for k, v in counts.items()),
        file=sys.stderr,
        flush=True,
    )


def run_responder(argv):
    """`responder` sub-command: answer Accounting-Requests without storing them."""
    p = argparse.ArgumentParser(
        prog="loadgen.py responder",
        description="Minimal RADIUS accounting responder for self-tests.",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:0",
        help="host:port, loopback only; port 0 = any free port (default 127.0.0.1:0)",
    )
    p.add_argument(
        "--secret", default=DEFAULT_SECRET, help=f"shared secret (default {DEFAULT_SECRET})"
    )
    p.add_argument(
        "--workers", type=int, default=2, help="processes reading the one socket (default 2)"
    )
    p.add_argument(
        "--drop",
        type=float,
        default=0.0,
        help="fraction of valid requests to leave unanswered (default 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --drop (default 0)")
    p.add_argument(
        "--duration", type=float, default=3600, help="exit after S seconds (default 3600)"
    )
    p.add_argument(
        "--idle", type=float, default=60, help="exit after S seconds without requests (default 60)"
    )
    args = p.parse_args(argv)
    if args.workers < 1 or not 0 <= args.drop < 1 or not args.secret:
        raise SystemExit("need --workers >= 1, 0 <= --drop < 1 and a secret")
    host, port = parse_endpoint(args.listen, 0)
    sock = udp_socket(host)
    sock.bind((host, port))
    ctx = multiprocessing.get_context("fork")  # children share the bound socket
    children = [
        ctx.Process(target=serve_and_report, args=(sock, args, i), daemon=True)
        for i in range(1, args.workers)
    ]
    for child in children:
        child.start()
    host, port = sock.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    serve_and_report(sock, args, 0)
    for child in children:  # processes this responder started
        child.terminate()
        child.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(run_responder(sys.argv[1:]))
