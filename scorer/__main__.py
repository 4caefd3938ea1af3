"""``xli-scorer``: runs the Scorer gRPC service."""

from __future__ import annotations

import asyncio

from common.grpc_server import create_server, serve
from common.logging import configure_logging
from common.metrics import start_metrics_server
from scorer.service import ScorerService, feature_count
from scorer.settings import ScorerSettings
from scorer.triton import TritonScoringModel
from xlinterview.v1 import scorer_pb2, scorer_pb2_grpc


async def run(settings: ScorerSettings) -> None:
    """Serves until SIGTERM/SIGINT."""
    model = TritonScoringModel(
        settings.triton_url,
        settings.model_name,
        feature_count(),
        deadline_s=settings.triton_deadline_s,
        batch_window_s=settings.batch_window_ms / 1000.0,
        max_batch_rows=settings.max_batch_rows,
        max_pending_rows=settings.max_pending_rows,
    )
    server = create_server()
    scorer_pb2_grpc.add_ScorerServicer_to_server(ScorerService(model, settings.max_answer_chars), server)
    name = scorer_pb2.DESCRIPTOR.services_by_name["Scorer"].full_name
    await serve(server, settings.listen_address, [name], on_stop=model.close)


def main() -> None:
    """Console entry point."""
    settings = ScorerSettings()  # type: ignore[call-arg]  # required fields come from the environment
    configure_logging("scorer", settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
