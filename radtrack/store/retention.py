"""History retention: closed sessions older than store.retention_days are deleted, once an hour
(the daemon runs ``run``; ``prune`` is the one round, which tests call with their own clock)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from radtrack.errors import StoreError
from radtrack.store.base import Store

logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0  # seconds between two rounds


class Retention:
    """Prunes ``store``; ``days`` gives store.retention_days as the settings are now (0: keep
    everything)."""

    def __init__(self, store: Store, days: Callable[[], int]) -> None:
        self.store = store
        self.days = days

    async def prune(self, now: float | None = None) -> int:
        """Delete closed sessions older than the retention; returns how many."""
        days = self.days()
        if not days:
            return 0
        before = (time.time() if now is None else now) - days * 86_400
        total = await self.store.prune_closed(before)
        if total:
            logger.info("event=history_pruned rows=%d retention_days=%d", total, days)
        return total

    async def run(self) -> None:
        while True:
            try:
                await self.prune()
            except StoreError as exc:
                logger.warning("event=prune_failed error=%r", str(exc))
            await asyncio.sleep(PRUNE_INTERVAL)
