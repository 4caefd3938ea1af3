"""The candidate page in a real browser (Debian's chromium via Playwright) on the real stack.

Keyboard only: every step is a key press, as a candidate who cannot use a mouse would do it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from stack.runner import Stack

pytestmark = pytest.mark.e2e

# Debian's /usr/bin/chromium is a shell wrapper; Playwright needs the binary itself.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")


def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


def tab_until(page: Page, selector: str, limit: int = 20) -> None:
    """Presses Tab until the focused element matches ``selector``."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def answer_current_question(page: Page) -> None:
    expect(page.locator("#question-heading")).to_be_focused()
    if page.locator('input[name="choice"]').count():
        tab_until(page, 'input[name="choice"]')
        page.keyboard.press("Space")
    else:
        tab_until(page, "#answer-input")
        is_formula = page.evaluate("() => document.activeElement.tagName === 'INPUT'")
        page.keyboard.type("=1+1" if is_formula else "A relative reference shifts when copied; $A$1 stays fixed.")
    tab_until(page, "#submit-button")
    page.keyboard.press("Enter")
    expect(page.locator("#result-heading")).to_be_visible(timeout=20_000)
    # Every score shown says which signals produced it.
    expect(page.locator("#result-signals")).not_to_be_empty()


def test_keyboard_only_interview_with_a_reload(stack: Stack, browser: Browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.gateway_url + "/")

    tab_until(page, "#candidate-name")
    page.keyboard.type("Grace Hopper")
    page.keyboard.press("Enter")
    expect(page.locator("#question-heading")).to_contain_text("Question 1 of")
    total = int(page.locator("#question-heading").inner_text().rsplit(" ", 1)[-1])

    answer_current_question(page)
    first_feedback = page.locator("#result-feedback").inner_text()

    # A refresh resumes exactly where the candidate was: the scored first answer.
    page.reload()
    expect(page.locator("#result-feedback")).to_have_text(first_feedback)
    expect(page.locator("#question-heading")).to_contain_text("Question 1 of")
    tab_until(page, "#next-button")

    for position in range(2, total + 1):
        expect(page.locator("#next-button")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#question-heading")).to_contain_text(f"Question {position} of {total}")
        answer_current_question(page)

    expect(page.locator("#next-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#summary-heading")).to_be_visible(timeout=10_000)
    expect(page.locator("#summary-turns li")).to_have_count(total)
    assert errors == []
