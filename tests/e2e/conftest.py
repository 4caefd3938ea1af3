"""One real stack (embedded PostgreSQL, Redis, Triton and the three services) for the e2e tests."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from stack.runner import Stack
from stack.settings import StackSettings

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# The load smoke tests run the benchmarks' own seeding and scenarios, which import each other
# as top-level modules (run, report, answers) from this folder.
sys.path.insert(0, str(BENCHMARKS / "load"))

from run import RATE_LIMIT_ENV, REMOTE_ENV  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# Debian's /usr/bin/chromium is a shell wrapper; Playwright needs the binary itself.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")


def _keep_local(env: pytest.MonkeyPatch) -> None:
    """Keeps an LLM endpoint of the developer's shell away from the services a test starts
    (the stack passes this process's environment on): the tests' scores come from the
    local models only, and nothing leaves 127.0.0.1."""
    for name in REMOTE_ENV:
        env.delenv(name, raising=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as env:
        _keep_local(env)
        with Stack(StackSettings.isolated(tmp_path_factory.mktemp("data"))) as running:
            yield running


@pytest.fixture(scope="module")
def unthrottled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of the module's own, without rate limits, for the load smoke tests.

    Every load generator's user comes from 127.0.0.1, and the shared ``stack`` keeps the default
    per-IP and sign-in limits that its tests check. Module scope, because the limits are lifted
    through this process's environment (the stack passes it on to the services) for as long as
    the stack runs, and the other tests' settings must not see that.
    """
    with pytest.MonkeyPatch.context() as env:
        _keep_local(env)
        for name, value in RATE_LIMIT_ENV.items():
            env.setenv(name, value)
        with Stack(StackSettings.isolated(tmp_path_factory.mktemp("load-data"))) as running:
            yield running


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def admin_tokens(client: httpx.Client) -> dict:
    """The development admin (``make up`` prints these credentials), signed in once for the
    whole session: the shared stack allows ten sign-ins a minute from one address."""
    from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD

    response = client.post("/api/v1/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    tokens: dict = response.json()
    return tokens


@pytest.fixture(scope="session")
def admin_headers(admin_tokens: dict) -> dict[str, str]:
    """The signed-in development admin's Authorization header."""
    return {"authorization": f"Bearer {admin_tokens['access_token']}"}



def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium through Playwright, headless; one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()
