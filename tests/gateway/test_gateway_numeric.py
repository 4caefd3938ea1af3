"""Numeric questions through the gateway: the REST API carries their unit and decimals,
a refused number is a 400 problem, and the candidate page shows an accessible number
field (in a real browser, against the fake orchestrator)."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from playwright.async_api import Browser, Page, expect

import gateway_fakes
from gateway.settings import GatewaySettings
from gateway_fakes import FakeServer, serve, start_as_candidate
from xlinterview.v1 import common_pb2, orchestrator_pb2

API = "/api/v1/sessions"
REFUSAL = 'a numeric answer must be a number: "3,5" looks like a decimal comma; write the decimals with a point, e.g. 3.5'

NUMERIC_QUESTIONS = [
    orchestrator_pb2.Question(
        item_id="pmt-car-loan",
        item_version=2,
        kind=common_pb2.QUESTION_KIND_NUMERIC,
        prompt="What does =PMT(5%/12,36,20000) return?",
        skill_area="dates_financial",
        unit="USD",
        decimals=2,
    ),
    orchestrator_pb2.Question(
        item_id="vba-loop-count",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_NUMERIC,
        prompt="How many times does For i = 1 To 10 Step 3 run?",
        skill_area="automation",
    ),
]


@pytest.fixture
def numeric_interview(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake orchestrator asks the two numeric questions above."""
    monkeypatch.setattr(gateway_fakes, "QUESTIONS", NUMERIC_QUESTIONS)


@pytest.mark.usefixtures("numeric_interview")
async def test_api_maps_numeric_questions(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    started = await start_as_candidate(client, orchestrator)
    first = started["question"]
    assert first["kind"] == "QUESTION_KIND_NUMERIC"
    assert (first["unit"], first["decimals"]) == ("USD", 2)
    assert first["sheet"] is None and first["options"] == []
    session_id = started["session"]["session_id"]
    assert (await client.get(f"{API}/{session_id}/question")).json() == first

    answered = await client.post(
        f"{API}/{session_id}/answers",
        json={"item_id": "pmt-car-loan", "answer": "-$599.42", "idempotency_key": "n-1"},
    )
    assert answered.status_code == 200, answered.text
    second = answered.json()["next_question"]
    assert second["kind"] == "QUESTION_KIND_NUMERIC"
    # No unit and no decimals asked: an empty unit and null, not "0 decimals".
    assert (second["unit"], second["decimals"]) == ("", None)
    session = (await client.get(f"{API}/{session_id}")).json()
    assert session["turns"][0]["answer"] == "-$599.42"  # stored as typed


@pytest.mark.usefixtures("numeric_interview")
async def test_a_refused_number_is_a_400_problem_with_the_reason(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    started = await start_as_candidate(client, orchestrator)
    orchestrator.servicer.fail = (grpc.StatusCode.INVALID_ARGUMENT, REFUSAL)
    refused = await client.post(
        f"{API}/{started['session']['session_id']}/answers",
        json={"item_id": "pmt-car-loan", "answer": "3,5", "idempotency_key": "n-2"},
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == REFUSAL


async def serious_axe_violations(page: Page) -> list[dict]:
    """axe-core (bundled in the axe-playwright-python wheel) on the page: serious or critical WCAG A/AA issues."""
    import axe_playwright_python

    await page.evaluate((Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text())
    found = await page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
             .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


@pytest.mark.usefixtures("numeric_interview")
async def test_page_shows_an_accessible_number_field_used_by_keyboard(
    browser: Browser, orchestrator: FakeServer
) -> None:
    async with serve(GatewaySettings(orchestrator_address=orchestrator.address)) as url:
        page = await browser.new_page()
        try:
            await page.goto(f"{url}/#invite={orchestrator.servicer.invite('Katherine Johnson')}")
            await page.locator("#start-button").click()
            await expect(page.locator("#question-heading")).to_be_focused()

            # Found by its label, which names the unit; a decimal keypad on phones.
            field = page.get_by_label("Your answer (USD)")
            await expect(field).to_have_attribute("inputmode", "decimal")
            await expect(field).to_have_attribute("type", "text")
            await expect(field).to_have_attribute("aria-describedby", "answer-hint answer-error")
            await expect(page.locator("#answer-hint")).to_contain_text("Give it to 2 decimal places.")
            # The unit after the box is for the eye; the label already says it.
            await expect(page.locator(".numeric-row .unit")).to_have_text("USD")
            await expect(page.locator(".numeric-row .unit")).to_have_attribute("aria-hidden", "true")
            assert await serious_axe_violations(page) == []

            # Keyboard only: Tab into the field, type, Enter submits the form.
            for _ in range(20):
                if await page.evaluate("() => document.activeElement && document.activeElement.id === 'answer-input'"):
                    break
                await page.keyboard.press("Tab")
            await expect(field).to_be_focused()
            await page.keyboard.type("3,5")
            orchestrator.servicer.fail = (grpc.StatusCode.INVALID_ARGUMENT, REFUSAL)
            await page.keyboard.press("Enter")
            # The server's reason is shown, and the field is editable and focused again.
            await expect(page.locator("#error-message")).to_have_text(REFUSAL)
            orchestrator.servicer.fail = None
            await expect(field).to_be_focused()
            await expect(field).to_be_editable()
            await field.fill("1")
            await page.keyboard.press("Enter")
            await expect(page.locator("#result-heading")).to_have_text("Score: 100%")
            await expect(page.locator("#next-button")).to_be_focused()
            await page.keyboard.press("Enter")

            # The second question has no unit: a plain label and no suffix.
            await expect(page.get_by_label("Your answer (a number)")).to_be_visible()
            await expect(page.locator(".numeric-row")).to_have_count(0)
            await expect(page.locator("#answer-hint")).not_to_contain_text("decimal places")
            await page.locator("#submit-button").click()
            await expect(page.locator("#answer-error")).to_have_text("Please type a number first.")
        finally:
            await page.close()
