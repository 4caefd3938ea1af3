"""Staff and invite steps shared by the e2e tests (a uniquely named module, see gateway_fakes)."""

from __future__ import annotations

import httpx


def create_invite(client: httpx.Client, admin_headers: dict[str, str], name: str) -> dict:
    """Creates an interview through the staff API; returns it with its ``invite_url``."""
    response = client.post("/api/v1/interviews", json={"candidate_name": name}, headers=admin_headers)
    assert response.status_code == 201, response.text
    created: dict = response.json()
    return created


def accept_invite(client: httpx.Client, invite_url: str) -> tuple[dict, dict[str, str]]:
    """Uses an invite as a candidate would; returns the start response and the candidate's headers."""
    token = invite_url.split("#invite=", 1)[1]
    response = client.post("/api/v1/invites/accept", json={"invite_token": token})
    assert response.status_code == 200, response.text
    started: dict = response.json()
    return started, {"authorization": f"Bearer {started['access_token']}"}
