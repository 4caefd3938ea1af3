"""Staff, invite and browser steps shared by the e2e tests (a uniquely named module, see gateway_fakes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import Page


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


def axe_source() -> str:
    """axe-core as bundled in the axe-playwright-python wheel (no npm registry)."""
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


def assert_accessible(page: Page, what: str) -> None:
    """Runs axe-core in the page (WCAG 2.0-2.2 A and AA rules); fails on any serious or
    critical violation. ``page.evaluate`` runs outside the page's CSP, so the strict
    policy stays on."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    result = page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
             .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))"""
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{what}: {serious}"


def tab_until(page: Page, selector: str, limit: int = 20) -> None:
    """Presses Tab until the focused element matches ``selector``."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")
