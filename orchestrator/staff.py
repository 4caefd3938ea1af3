"""Wiring of the staff-facing services (Identity, Interviews, Reviews) into the orchestrator process."""

from __future__ import annotations

import grpc

from orchestrator.admin_db import AdminDb
from orchestrator.identity import IdentityService, IdentitySettings
from orchestrator.interviews import InterviewsService
from orchestrator.reviews import ReviewsService
from orchestrator.service import OrchestratorService
from orchestrator.settings import OrchestratorSettings
from xlinterview.v1 import admin_pb2, admin_pb2_grpc

STAFF_SERVICE_NAMES = [
    admin_pb2.DESCRIPTOR.services_by_name[name].full_name for name in ("Identity", "Interviews", "Reviews")
]


class StaffServices:
    """The Identity, Interviews and Reviews services and their pool.

    Args:
        settings: The initial admin and invite defaults; read from the environment
            when omitted.
        environment: ``development`` or ``production``; the latter refuses the
            built-in admin password.

    Raises:
        MissingSetting: When a built-in secret is used outside development.
    """

    def __init__(self, settings: IdentitySettings | None, environment: str) -> None:
        self.settings = settings or IdentitySettings()
        self.settings.check_secrets(environment)
        self.db: AdminDb | None = None
        self.identity: IdentityService | None = None
        self.interviews: InterviewsService | None = None
        self.reviews: ReviewsService | None = None

    async def start(self, orchestrator: OrchestratorSettings, sessions: OrchestratorService) -> None:
        """Opens the pool, creates the initial admin if needed and builds the services.

        Args:
            orchestrator: Settings with the database URL and timeout.
            sessions: The Orchestrator servicer that invites start sessions with and
                reviews refresh finished sessions' results with.
        """
        self.db = await AdminDb.connect(orchestrator.database_url or "", orchestrator.db_timeout_s)
        self.identity = IdentityService(self.db, self.settings.password_hash_concurrency)
        await self.identity.ensure_initial_admin(self.settings)
        self.interviews = InterviewsService(
            self.db,
            sessions,
            self.settings.invite_ttl_s,
            time_limit_s=orchestrator.interview_time_limit_s,
            max_extra_time_percent=orchestrator.max_extra_time_percent,
        )
        self.reviews = ReviewsService(self.db, sessions, orchestrator.max_answer_chars)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Registers the started services on ``server``."""
        if self.identity is None or self.interviews is None or self.reviews is None:
            raise RuntimeError("StaffServices.start() must run first")
        admin_pb2_grpc.add_IdentityServicer_to_server(self.identity, server)
        admin_pb2_grpc.add_InterviewsServicer_to_server(self.interviews, server)
        admin_pb2_grpc.add_ReviewsServicer_to_server(self.reviews, server)

    async def close(self) -> None:
        """Closes the pool (at most once)."""
        db, self.db = self.db, None
        if db is not None:
            await db.close()
