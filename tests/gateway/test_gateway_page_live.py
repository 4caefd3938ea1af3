"""The candidate page's clock and live events in a real browser (Debian's chromium via
Playwright), against the fake orchestrator. The page runs on Playwright's fake clock,
so minutes pass in milliseconds."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, Route, expect

from common import session_events
from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway_fakes import FakeServer, serve
from xlinterview.v1 import orchestrator_pb2


@asynccontextmanager
async def open_invite(browser: Browser, orchestrator: FakeServer, url: str) -> AsyncIterator[Page]:
    """A page with a fake clock on a fresh invite's landing view; closed afterwards, so
    its event stream never holds the server open."""
    page = await browser.new_page()
    try:
        await page.clock.install()
        await page.goto(f"{url}/#invite={orchestrator.servicer.invite('Dorothy Vaughan')}")
        yield page
    finally:
        await page.close()


async def start_with_stream(page: Page, app: FastAPI, orchestrator: FakeServer) -> str:
    """Starts the interview on the page; returns the session once its event stream is subscribed."""
    await page.locator("#start-button").click()
    await expect(page.locator("#question-heading")).to_be_focused()
    session_id = next(iter(orchestrator.servicer.sessions))
    for _ in range(100):
        if app.state.events.subscribers(session_id):
            break
        await asyncio.sleep(0.05)
    assert app.state.events.subscribers(session_id) == 1
    return session_id


async def test_clock_ticks_visibly_but_speaks_only_at_thresholds_then_time_up_locks_the_page(
    browser: Browser, orchestrator: FakeServer
) -> None:
    orchestrator.servicer.time_limit_s = 11 * 60
    async with serve(GatewaySettings(orchestrator_address=orchestrator.address)) as url:
        async with open_invite(browser, orchestrator, url) as page:
            await expect(page.locator("#start-time")).to_contain_text("You have 11 minutes")
            await page.locator("#start-button").click()
            await expect(page.locator("#timer")).to_be_visible()
            await expect(page.locator("#timer-clock")).to_have_text(re.compile(r"^1[01]:\d\d$"))
            # Every change of what screen readers are told, in order.
            await page.evaluate(
                """() => { window.spoken = [];
                     const region = document.getElementById('timer-announce');
                     new MutationObserver(() => window.spoken.push(region.textContent))
                       .observe(region, {childList: true, characterData: true, subtree: true}); }"""
            )
            shown = set()
            for _ in range(10):  # a minute at a time, reading the visible clock each time
                await page.clock.run_for(60_000)
                shown.add(await page.locator("#timer-clock").inner_text())
            assert len(shown) == 10  # the clock moved visibly...
            # ...while screen readers heard only the thresholds.
            assert await page.evaluate("() => window.spoken") == ["10 minutes left.", "5 minutes left.", "1 minute left."]
            await expect(page.locator("#timer")).to_have_class("timer timer-low")

            await page.clock.run_for(60_000)
            await expect(page.locator("#time-up")).to_be_visible()
            await expect(page.locator("#summary-heading")).to_be_visible()
            await expect(page.locator("#answer-input")).to_be_disabled()
            await expect(page.locator("#submit-button")).to_be_disabled()
            await expect(page.locator("#timer")).to_be_hidden()
            methods = [c[0] for c in orchestrator.servicer.calls]
            assert "FinishInterview" in methods and "SubmitAnswer" not in methods


async def test_a_lost_response_is_completed_by_the_event_stream(browser: Browser, orchestrator: FakeServer) -> None:
    settings = GatewaySettings(orchestrator_address=orchestrator.address)
    app = create_app(settings)
    async with serve(settings, app) as url:
        async with open_invite(browser, orchestrator, url) as page:
            session_id = await start_with_stream(page, app, orchestrator)

            async def lose_response(route: Route) -> None:
                await route.fetch()  # the answer reaches the gateway and is scored...
                await route.abort()  # ...but its response never reaches the page

            await page.route("**/answers", lose_response)
            await page.locator("#answer-input").fill('=SUMIF(A2:A4,"East",B2:B4)')
            await page.locator("#submit-button").click()
            # The page's own resend waits on its (fake, stopped) clock: only the event can deliver this.
            await expect(page.locator("#result-heading")).to_have_text("Score: 100%")
            await expect(page.locator("#result-feedback")).to_have_text("Correct.")
            await expect(page.locator("#next-button")).to_be_focused()
            assert [c[0] for c in orchestrator.servicer.calls].count("SubmitAnswer") == 1


async def test_an_interview_cancelled_by_the_hiring_team_ends_the_open_page(browser: Browser, orchestrator: FakeServer) -> None:
    settings = GatewaySettings(orchestrator_address=orchestrator.address)
    app = create_app(settings)
    async with serve(settings, app) as url:
        async with open_invite(browser, orchestrator, url) as page:
            session_id = await start_with_stream(page, app, orchestrator)
            # What the orchestrator does when the hiring team cancels: finish the session, then publish.
            session = orchestrator.servicer.sessions[session_id]
            session.status = orchestrator_pb2.SESSION_STATUS_FINISHED
            finished = session_events.interview_finished_data(session, cancelled=True)
            await app.state.events.publish(session_id, session_events.INTERVIEW_FINISHED, finished)
            await expect(page.locator("#summary-heading")).to_be_visible()
            await expect(page.locator("#summary-cancelled")).to_have_text(
                "The hiring team ended this interview. Your answers so far are saved."
            )
            await expect(page.locator("#answer-input")).to_be_hidden()


async def test_a_late_score_lets_the_candidate_continue_by_keyboard(browser: Browser, orchestrator: FakeServer) -> None:
    orchestrator.servicer.scoring_down = True
    settings = GatewaySettings(orchestrator_address=orchestrator.address)
    app = create_app(settings)
    async with serve(settings, app) as url:
        async with open_invite(browser, orchestrator, url) as page:
            session_id = await start_with_stream(page, app, orchestrator)
            await page.locator("#answer-input").fill('=SUMIF(A2:A4,"East",B2:B4)')
            await page.keyboard.press("Enter")
            await expect(page.locator("#submit-status")).to_have_text(
                "Your answer is saved. Scoring is taking longer than usual… You can wait, or continue to the next question."
            )
            # Not "cannot be reached": the page did not take the 503 for a connection problem.
            await expect(page.locator("#error")).to_be_hidden()
            await page.locator("#continue-button").focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#question-heading")).to_have_text("Question 2 of 2")
            await expect(page.locator("#question-heading")).to_be_focused()
            await expect(page.locator("#continue-button")).to_be_hidden()
            await expect(page.locator("#submit-status")).to_have_text("")
            # The answer was sent once and stored once; its resend (on the page's stopped fake
            # clock) was dropped with the turn, so it never goes out.
            calls = [c[0] for c in orchestrator.servicer.calls]
            assert calls.count("SubmitAnswer") == 1 and calls[-1] == "GetCurrentQuestion"
            assert len(orchestrator.servicer.sessions[session_id].turns) == 1
