"""The candidate page and the hiring dashboard in a real browser (Debian's chromium via
Playwright) on the real stack, with an axe-core accessibility check on every screen.

The candidate's interview is keyboard only: every step is a key press, as a candidate who
cannot use a mouse would do it.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from e2e_helpers import accept_invite, assert_accessible, create_invite, tab_until
from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD
from stack.runner import Stack

pytestmark = pytest.mark.e2e


def answer_current_question(page: Page) -> None:
    expect(page.locator("#question-heading")).to_be_focused()
    if page.locator('input[name="choice"]').count():
        tab_until(page, 'input[name="choice"]')
        page.keyboard.press("Space")
    else:
        tab_until(page, "#answer-input")
        is_number = page.evaluate("() => document.activeElement.inputMode === 'decimal'")
        is_formula = page.evaluate("() => document.activeElement.tagName === 'INPUT'")
        if is_number:
            page.keyboard.type("42")
        else:
            page.keyboard.type("=1+1" if is_formula else "A relative reference shifts when copied; $A$1 stays fixed.")
    tab_until(page, "#submit-button")
    page.keyboard.press("Enter")
    expect(page.locator("#result-heading")).to_be_visible(timeout=20_000)
    # Every score shown says which signals produced it.
    expect(page.locator("#result-signals")).not_to_be_empty()


def test_keyboard_only_interview_with_a_reload(
    stack: Stack, browser: Browser, client: httpx.Client, admin_headers: dict[str, str]
) -> None:
    invite_url = create_invite(client, admin_headers, "Grace Hopper")["invite_url"]
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(invite_url)

    # The landing page greets the candidate and says what to expect; the token leaves the address bar.
    expect(page.locator("#start-greeting")).to_have_text("Hello Grace Hopper.")
    assert "invite" not in page.url
    assert_accessible(page, "invite landing")
    tab_until(page, "#start-button")
    page.keyboard.press("Enter")
    expect(page.locator("#question-heading")).to_contain_text("Question 1 of")
    total = int(page.locator("#question-heading").inner_text().rsplit(" ", 1)[-1])
    assert_accessible(page, "first question")

    # A draft survives a reload before it is submitted.
    if page.locator("#answer-input").count():
        tab_until(page, "#answer-input")
        page.keyboard.type("=SUM(")
        page.reload()
        expect(page.locator("#answer-input")).to_have_value("=SUM(")
        page.locator("#answer-input").fill("")
        page.locator("#question-heading").focus()

    answer_current_question(page)
    assert_accessible(page, "feedback")
    first_feedback = page.locator("#result-feedback").inner_text()

    # A refresh resumes exactly where the candidate was: the scored first answer.
    page.reload()
    expect(page.locator("#result-feedback")).to_have_text(first_feedback)
    expect(page.locator("#question-heading")).to_contain_text("Question 1 of")
    tab_until(page, "#next-button")

    # An answer that misses an important rubric point gets one follow-up, which keeps
    # its question's number; the engine may also stop before the total.
    position, turns = 1, 1
    while page.locator("#next-button").inner_text() == "Next question":
        expect(page.locator("#next-button")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#question-heading")).to_contain_text(f" of {total}")
        heading = page.locator("#question-heading").inner_text()
        if heading.endswith("follow-up"):
            assert heading.startswith(f"Question {position} of {total}"), heading
            expect(page.locator("#question-context")).to_be_visible()
        else:
            position += 1
            assert heading == f"Question {position} of {total}", heading
        answer_current_question(page)
        turns += 1
    assert position <= total

    expect(page.locator("#next-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#summary-heading")).to_be_visible(timeout=10_000)
    expect(page.locator("#summary-turns li")).to_have_count(turns)
    assert_accessible(page, "summary")

    # The used invite cannot start a second interview, even in a fresh browser context.
    other = browser.new_page()
    other.goto(invite_url)
    expect(other.locator("#error-message")).to_contain_text("already been used")
    other.close()
    assert errors == []


def test_dashboard_creates_an_invite_and_shows_the_report(stack: Stack, browser: Browser, client: httpx.Client) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.gateway_url + "/dashboard")
    assert_accessible(page, "sign-in")
    page.locator("#login-email").fill(DEV_ADMIN_EMAIL)
    page.locator("#login-password").fill(DEV_ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#main-heading")).to_be_visible()

    page.locator("#create-name").fill("Katherine Johnson")
    page.locator("#create-email").fill("kj@example.com")
    page.locator("#create-button").click()
    expect(page.locator("#invite-heading")).to_be_focused()
    invite_url = page.locator("#invite-url").input_value()
    assert "#invite=" in invite_url
    expect(page.locator("#interview-rows")).to_contain_text("Katherine Johnson")
    assert_accessible(page, "dashboard")

    # The candidate answers through the API here; the keyboard test covers the page.
    started, candidate = accept_invite(client, invite_url)
    question, answers, follow_ups = started["question"], [], []
    # A free-text answer that misses rubric points may get a follow-up, which the report numbers with its question.
    by_kind = {
        "QUESTION_KIND_MULTIPLE_CHOICE": "0",
        "QUESTION_KIND_NUMERIC": "42",
        "QUESTION_KIND_FREE_TEXT": "A relative reference shifts when copied; $A$1 stays fixed.",
    }
    while question:
        text = by_kind.get(question["kind"], "=1+1")
        follow_ups.append(bool(question.get("follow_up")))
        reply = client.post(
            f"/api/v1/sessions/{started['session']['session_id']}/answers",
            json={"item_id": question["item_id"], "answer": text, "idempotency_key": question["item_id"]},
            headers=candidate,
        ).json()
        answers.append(text)
        question = reply["next_question"]

    page.reload()
    row = page.locator("#interview-rows tr", has_text="Katherine Johnson")
    expect(row).to_contain_text("Finished")
    row.get_by_role("link").click()
    expect(page.locator("#report-heading")).to_have_text("Report: Katherine Johnson")
    expect(page.locator("#answers > li")).to_have_count(len(answers))
    labels, number = [], 0
    for follow_up in follow_ups:
        number += not follow_up
        labels.append(f"Question {number}: follow-up" if follow_up else f"Question {number}")
    headings = page.locator("#answers > li h3").all_inner_texts()
    assert [h.split(" · ")[0] for h in headings] == labels
    expect(page.locator("#report-answered")).to_have_text(str(number))
    expect(page.locator("#answers")).to_contain_text("Scored by:")
    expect(page.locator("#skills-rows tr").first).to_be_visible()
    expect(page.locator("#skills-chart .main-svg").first).to_be_attached()
    assert_accessible(page, "report")
    # The printable version drops the page chrome.
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    assert errors == []
