"""Prometheus metrics endpoint shared by the gRPC services."""

from __future__ import annotations

from prometheus_client import start_http_server


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serves ``/metrics`` on a background thread; port 0 disables it."""
    if port:
        start_http_server(port, addr=host)
