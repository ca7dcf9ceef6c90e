"""FreeRADIUS 3.2 rlm_sql_postgresql vs radtrack on PostgreSQL: one cluster, the same loadgen.

    sudo python3 bench/fr_postgresql.py [SECONDS]    # Debian 12: freeradius freeradius-postgresql

A PostgreSQL cluster of tests/pgserver.py; FreeRADIUS's own schema
(mods-config/sql/main/postgresql/schema.sql) in one database, radtrack's in another. FreeRADIUS
runs the Debian package's config with the changes bench/freeradius/setup.sh (the shared peer)
makes for its sql variant, on PostgreSQL: an accounting-only site on 127.0.0.1 (preacct as
shipped, ``accounting { sql }``, recv_buff 4 MiB), the sql module with dialect postgresql and
driver rlm_sql_postgresql, one client 127.0.0.0/8 with the bench secret. Thread and connection
pools as shipped. Each round runs FreeRADIUS, then radtrack, under bench/loadgen.py's closed loop
(2 workers x 256 outstanding, 20,000 sessions). Needs root (FreeRADIUS runs as freerad).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import pg_cluster as pc  # noqa: E402

from tests import pgserver  # noqa: E402

SRC = Path("/etc/freeradius/3.0")
SECRET = pc.SECRET
SECONDS = sys.argv[1] if len(sys.argv) > 1 else "15"


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_fr(root: Path, port: int, pgport: int, db: str) -> Path:
    d = root / "raddb"
    r = root / "run"
    shutil.copytree(SRC, d, symlinks=True)
    (r / "log" / "radacct").mkdir(parents=True)
    conf = (d / "radiusd.conf").read_text()
    conf = re.sub(r"(?m)^raddbdir = .*", f"raddbdir = {d}", conf)
    conf = re.sub(r"(?m)^logdir = .*", f"logdir = {r}/log", conf)
    conf = re.sub(r"(?m)^run_dir = .*", f"run_dir = {r}", conf)
    conf = conf.replace("proxy_requests  = yes", "proxy_requests  = no")
    (d / "radiusd.conf").write_text(conf)
    (d / "sites-enabled" / "default").unlink()
    (d / "sites-available" / "bench").write_text(f"""
server bench {{
	listen {{
		type = acct
		ipaddr = 127.0.0.1
		port = {port}
		recv_buff = 4194304
	}}
	preacct {{
		preprocess
		acct_unique
		suffix
		files
	}}
	accounting {{
		sql
	}}
}}
""")
    (d / "sites-enabled" / "bench").symlink_to("../sites-available/bench")
    sql = (d / "mods-available" / "sql").read_text()
    sql = sql.replace('\tdialect = "sqlite"', '\tdialect = "postgresql"')
    sql = sql.replace('\tdriver = "rlm_sql_null"', '#\tdriver = "rlm_sql_null"')
    sql = sql.replace('#\tdriver = "rlm_sql_${dialect}"', '\tdriver = "rlm_sql_${dialect}"')
    sql = sql.replace(
        '\tradius_db = "radius"',
        f'\tradius_db = "host=127.0.0.1 port={pgport} dbname={db} user={pgserver.SUPERUSER}"',
    )
    (d / "mods-available" / "sql").write_text(sql)
    (d / "mods-enabled" / "sql").symlink_to("../mods-available/sql")
    (d / "clients.conf").write_text(
        f"client bench {{\n\tipaddr = 127.0.0.0/8\n\tsecret = {SECRET}\n}}\n"
    )
    subprocess.run(["chown", "-R", "freerad:freerad", str(root)], check=True)
    chk = subprocess.run(["freeradius", "-C", "-d", str(d)], capture_output=True, text=True)
    if chk.returncode:
        print(chk.stdout[-3000:], chk.stderr[-3000:])
        raise SystemExit("config check failed")
    return d


def loadgen(port: int, *extra: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            "--server",
            f"127.0.0.1:{port}",
            "--secret",
            SECRET,
            "--json",
            "--duration",
            SECONDS,
            "--sessions",
            "20000",
            *extra,
        ],
        capture_output=True,
        text=True,
    ).stdout
    s = json.loads(out)
    return {
        k: s[k] for k in ("acked_per_s", "latency_p50_ms", "latency_p99_ms", "lost", "retransmits")
    }


def main() -> None:
    with pgserver.running() as cluster, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        fr_db = cluster.create_database()
        cluster.psql(open(SRC / "mods-config/sql/main/postgresql/schema.sql").read(), fr_db)
        rt_db = cluster.create_database()
        port = free_udp()
        d = build_fr(root / "fr", port, cluster.port, fr_db)
        results: dict[str, object] = {"load_average": pc.load_average()}
        for rnd in range(2):
            fr = subprocess.Popen(
                ["freeradius", "-f", "-d", str(d)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(2)  # -f prints nothing when ready; its config was checked (-C) before
            results[f"{rnd}. freeradius rlm_sql_postgresql"] = loadgen(port)
            fr.send_signal(signal.SIGTERM)
            fr.wait(20)
            rows = cluster.psql("SELECT count(*) FROM radacct", fr_db).strip()
            results[f"{rnd}. freeradius radacct rows"] = rows
            with pc.radtrack_on(root, cluster.dsn(rt_db), f"rt{rnd}") as node:
                results[f"{rnd}. radtrack postgresql"] = loadgen(node.udp)
        results["load_average_after"] = pc.load_average()
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
