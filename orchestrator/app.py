"""Wiring: opens the backing services, prepares the schema and the bank, builds the service.

:mod:`orchestrator.__main__` serves it; tests run the same wiring on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from orchestrator.bank import load_bank
from orchestrator.db import Database, ItemRef
from orchestrator.service import OrchestratorService, SessionEvents
from orchestrator.settings import OrchestratorSettings
from orchestrator.staff import IdentitySettings, StaffServices
from orchestrator.state import SessionStateStore, create_redis_client
from xlinterview.v1 import orchestrator_pb2, orchestrator_pb2_grpc, scorer_pb2_grpc

log = logging.getLogger(__name__)

# gRPC's default reconnect backoff grows to 120 s, so after a long scorer outage
# answers would keep failing for minutes after the scorer is back; cap it.
SCORER_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 3000),
]

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name


class Orchestrator:
    """The orchestrator's resources, opened by :meth:`start` and closed by :meth:`close`.

    Args:
        settings: Configuration; ``database_url`` and ``redis_url`` must be set.
    """

    def __init__(self, settings: OrchestratorSettings, identity: IdentitySettings | None = None) -> None:
        settings.require_backing_urls()
        self.settings = settings
        # Built here so default secrets are refused before anything is opened.
        self.staff = StaffServices(identity, settings.environment)
        self.db: Database | None = None
        self.state: SessionStateStore | None = None
        self.scorer_channel: grpc.aio.Channel | None = None
        self.service: OrchestratorService | None = None
        self._retry_task: asyncio.Task[None] | None = None

    async def start(self) -> OrchestratorService:
        """Connects, migrates, imports the bank and builds the service.

        Raises:
            BankError: When the question bank is invalid (checked before connecting).
            Unavailable: When PostgreSQL cannot be reached within the start-up timeout.
        """
        s = self.settings
        # Parse the bank first: a broken YAML file should fail start-up before any I/O.
        items = load_bank(s.bank_dir)
        try:
            self.db = await Database.connect(
                s.database_url or "",
                timeout_s=s.db_timeout_s,
                min_size=s.db_pool_min_size,
                max_size=s.db_pool_max_size,
                startup_timeout_s=s.startup_timeout_s,
            )
            applied = await self.db.migrate()
            if applied:
                log.info("applied migrations %s", applied)
            bank = await self.db.import_items(items)
            log.info("question bank: %d items (%s)", len(bank), ", ".join(f"{b.item_id}@v{b.version}" for b in bank))
            # One client for the session-state cache and the session events; the
            # state store owns it and closes it.
            redis = create_redis_client(s.redis_url or "", s.redis_timeout_s)
            self.state = SessionStateStore(
                redis,
                self.db,
                ttl_s=s.session_ttl_s,
                timeout_s=s.redis_timeout_s,
                retry_after_s=s.redis_retry_after_s,
            )
            self.scorer_channel = grpc.aio.insecure_channel(s.scorer_address, options=SCORER_CHANNEL_OPTIONS)
            self.service = OrchestratorService(
                self.db,
                self.state,
                scorer_pb2_grpc.ScorerStub(self.scorer_channel),
                bank,
                s,
                events=SessionEvents(redis, s.redis_timeout_s),
            )
            # Parameters estimated by `xli-calibrate`, read once: a new calibration
            # takes effect at the next start.
            calibrations = await self.db.latest_calibrations()
            self.service.engine.use_calibrations(calibrations)
            log.info(
                "item parameters: %d of %d current item versions calibrated from answers",
                sum(ItemRef(v.item_id, v.version) in calibrations for v in bank),
                len(bank),
            )
            await self.staff.start(s, self.service)
            if s.scoring_retry_interval_s > 0:
                self._retry_task = asyncio.create_task(
                    self._retry_scoring(self.service, s.scoring_retry_interval_s), name="scoring-retry"
                )
        except BaseException:
            await self.close()
            raise
        return self.service

    @staticmethod
    async def _retry_scoring(service: OrchestratorService, interval_s: float) -> None:
        """Every ``interval_s``, scores the answers a scorer outage left unscored."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                scored = await service.retry_unscored()
            except Exception:  # noqa: BLE001 - a failed sweep must not end the loop
                log.exception("scoring retry sweep failed")
                continue
            if scored:
                log.info("scored %d answer(s) whose scoring had failed", scored)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Registers the started service on ``server``."""
        if self.service is None:
            raise RuntimeError("Orchestrator.start() must run first")
        orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(self.service, server)
        self.staff.add_to_server(server)

    async def close(self) -> None:
        """Stops the scoring retries and closes the scorer channel, Redis client and
        database pools (each at most once)."""
        task, self._retry_task = self._retry_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.staff.close()
        channel, self.scorer_channel = self.scorer_channel, None
        if channel is not None:
            await channel.close()
        state, self.state = self.state, None
        if state is not None:
            await state.close()
        db, self.db = self.db, None
        if db is not None:
            await db.close()
