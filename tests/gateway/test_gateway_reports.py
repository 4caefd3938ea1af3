"""The report's ability estimate and the extra-time accommodation, against the fake."""

from __future__ import annotations

from datetime import datetime
from statistics import NormalDist

import httpx
import pytest

from gateway.routers.reports import ability_summary, level, skill_scores
from gateway.schemas import Result, staff_session_from_proto
from gateway_fakes import FakeServer, sign_in
from xlinterview.v1 import common_pb2, orchestrator_pb2

INTERVIEWS = "/api/v1/interviews"


async def run_interview(client: httpx.AsyncClient, token: str, answers: list[str], finish: bool = True) -> dict:
    """Accepts the invite, answers in order (keys k0, k1, ...) and finishes unless told
    not to; returns the accept response."""
    started = (await client.post("/api/v1/invites/accept", json={"invite_token": token})).json()
    candidate = {"authorization": f"Bearer {started['access_token']}"}
    session = f"/api/v1/sessions/{started['session']['session_id']}"
    question = started["question"]
    for i, answer in enumerate(answers):
        reply = await client.post(
            f"{session}/answers",
            json={"item_id": question["item_id"], "answer": answer, "idempotency_key": f"k{i}"},
            headers=candidate,
        )
        assert reply.status_code == 200, reply.text
        question = reply.json()["next_question"]
    if finish:
        assert (await client.post(f"{session}/finish", headers=candidate)).status_code == 200
    return started


