"""The review queue page in a real browser (Debian's chromium via Playwright) on the real
stack: an answer the scorer flags is graded with the keyboard only, and the report then
shows the reviewer's grade as the answer's score."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import Browser, expect

from e2e_helpers import accept_invite, assert_accessible, create_invite, tab_until
from orchestrator.bank import ChoiceItem, FormulaItem, NumericItem, load_bank
from orchestrator.settings import DEFAULT_BANK_DIR
from stack.runner import Stack

pytestmark = pytest.mark.e2e

# Not English: the scorer's guard scores it 0 and flags it for a human (scorer/guards.py).
NOT_ENGLISH = "Относительная ссылка меняется при копировании формулы, а абсолютная ссылка остаётся на месте."
COMMENT = "Right idea, written in Russian: relative references shift when copied, absolute ones stay."
RELATIVE_VS_ABSOLUTE = "A relative reference shifts when copied; $A$1 stays fixed."


def right_answers() -> dict[str, str]:
    """A right answer to every formula, multiple-choice and numeric question of the bank.

    Free-text questions are hard (authored difficulty 3 to 5), so the adaptive engine asks
    them of a candidate who has been answering well; wrong answers lead to easy formula
    questions only.
    """
    answers: dict[str, str] = {}
    for item in load_bank(DEFAULT_BANK_DIR):
        if isinstance(item, FormulaItem):
            answers[item.id] = item.formula.reference_formula
        elif isinstance(item, ChoiceItem):
            answers[item.id] = str(item.choice.correct_index)
        elif isinstance(item, NumericItem):
            answers[item.id] = repr(item.numeric.expected)
    return answers


def interview_with_a_flagged_answer(client: httpx.Client, admin_headers: dict[str, str], name: str) -> tuple[str, str]:
    """Answers a new interview over the API, right except for the first free-text question,
    which gets Russian; returns the interview's id and the id of that answer."""
    right = right_answers()
    created = create_invite(client, admin_headers, name)
    started, candidate = accept_invite(client, created["invite_url"])
    session_id = started["session"]["session_id"]
    question, flagged = started["question"], ""
    while question:
        if question["kind"] == "QUESTION_KIND_FREE_TEXT":
            text = RELATIVE_VS_ABSOLUTE if flagged or question.get("follow_up") else NOT_ENGLISH
        else:
            text = right.get(question["item_id"], "=1+1")
        response = client.post(
            f"/api/v1/sessions/{session_id}/answers",
            json={"item_id": question["item_id"], "answer": text, "idempotency_key": question["item_id"]},
            headers=candidate,
        )
        assert response.status_code == 200, response.text
        reply = response.json()
        if text == NOT_ENGLISH:
            flagged = reply["answer_id"]
        question = reply["next_question"]
    assert flagged, "the interview asked no free-text question, so nothing was answered in Russian"
    return created["interview"]["interview_id"], flagged


def queued(client: httpx.Client, admin_headers: dict[str, str]) -> dict[str, dict]:
    response = client.get("/api/v1/reviews", params={"limit": 500}, headers=admin_headers)
    assert response.status_code == 200, response.text
    return {task["answer_id"]: task for task in response.json()["tasks"]}


