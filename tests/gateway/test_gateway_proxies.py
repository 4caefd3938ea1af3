"""X-Forwarded-For is believed only from trusted proxies (``XLI_TRUSTED_PROXIES``)."""

from __future__ import annotations

import logging
from ipaddress import ip_network

import httpx
import pytest
from pydantic import ValidationError

from gateway.middleware import forwarded_client
from gateway.settings import GatewaySettings
from gateway_fakes import FakeServer, serve

TRUSTED = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        # An untrusted peer's header is ignored, however plausible.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # A trusted proxy names the client.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # A forged entry left of the real client is not believed.
        ("10.0.0.2", ["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
        # A chain of trusted proxies is walked through, across several headers.
        ("10.0.0.2", ["1.2.3.4, 198.51.100.1", "10.1.1.1"], "198.51.100.1"),
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        # Only proxies in the header: the leftmost is the closest to a client.
        ("10.0.0.2", ["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        # Garbage stops the walk at the last address a trusted proxy vouched for.
        ("10.0.0.2", ["198.51.100.1, not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["garbage, 10.1.1.1"], "10.1.1.1"),
    ],
)
def test_forwarded_client(peer: str, header: list[str], client: str) -> None:
    assert forwarded_client(peer, header, TRUSTED) == client


def test_nobody_is_trusted_by_default() -> None:
    assert GatewaySettings().trusted_proxies == []
    assert forwarded_client("10.0.0.2", ["198.51.100.1"], []) == "10.0.0.2"


def test_setting_reads_comma_separated_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLI_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8,192.168.1.7")
    assert GatewaySettings().trusted_proxies == [ip_network("10.0.0.0/8"), ip_network("fd00::/8"), ip_network("192.168.1.7/32")]
    monkeypatch.setenv("XLI_TRUSTED_PROXIES", "10.0.0.0/8,proxy.example")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        GatewaySettings()


async def statuses(client, forwarded_for: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    return [(await client.get("/api/v1/auth/me", headers={"x-forwarded-for": f})).status_code for f in forwarded_for]


async def test_per_ip_limit_follows_forwarded_clients_from_a_trusted_proxy(orchestrator: FakeServer, make_client) -> None:  # type: ignore[no-untyped-def]
    # The test transport's peer is 127.0.0.1: here it is the trusted proxy.
    async with make_client(orchestrator.address, rate_limit_ip_per_min=2, trusted_proxies=["127.0.0.0/8"]) as client:
        assert await statuses(client, ["198.51.100.1"] * 3) == [401, 401, 429]
        # Another client behind the same proxy has its own budget...
        assert await statuses(client, ["198.51.100.2"]) == [401]
        # ...and a client cannot escape its own by forging entries to the left.
        assert await statuses(client, ["6.6.6.6, 198.51.100.1"]) == [429]


async def test_per_ip_limit_ignores_the_header_from_an_untrusted_peer(orchestrator: FakeServer, make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client(orchestrator.address, rate_limit_ip_per_min=2) as client:
        # Every request counts against the peer, whatever it claims to forward.
        assert await statuses(client, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [401, 401, 429]
    async with make_client(orchestrator.address, rate_limit_ip_per_min=2, trusted_proxies=["10.0.0.0/8"]) as client:
        assert await statuses(client, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [401, 401, 429]


@pytest.mark.parametrize(("trusted", "logged"), [(["127.0.0.0/8"], "198.51.100.7"), ([], "127.0.0.1")])
async def test_access_log_names_the_forwarded_client_only_from_a_trusted_proxy(
    orchestrator: FakeServer, caplog: pytest.LogCaptureFixture, trusted: list[str], logged: str
) -> None:
    settings = GatewaySettings(orchestrator_address=orchestrator.address, trusted_proxies=trusted)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        async with serve(settings) as url, httpx.AsyncClient(base_url=url) as http:
            await http.get("/healthz", headers={"x-forwarded-for": "198.51.100.7"})
    clients = [str(r.args[0]).rsplit(":", 1)[0] for r in caplog.records if r.name == "uvicorn.access"]  # type: ignore[index]
    assert clients == [logged]