async def test_report_has_the_ability_with_its_interval_in_numbers_and_words(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    iv = await sign_in(client, "iv@example.com")
    created = (await client.post(INTERVIEWS, json={"candidate_name": "Grace Hopper"}, headers=iv)).json()
    interview_id = created["interview"]["interview_id"]

    before = (await client.get(f"{INTERVIEWS}/{interview_id}/report", headers=iv)).json()
    assert (before["result"], before["ability"], before["skill_abilities"]) == (None, None, [])

    # One right formula answer, one wrong choice: the fake's estimate follows the scores.
    await run_interview(client, created["invite_url"].split("#invite=")[1], ['=SUMIF(A2:A4,"East",B2:B4)', "0"])
    report = (await client.get(f"{INTERVIEWS}/{interview_id}/report", headers=iv)).json()
    session_result = report["session"]["result"]
    result = report["result"]
    assert result == session_result and result["answers_scored"] == 2
    assert result["ci_low"] < result["ability"] < result["ci_high"]

    ability = report["ability"]
    normal = NormalDist()
    assert ability["percentile"] == pytest.approx(100 * normal.cdf(result["ability"]))
    assert ability["percentile_low"] == pytest.approx(100 * normal.cdf(result["ci_low"]))
    assert ability["percentile_high"] == pytest.approx(100 * normal.cdf(result["ci_high"]))
    assert ability["level"] == level(ability["percentile"])
    assert f"about {ability['percentile']:.0f}% of the reference group" in ability["summary"]
    assert f"between {ability['percentile_low']:.0f}% and {ability['percentile_high']:.0f}%" in ability["summary"]
    # Two answers leave a standard error of 0.58: too wide to call precise.
    assert ability["precision"] == "rough" and ability["summary"].endswith("only 2 scored answers, so the estimate is rough.")

    skills = {s["skill_area"]: s for s in report["skill_abilities"]}
    assert set(skills) == {"aggregation", "lookup"}
    for estimate, source in zip(report["skill_abilities"], result["skills"], strict=True):
        assert estimate["ci_low"] == pytest.approx(source["ability"] - 1.96 * source["standard_error"], abs=1e-3)
        assert estimate["ci_high"] == pytest.approx(source["ability"] + 1.96 * source["standard_error"], abs=1e-3)
    assert skills["aggregation"]["ability"] > skills["lookup"]["ability"]
    assert skills["aggregation"]["percentile"] > 50 > skills["lookup"]["percentile"]


def test_skill_means_count_each_question_once_like_the_overall_score() -> None:
    def turn(item_id: str, value: float, follow_up: bool = False) -> orchestrator_pb2.Turn:
        return orchestrator_pb2.Turn(item_id=item_id, score=common_pb2.Score(value=value), follow_up=follow_up)

    # The follow-up's score grades both answers together; the ability estimate weighs it, the means do not.
    session = staff_session_from_proto(
        orchestrator_pb2.Session(turns=[turn("why-absolute", 0.2), turn("why-absolute", 1.0, True), turn("sumifs", 0.5)])
    )
    means = {s.skill_area: (s.mean_score, s.answered) for s in skill_scores(session, {"why-absolute": "refs", "sumifs": "agg"})}
    assert means == {"refs": (0.2, 1), "agg": (0.5, 1)}


@pytest.mark.parametrize(
    ("pct", "words"),
    [(2.0, "well below average"), (20.0, "below average"), (50.0, "about average"), (80.0, "above average"), (97.0, "well above average")],
)
def test_levels_follow_the_percentile(pct: float, words: str) -> None:
    assert level(pct) == words


def test_extreme_estimates_never_claim_0_or_100_percent() -> None:
    def summary(ability: float, se: float, answers: int = 12) -> str:
        result = Result(
            ability=ability, standard_error=se, ci_low=ability - 1.96 * se, ci_high=ability + 1.96 * se,
            skills=[], stop_reason="se_target", answers_scored=answers,
        )
        return ability_summary(result).summary

    low = summary(-2.8, 0.5)
    assert low.startswith("Well below average: weaker than over 99% of the reference group")
    assert "between under 1% and 3%" in low and "0%" not in low
    high = summary(2.8, 0.25)
    assert "stronger than over 99%" in high and "between 99% and over 99%" in high and "100%" not in high
    assert "rough" not in high
    assert summary(0.0, 0.9, answers=1).endswith("Based on only 1 scored answer, so the estimate is rough.")


async def test_extra_time_reaches_the_session_deadline_and_the_lists(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    iv = await sign_in(client, "iv@example.com")
    created = await client.post(INTERVIEWS, json={"candidate_name": "Extra Time", "extra_time_percent": 50}, headers=iv)
    assert created.status_code == 201, created.text
    interview = created.json()["interview"]
    assert (interview["extra_time_percent"], interview["time_limit_seconds"]) == (50, 5400)
    sent = next(c[1] for c in orchestrator.servicer.calls if c[0] == "CreateInterview")
    assert sent.extra_time_percent == 50

    listed = (await client.get(INTERVIEWS, headers=iv)).json()
    assert [(i["candidate_name"], i["extra_time_percent"]) for i in listed] == [("Extra Time", 50)]
    token = created.json()["invite_url"].split("#invite=")[1]
    preview = (await client.post("/api/v1/invites/preview", json={"invite_token": token})).json()
    assert preview["time_limit_seconds"] == 5400

    started = (await client.post("/api/v1/invites/accept", json={"invite_token": token})).json()
    start_call = next(c[1] for c in orchestrator.servicer.calls if c[0] == "StartInterview")
    assert start_call.extra_time_percent == 50
    deadline = datetime.fromisoformat(started["session"]["deadline"])
    remaining = deadline.timestamp() - datetime.now().timestamp()
    assert 5390 < remaining <= 5400

    report = (await client.get(f"{INTERVIEWS}/{interview['interview_id']}/report", headers=iv)).json()
    assert report["interview"]["extra_time_percent"] == 50


async def test_bad_extra_time_is_400_or_422_and_nothing_is_created(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    iv = await sign_in(client, "iv@example.com")
    over_max = await client.post(INTERVIEWS, json={"candidate_name": "A", "extra_time_percent": 201}, headers=iv)
    assert over_max.status_code == 400 and "extra_time_percent" in over_max.json()["detail"]
    for bad in (-5, "lots", 5000):
        response = await client.post(INTERVIEWS, json={"candidate_name": "A", "extra_time_percent": bad}, headers=iv)
        assert response.status_code == 422, response.text
    assert orchestrator.servicer.interviews == {}


async def test_answers_flagged_for_review_are_marked_for_staff_and_hidden_from_the_candidate(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    iv = await sign_in(client, "iv@example.com")
    created = (await client.post(INTERVIEWS, json={"candidate_name": "Flagged"}, headers=iv)).json()
    interview_id = created["interview"]["interview_id"]
    started = await run_interview(client, created["invite_url"].split("#invite=")[1], ["=1", "1"], finish=False)
    candidate = {"authorization": f"Bearer {started['access_token']}"}
    session_id = started["session"]["session_id"]
    session = f"/api/v1/sessions/{session_id}"

    # The scorer flagged the first answer (as the real one does on low confidence).
    reason = "confidence 0.41 is below the review threshold 0.6"
    fake = orchestrator.servicer
    for score in (fake.sessions[session_id].turns[0].score, fake.by_key["k0"].score):
        score.needs_review, score.review_reason = True, reason
    fake.interviews[interview_id].answers_needing_review = 1

    report = (await client.get(f"{INTERVIEWS}/{interview_id}/report", headers=iv)).json()
    assert report["answers_needing_review"] == 1
    assert [(t["score"]["needs_review"], t["score"]["review_reason"]) for t in report["session"]["turns"]] == [
        (True, reason),
        (False, ""),
    ]
    listed = (await client.get(INTERVIEWS, headers=iv)).json()
    assert [i["answers_needing_review"] for i in listed if i["interview_id"] == interview_id] == [1]

    # Everything the candidate can read: the session, a replayed answer, the finish.
    seen = [
        await client.get(session, headers=candidate),
        await client.post(
            f"{session}/answers",
            json={"item_id": started["question"]["item_id"], "answer": "=1", "idempotency_key": "k0"},
            headers=candidate,
        ),
        await client.post(f"{session}/finish", headers=candidate),
    ]
    for response in seen:
        assert response.status_code == 200, response.text
        assert "review" not in response.text and "0.41" not in response.text
    assert seen[1].json()["score"]["feedback"] == "Not quite."