def test_keyboard_only_grade_in_the_review_queue(
    stack: Stack, browser: Browser, client: httpx.Client, admin_tokens: dict, admin_headers: dict[str, str]
) -> None:
    interview_id, answer_id = interview_with_a_flagged_answer(client, admin_headers, "Ada Reviewed")
    # The premise: a non-English free-text answer is scored 0 and waits for a reviewer.
    task = queued(client, admin_headers).get(answer_id)
    assert task is not None, "the non-English answer is not in the review queue"
    assert task["model_score"]["needs_review"] and task["model_score"]["value"] == 0, task["model_score"]
    assert task["answer"] == NOT_ENGLISH and task["interview_id"] == interview_id

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The tab is signed in as the session's admin, as the dashboard's sign-in leaves it
    # (gateway/static/staff.js): another sign-in here would meet the stack's sign-in limit,
    # which the candidate page's tests use up. The header links to the queue.
    page.add_init_script(
        "sessionStorage.setItem('xli.staff.tokens', JSON.stringify(%s))"
        % json.dumps({"access": admin_tokens["access_token"], "refresh": admin_tokens["refresh_token"], "user": admin_tokens["user"]})
    )
    page.goto(stack.gateway_url + "/dashboard")
    expect(page.locator("#view-main")).to_be_visible()
    expect(page.locator("#review-link")).to_contain_text("waiting")
    tab_until(page, "#review-link")
    expect(page.locator("#review-link")).to_have_attribute("href", "/dashboard/review")

    # The report marks the flagged answer and links to the queue.
    page.goto(f"{stack.gateway_url}/dashboard/report?id={interview_id}")
    turn = page.locator("#answers > li", has=page.locator(".answer-block", has_text=NOT_ENGLISH))
    expect(turn).to_contain_text("Flagged for human review")
    expect(turn.locator("a.review-it")).to_have_attribute("href", "/dashboard/review")
    tab_until(page, "a.review-it", limit=200)
    page.keyboard.press("Enter")

    # The queue: the answer's card with what a reviewer needs.
    expect(page.locator("#queue-heading")).to_be_focused()
    assert page.url.endswith("/dashboard/review")
    expect(page.locator("#queue-count")).to_contain_text("waiting for review")
    card = page.locator(f'li.review-task[data-answer-id="{answer_id}"]')
    expect(card.locator("h2")).to_contain_text("Ada Reviewed")
    expect(card.locator(".answer-block")).to_have_text(NOT_ENGLISH)
    expect(card).to_contain_text("What a right answer looks like")
    expect(card.locator(".overall")).to_contain_text("Score 0% · confidence")
    expect(card.get_by_role("link", name="Report for Ada Reviewed")).to_have_attribute(
        "href", f"/dashboard/report?id={interview_id}"
    )
    assert_accessible(page, "review queue")

    # Grade it 4 of 5 with the keyboard: Tab into the radio group, arrows to choose.
    tab_until(page, f'li.review-task[data-answer-id="{answer_id}"] input[type="radio"]', limit=400)
    expect(card.locator('input[type="radio"][value="0"]')).to_be_focused()
    page.keyboard.press("Space")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    expect(card.locator('input[type="radio"][value="4"]')).to_be_checked()
    page.keyboard.press("Tab")
    expect(card.get_by_label("Feedback (optional; kept with the grade, and the candidate may see it)")).to_be_focused()
    page.keyboard.type(COMMENT)
    page.keyboard.press("Tab")
    expect(card.get_by_role("button", name="Save grade")).to_be_focused()
    page.keyboard.press("Enter")

    expect(card.get_by_role("status")).to_have_text("Saved: 4 of 5.")
    expect(card.get_by_role("button", name="Save grade")).to_be_disabled()
    # Focus moves on: to the next card still to grade, or to the final status.
    expect(page.locator("li.review-task:not(.reviewed) h2:focus, #done-status:focus")).to_have_count(1)
    assert_accessible(page, "review queue after a grade")
    assert answer_id not in queued(client, admin_headers)

    # The report now shows the reviewer's grade as the answer's score.
    page.goto(f"{stack.gateway_url}/dashboard/report?id={interview_id}")
    expect(turn.locator(".overall")).to_contain_text("Score 80% · confidence 100%")
    expect(turn.locator(".reviewed-label")).to_have_text("Graded by a reviewer")
    expect(turn).to_contain_text(f"Feedback: {COMMENT}")
    expect(turn.locator("a.review-it")).to_have_count(0)
    assert_accessible(page, "report with a reviewed answer")
    assert errors == []
