"""Auth, roles, ownership, invites, reports and rate limits of the gateway, against the fake."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest

from gateway.app import create_app
from gateway.auth import TokenService
from gateway.ratelimit import Check, MemoryLimiter, RedisLimiter, enforce
from gateway.problems import ProblemError
from gateway.settings import DEV_JWT_SECRET, GatewaySettings, InsecureSettings
from gateway_fakes import STAFF, FakeServer, sign_in, start_as_candidate

INTERVIEWS = "/api/v1/interviews"


def problem_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict = response.json()
    assert body["status"] == status and "Traceback" not in response.text
    return body


async def create_interview(client: httpx.AsyncClient, headers: dict[str, str], name: str = "Ada Lovelace") -> dict:
    response = await client.post(INTERVIEWS, json={"candidate_name": name}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict = response.json()
    return created


# ------------------------------------------------------------------ settings


def test_production_refuses_the_default_jwt_secret_and_in_process_limits() -> None:
    with pytest.raises(InsecureSettings, match="XLI_JWT_SECRET"):
        create_app(GatewaySettings(environment="production", redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(InsecureSettings, match="REDIS_URL"):
        create_app(GatewaySettings(environment="production", jwt_secret="s" * 40))
    create_app(GatewaySettings(environment="production", jwt_secret="s" * 40, redis_url="redis://127.0.0.1:1/0"))
    create_app(GatewaySettings(environment="development"))


# ------------------------------------------------------------------ sign-in and tokens


async def test_login_refresh_and_me(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    login = await client.post("/api/v1/auth/login", json={"email": "iv@example.com", "password": STAFF["iv@example.com"][2]})
    assert login.status_code == 200, login.text
    pair = login.json()
    assert pair["user"]["role"] == "ROLE_INTERVIEWER" and pair["token_type"] == "bearer"
    me = await client.get("/api/v1/auth/me", headers={"authorization": f"Bearer {pair['access_token']}"})
    assert me.json()["email"] == "iv@example.com"

    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != pair["access_token"]
    # A refresh token is not an access token, and an access token cannot refresh.
    problem_of(await client.get("/api/v1/auth/me", headers={"authorization": f"Bearer {pair['refresh_token']}"}), 401)
    problem_of(await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]}), 401)


async def test_wrong_password_and_bad_tokens_are_401(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    wrong = await client.post("/api/v1/auth/login", json={"email": "iv@example.com", "password": "nope"})
    assert problem_of(wrong, 401)["detail"] == "wrong email or password"
    headers = await sign_in(client, "admin@example.com")
    # Used first, so it is in the verified-token cache: a near copy must still fail.
    assert (await client.get(INTERVIEWS, headers=headers)).status_code == 200
    token = headers["authorization"].split()[1]
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    forged_role = jwt.encode(
        {"iss": "xlinterview-gateway", "sub": "x", "typ": "access", "role": "admin", "iat": 0, "exp": time.time() + 60},
        "not-the-secret-but-long-enough-for-hs256",
        algorithm="HS256",
    )
    expired = jwt.encode(
        {"iss": "xlinterview-gateway", "sub": "x", "typ": "access", "role": "admin", "iat": 0, "exp": 1},
        DEV_JWT_SECRET,
        algorithm="HS256",
    )
    unsigned = jwt.encode({"iss": "xlinterview-gateway", "sub": "x", "typ": "access", "role": "admin"}, None, algorithm="none")
    for bad in (tampered, forged_role, expired, unsigned, "garbage"):
        response = await client.get(INTERVIEWS, headers={"authorization": f"Bearer {bad}"})
        problem_of(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    problem_of(await client.get(INTERVIEWS), 401)
    assert [c[0] for c in orchestrator.servicer.calls].count("ListInterviews") == 1  # the valid token's only


def test_verified_tokens_are_remembered_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenService(DEV_JWT_SECRET, 60, 60, 60)
    monkeypatch.setattr(TokenService, "VERIFIED_CACHE_SIZE", 2)
    token = tokens.candidate_token("iv-1", "s-1")
    first = tokens.principal(token)
    decoded = []
    monkeypatch.setattr(tokens, "decode", lambda *a: decoded.append(a))  # the cache must not decode again
    assert tokens.principal(token) is first and decoded == []
    # Past its exp the remembered token is refused, as PyJWT would refuse it.
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(ProblemError, match="expired") as caught:
        tokens.principal(token)
    assert caught.value.status == 401 and token not in tokens._verified


def test_the_verified_token_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenService(DEV_JWT_SECRET, 60, 60, 60)
    monkeypatch.setattr(TokenService, "VERIFIED_CACHE_SIZE", 2)
    issued = [tokens.candidate_token("iv", f"s-{n}") for n in range(3)]
    for token in issued:
        tokens.principal(token)
    assert list(tokens._verified) == issued[1:]  # the oldest went first
    with pytest.raises(ProblemError):
        tokens.principal("not.a.token")
    assert len(tokens._verified) == 2  # failures are not remembered


# ------------------------------------------------------------------ roles and ownership


async def test_roles_and_ownership(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    admin = await sign_in(client, "admin@example.com")
    iv = await sign_in(client, "iv@example.com")
    iv2 = await sign_in(client, "iv2@example.com")
    analyst = await sign_in(client, "an@example.com")

    mine = (await create_interview(client, iv, "Owned by iv"))["interview"]
    assert mine["owner_user_id"] == STAFF["iv@example.com"][0] and mine["status"] == "INTERVIEW_STATUS_INVITED"
    theirs = (await create_interview(client, iv2, "Owned by iv2"))["interview"]

    # Analysts read but never write; interviewers see only their own.
    problem_of(await client.post(INTERVIEWS, json={"candidate_name": "X"}, headers=analyst), 403)
    listed = (await client.get(INTERVIEWS, headers=iv)).json()
    assert [i["interview_id"] for i in listed] == [mine["interview_id"]]
    assert len((await client.get(INTERVIEWS, headers=analyst)).json()) == 2
    assert len((await client.get(INTERVIEWS, headers=admin)).json()) == 2
    problem_of(await client.get(f"{INTERVIEWS}/{theirs['interview_id']}", headers=iv), 404)
    problem_of(await client.post(f"{INTERVIEWS}/{theirs['interview_id']}/cancel", headers=iv), 404)
    problem_of(await client.get(f"{INTERVIEWS}/{theirs['interview_id']}/report", headers=iv), 404)
    assert (await client.get(f"{INTERVIEWS}/{theirs['interview_id']}", headers=analyst)).status_code == 200
    problem_of(await client.post(f"{INTERVIEWS}/{theirs['interview_id']}/cancel", headers=analyst), 403)
    cancelled = await client.post(f"{INTERVIEWS}/{theirs['interview_id']}/cancel", headers=iv2)
    assert cancelled.json()["status"] == "INTERVIEW_STATUS_CANCELLED"

    # Users and API keys are for admins alone; candidates get nowhere on staff endpoints.
    for headers in (iv, analyst):
        problem_of(await client.get("/api/v1/api-keys", headers=headers), 403)
        problem_of(await client.get("/api/v1/users", headers=headers), 403)
    await start_as_candidate(client, orchestrator)
    problem_of(await client.get(INTERVIEWS), 403)
    problem_of(await client.get("/api/v1/bank/items"), 403)
    # And staff tokens do not open a candidate's session.
    problem_of(await client.get("/api/v1/sessions/s1", headers=admin), 403)


async def test_api_keys_act_with_their_role_until_revoked(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    admin = await sign_in(client, "admin@example.com")
    issued = (await client.post("/api/v1/api-keys", json={"name": "ats", "role": "ROLE_INTERVIEWER"}, headers=admin)).json()
    key = {"x-api-key": issued["secret"]}
    created = await create_interview(client, key, "Via API key")
    assert created["interview"]["owner_user_id"] == STAFF["admin@example.com"][0]
    problem_of(await client.get("/api/v1/api-keys", headers=key), 403)

    rotated = (await client.post(f"/api/v1/api-keys/{issued['key']['key_id']}/rotate", headers=admin)).json()
    problem_of(await client.get(INTERVIEWS, headers=key), 401)
    assert (await client.get(INTERVIEWS, headers={"x-api-key": rotated["secret"]})).status_code == 200
    revoked = await client.post(f"/api/v1/api-keys/{issued['key']['key_id']}/revoke", headers=admin)
    assert revoked.json()["revoked"] is True
    problem_of(await client.get(INTERVIEWS, headers={"x-api-key": rotated["secret"]}), 401)
    problem_of(await client.post("/api/v1/api-keys/not-hex!/revoke", headers=admin), 422)


# ------------------------------------------------------------------ invites and reports


async def test_invite_link_starts_once_and_the_report_shows_the_answers(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    iv = await sign_in(client, "iv@example.com")
    created = await create_interview(client, iv, "Grace Hopper")
    url = created["invite_url"]
    assert url.startswith("http://gateway.test/#invite=")
    token = url.split("#invite=", 1)[1]
    assert "invite_token" not in created  # the link is the only copy handed out

    preview = await client.post("/api/v1/invites/preview", json={"invite_token": token})
    assert preview.json()["candidate_name"] == "Grace Hopper"
    started = await client.post("/api/v1/invites/accept", json={"invite_token": token})
    assert started.status_code == 200
    body = started.json()
    again = await client.post("/api/v1/invites/accept", json={"invite_token": token})
    assert problem_of(again, 409)["detail"] == "this invite link has already been used"
    problem_of(await client.post("/api/v1/invites/accept", json={"invite_token": "unknown"}), 404)

    candidate = {"authorization": f"Bearer {body['access_token']}"}
    session = f"/api/v1/sessions/{body['session']['session_id']}"
    answered = await client.post(
        f"{session}/answers", json={"item_id": "sum-east", "answer": '=SUMIF(A2:A4,"East",B2:B4)', "idempotency_key": "k"}, headers=candidate
    )
    assert answered.status_code == 200

    report = await client.get(f"{INTERVIEWS}/{body['interview_id']}/report", headers=iv)
    assert report.status_code == 200, report.text
    data = report.json()
    assert data["interview"]["candidate_name"] == "Grace Hopper"
    assert [t["answer"] for t in data["session"]["turns"]] == ['=SUMIF(A2:A4,"East",B2:B4)']
    assert data["skills"] == [{"skill_area": "aggregation", "mean_score": 1.0, "answered": 1}]
    assert data["item_skills"] == {"sum-east": "aggregation"}
    # The skill areas come with the session's turns; the bank is not read for a report.
    assert "ListBankItems" not in [method for method, *_ in orchestrator.servicer.calls]


# ------------------------------------------------------------------ rate limits


async def test_sign_in_attempts_are_limited_per_ip_with_retry_after(orchestrator: FakeServer, make_client) -> None:
    async with make_client(orchestrator.address, rate_limit_login_per_min=2) as client:
        for _ in range(2):
            assert (await client.post("/api/v1/auth/login", json={"email": "a@b.c", "password": "x"})).status_code == 401
        limited = await client.post("/api/v1/auth/login", json={"email": "iv@example.com", "password": STAFF["iv@example.com"][2]})
        problem_of(limited, 429)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert [c[0] for c in orchestrator.servicer.calls].count("Authenticate") == 2


async def test_candidate_sessions_are_limited(orchestrator: FakeServer, make_client) -> None:
    async with make_client(orchestrator.address, rate_limit_candidate_per_min=3) as client:
        session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
        statuses = [(await client.get(f"/api/v1/sessions/{session_id}")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]


async def test_bad_tokens_count_against_the_ip_and_good_ones_against_their_session_once(
    orchestrator: FakeServer, make_client
) -> None:
    async with make_client(orchestrator.address, rate_limit_ip_per_min=6, rate_limit_candidate_per_min=2) as client:
        session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]  # 1 IP hit
        bad = {"authorization": "Bearer not-a-token"}
        assert [(await client.get(f"/api/v1/sessions/{session_id}", headers=bad)).status_code for _ in range(2)] == [401, 401]
        # The candidate's token (start_as_candidate set it on the client) counts once a request.
        assert [(await client.get(f"/api/v1/sessions/{session_id}")).status_code for _ in range(3)] == [200, 200, 429]
        # Six hits on the IP so far: the next request is over the IP's limit, token or not.
        problem_of(await client.get(f"/api/v1/sessions/{session_id}", headers=bad), 429)


async def test_redis_limiter_counts_across_clients_and_expires(tmp_path: Path) -> None:
    from stack.backing import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "redis") as server:
        first, second = RedisLimiter(server.url), RedisLimiter(server.url)
        try:
            await enforce(first, Check("ip", "10.0.0.1", 2))
            await enforce(second, Check("ip", "10.0.0.1", 2))  # a second gateway shares the count
            with pytest.raises(ProblemError) as caught:
                await enforce(first, Check("ip", "10.0.0.1", 2))
            assert caught.value.status == 429 and 1 <= int(caught.value.headers["Retry-After"]) <= 60
            await enforce(first, Check("ip", "10.0.0.2", 2))  # another key has its own window
            await check_several_limits_in_one_call(first)
        finally:
            await first.close()
            await second.close()
    # Redis gone: requests pass (and are logged) rather than fail.
    down = RedisLimiter(server.url)
    await enforce(down, Check("ip", "10.0.0.1", 0), Check("candidate", "s", 0))
    await down.close()


async def check_several_limits_in_one_call(limiter: MemoryLimiter | RedisLimiter) -> None:
    """Counts in order and stops at the first limit exceeded, as separate checks would."""
    ip, session = Check("ip", "10.9.9.9", 2), Check("candidate", "several", 1)
    assert await limiter.hit([ip, session]) is None
    refused = await limiter.hit([ip, session])  # the session's second request
    assert refused is not None and refused[0] == 1 and 0 < refused[1] <= 60
    refused = await limiter.hit([ip, session])  # the IP's third: the session is not counted again
    assert refused is not None and refused[0] == 0
    assert await limiter.hit([Check("candidate", "several", 3)]) is None  # 3rd hit: 2 counted before
    assert await limiter.hit([Check("candidate", "several", 3)]) is not None


async def test_memory_limiter_window_resets() -> None:
    limiter = MemoryLimiter()
    check = Check("ip", "k", 2)
    assert await limiter.hit([check]) is None
    assert await limiter.hit([check]) is None
    assert await limiter.hit([check]) == (0, pytest.approx(60, abs=1))
    limiter._windows["ip:k"] = (0.0, 3)  # the window has ended
    assert await limiter.hit([check]) is None
    await check_several_limits_in_one_call(MemoryLimiter())
