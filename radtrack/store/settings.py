"""The store's settings: which backend, where its data is, and how it commits.

config.py builds them from the ``[store]`` table; the defaults here are the ones
config.example.toml documents. The PostgreSQL password is never a setting: store.password_file
or store.password_env name where it is (config.store_password reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    backend: str = "sqlite"
    path: Path = Path("radtrack.db")
    synchronous: str = "FULL"
    max_batch: int = 10_000
    commit_delay: float = 0.001  # seconds the commit thread gathers after a small commit
    snapshot: bool = True  # SQLite: a clean stop writes the live set for the next start
    busy_timeout: float = 1.0
    cache_mb: int = 256
    retention_days: int = 0  # closed sessions older than this are pruned; 0 keeps them all
    history_page_max: int = 500
    # PostgreSQL (backend = "postgresql"): the password is never in the DSN, and never logged
    dsn: str = ""
    password_file: Path | None = None
    password_env: str = ""
    node_name: str = ""  # "" : the host name and the process id
    feed_poll_interval: float = 0.5
