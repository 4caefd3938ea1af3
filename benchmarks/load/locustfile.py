"""Load users of xlinterview: candidates and hiring managers over REST, and gRPC callers.

Run by ``benchmarks/load/run.py`` (``make bench-load``), or by hand against a running
stack::

    locust -f benchmarks/load/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8000 --invites-file invites.txt --think-time 3

Users:
    CandidateUser: takes one seeded invite, reads the question, thinks, answers (formula,
        free text or multiple choice, each with an idempotency key), now and then
        reloads the page and resumes, and finishes; then takes the next invite.
    ManagerUser: signs in, lists the dashboard and opens reports.
    OrchestratorGrpcUser: runs interviews on the orchestrator's gRPC API directly.
    ScorerGrpcUser: grades bank items on the scorer's gRPC API directly.

Each request is one row of locust's statistics, named after what it does (e.g.
``submit answer [formula]``), so the results give latency per request type.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import grpc.experimental.gevent as grpc_gevent
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.exception import StopUser

# Before any channel exists: makes grpc's blocking calls yield to other greenlets.
grpc_gevent.init_gevent()

from answers import KIND_NAMES, answer_for, rest_answer, think  # noqa: E402
from grpc_user import GrpcUser  # noqa: E402
from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD  # noqa: E402
from xlinterview.v1 import (  # noqa: E402
    common_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    scorer_pb2,
    scorer_pb2_grpc,
)

log = logging.getLogger(__name__)

# The candidate page's retry of an answer (gateway/static/app.js): these statuses, or no
# response at all (status 0), are resent with the same idempotency key after these delays.
RETRY_DELAYS_S = (1.0, 2.0, 4.0)
RETRYABLE_STATUSES = frozenset({0, 429, 502, 503, 504})
# The page again: when the gateway says the answer is saved and only its score is late, it
# resends this many times, each after the response's Retry-After.
SCORING_DELAYED_TYPE = "urn:xlinterview:problem:scoring-delayed"
SCORING_DELAYED_RESENDS = 3

REPO_ROOT = Path(__file__).resolve().parents[2]


def _scoring_delayed_wait(response: Any) -> float | None:
    """The seconds a scoring-delayed problem asks to wait before resending (None for any other reply)."""
    if response.status_code != 503:
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    if not isinstance(problem, dict) or problem.get("type") != SCORING_DELAYED_TYPE:
        return None
    try:
        return float(response.headers.get("retry-after") or 5)
    except ValueError:
        return 5.0


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("xlinterview")
    group.add_argument("--think-time", type=float, default=30.0, env_var="XLI_LOAD_THINK_S",
                       help="candidates' mean seconds between answers (uniform 0.5x-1.5x)")
    group.add_argument("--manager-think-time", type=float, default=5.0, env_var="XLI_LOAD_MANAGER_THINK_S",
                       help="hiring managers' mean seconds between page views")
    group.add_argument("--grpc-think-time", type=float, default=1.0, env_var="XLI_LOAD_GRPC_THINK_S",
                       help="gRPC users' mean seconds between calls")
    group.add_argument("--invites-file", default="", env_var="XLI_LOAD_INVITES",
                       help="invite tokens, one a line (run.py seeds them)")
    group.add_argument("--reload-probability", type=float, default=0.1, env_var="XLI_LOAD_RELOAD_P",
                       help="chance per answer that the candidate reloads the page and resumes first")
    group.add_argument("--retry-probability", type=float, default=0.05, env_var="XLI_LOAD_RETRY_P",
                       help="chance per answer that it is resent with the same idempotency key")
    group.add_argument("--managers", type=int, default=2, env_var="XLI_LOAD_MANAGERS",
                       help="hiring-manager users (the rest of -u are candidates)")
    group.add_argument("--orchestrator-users", type=int, default=1, env_var="XLI_LOAD_ORCHESTRATOR_USERS",
                       help="users calling the orchestrator over gRPC")
    group.add_argument("--probes", type=int, default=1, env_var="XLI_LOAD_PROBES",
                       help="load-balancer probes calling /healthz and /readyz once a second")
    group.add_argument("--scorer-users", type=int, default=1, env_var="XLI_LOAD_SCORER_USERS",
                       help="users calling the scorer over gRPC")
    group.add_argument("--admin-email", default=DEV_ADMIN_EMAIL, env_var="XLI_LOAD_ADMIN_EMAIL")
    group.add_argument("--admin-password", default=DEV_ADMIN_PASSWORD, env_var="XLI_LOAD_ADMIN_PASSWORD")
    group.add_argument("--scorer-address", default="127.0.0.1:50051", env_var="XLI_SCORER_ADDRESS")
    group.add_argument("--orchestrator-address", default="127.0.0.1:50052", env_var="XLI_ORCHESTRATOR_ADDRESS")


class Invites:
    """The seeded invite tokens, handed out once each (users share one process)."""

    def __init__(self) -> None:
        self._tokens: deque[str] = deque()
        self._lock = threading.Lock()
        self.exhausted = 0

    def load(self, path: str) -> None:
        """Adds the tokens of ``path`` (one a line); nothing for an empty path."""
        if path:
            self._tokens.extend(line.strip() for line in Path(path).read_text().splitlines() if line.strip())

    def take(self) -> str | None:
        """The next unused token, or None when all are used."""
        # Newest first, as when a hiring manager invites and the candidate starts soon after: the
        # dashboard's newest page then holds the interviews in progress that managers open.
        with self._lock:
            if self._tokens:
                return self._tokens.pop()
            self.exhausted += 1
            return None


INVITES = Invites()


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    INVITES.load(options.invites_file)
    # Fixed counts: the few managers and gRPC users are placed first, candidates take the rest of -u.
    ManagerUser.fixed_count = options.managers
    OrchestratorGrpcUser.fixed_count = options.orchestrator_users
    ScorerGrpcUser.fixed_count = options.scorer_users
    HealthProbeUser.fixed_count = options.probes


def proto_answer(question: orchestrator_pb2.Question | common_pb2.ScoringItem, rng: random.Random) -> tuple[str, str]:
    """``(kind, answer)`` for a question or scoring item as the protos carry it."""
    kind = KIND_NAMES.get(common_pb2.QuestionKind.Name(question.kind), "free_text")
    if isinstance(question, common_pb2.ScoringItem):
        sheet, options = question.formula.sheet, len(question.choice.options)
    else:
        sheet, options = question.sheet, len(question.options)
    rows = len(sheet.rows)
    return kind, answer_for(kind, rng, options=options, rows=rows, columns=len(sheet.rows[0].cells) if rows else 0)


@dataclass
class Interview:
    """A candidate's interview in progress."""

    session_id: str
    headers: dict[str, str]
    question: dict[str, Any]
    answered: int = 0


class CandidateUser(FastHttpUser):
    """A candidate in the browser page: invite, questions, answers, finish.

    One task run is one step of the interview; locust's wait between task runs is the
    candidate's think time.
    """

    def wait_time(self) -> float:
        return think(self.environment.parsed_options.think_time)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.interview: Interview | None = None

    def _json(self, method: str, path: str, name: str, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        """One request: ``(status, body)``, the body only for 200; anything else is a failure in the stats."""
        status, body, _ = self._request(method, path, name, **kwargs)
        return status, body

    def _request(self, method: str, path: str, name: str, **kwargs: Any) -> tuple[int, dict[str, Any] | None, float | None]:
        """Like :meth:`_json`, plus the Retry-After of a scoring-delayed answer (None otherwise)."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return response.status_code, None, _scoring_delayed_wait(response)
            body: dict[str, Any] = response.json()
            return 200, body, None

    @task
    def step(self) -> None:
        options = self.environment.parsed_options
        if self.interview is None:
            self.begin_interview()
            return
        interview = self.interview
        if self.rng.random() < options.reload_probability and not self.reload(interview):
            return
        self.answer(interview, retry=self.rng.random() < options.retry_probability)

    def begin_interview(self) -> None:
        token = INVITES.take()
        if token is None:
            log.warning("no invites left; this candidate stops (seed more with --interviews)")
            raise StopUser()
        _, started = self._json("POST", "/api/v1/invites/accept", "start interview (accept invite)",
                                json={"invite_token": token})
        if started is None or started.get("question") is None:
            return
        headers = {"authorization": f"Bearer {started['access_token']}"}
        self.interview = Interview(started["session"]["session_id"], headers, started["question"])

    def reload(self, interview: Interview) -> bool:
        """What the page does on a reload: fetch the session, then the current question.

        Returns:
            False when the interview turned out to be over (the page then shows the summary).
        """
        base = f"/api/v1/sessions/{interview.session_id}"
        self._json("GET", base, "get session (reload)", headers=interview.headers)
        status, question = self._json("GET", f"{base}/question", "get question", headers=interview.headers)
        if status == 409:
            self.finish(interview)
            return False
        if question is not None:
            interview.question = question
        return True

    def finish(self, interview: Interview) -> None:
        """Ends the interview as the page's summary does, and lets the next step take a new invite."""
        self._json("POST", f"/api/v1/sessions/{interview.session_id}/finish", "finish interview",
                   headers=interview.headers)
        self.interview = None

    def answer(self, interview: Interview, retry: bool) -> None:
        kind, text = rest_answer(interview.question, self.rng)
        body = {"item_id": interview.question["item_id"], "answer": text, "idempotency_key": str(uuid.uuid4())}
        path = f"/api/v1/sessions/{interview.session_id}/answers"
        status, result, delayed = self._request("POST", path, f"submit answer [{kind}]", json=body,
                                                headers=interview.headers)
        retries, delayed_resends = iter(RETRY_DELAYS_S), 0
        while result is None:
            # As the page does: the answer may be stored already, so resend it under the same key.
            if delayed is not None and delayed_resends < SCORING_DELAYED_RESENDS:
                delayed_resends += 1
                wait = delayed
            elif delayed is None and status in RETRYABLE_STATUSES:
                wait = next(retries, None)
            else:
                wait = None
            if wait is None:
                break
            gevent.sleep(wait)
            status, result, delayed = self._request("POST", path, "submit answer [resend after error]", json=body,
                                                    headers=interview.headers)
        if result is None:
            # Refused (e.g. 409, the interview moved on) or still failing: resume from the server's view.
            self.reload(interview)
            return
        if retry:
            # A lost response resent with the same key: must return the same answer, store nothing.
            with self.client.post(path, json=body, headers=interview.headers, name="submit answer [same key again]",
                                  catch_response=True) as again:
                if again.status_code != 200 or again.json().get("answer_id") != result["answer_id"]:
                    again.failure(f"idempotent resend differed: HTTP {again.status_code}")
        interview.answered += 1
        if result["finished"] or result.get("next_question") is None:
            self.finish(interview)
        else:
            interview.question = result["next_question"]


class ManagerUser(FastHttpUser):
    """A hiring manager on the dashboard: sign in, list interviews, open reports."""

    fixed_count = 2

    def wait_time(self) -> float:
        return think(self.environment.parsed_options.manager_think_time)

    def on_start(self) -> None:
        self.headers: dict[str, str] = {}
        self.started_ids: list[str] = []
        self.sign_in()

    def sign_in(self) -> None:
        options = self.environment.parsed_options
        with self.client.post("/api/v1/auth/login", name="sign in", catch_response=True,
                              json={"email": options.admin_email, "password": options.admin_password}) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            self.headers = {"authorization": f"Bearer {response.json()['access_token']}"}

    @task(1)
    def dashboard(self) -> None:
        with self.client.get("/api/v1/interviews?limit=100", headers=self.headers, name="dashboard list",
                             catch_response=True) as response:
            if response.status_code == 401:
                response.failure("signed out")
                self.sign_in()
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            self.started_ids = [i["interview_id"] for i in response.json() if i.get("session_id")]

    @task(4)
    def report(self) -> None:
        if not self.started_ids:
            self.dashboard()
            return
        interview_id = random.choice(self.started_ids)
        self.client.get(f"/api/v1/interviews/{interview_id}/report", headers=self.headers, name="report")


class HealthProbeUser(FastHttpUser):
    """A load balancer's probes: liveness and readiness, once a second each."""

    fixed_count = 1

    def wait_time(self) -> float:
        return 1.0

    @task
    def probe(self) -> None:
        self.client.get("/healthz", name="health (liveness)")
        self.client.get("/readyz", name="health (readiness)")


class OrchestratorGrpcUser(GrpcUser):
    """An interview run straight on the orchestrator's gRPC API (no gateway, no invite)."""

    fixed_count = 1
    address_option = "orchestrator_address"
    stub_class = orchestrator_pb2_grpc.OrchestratorStub
    # No interview yet; the first step starts one.
    session_id = ""
    question: orchestrator_pb2.Question | None = None

    @task
    def step(self) -> None:
        if self.question is None:
            started = self.call("grpc Orchestrator.StartInterview", self.stub.StartInterview,
                                orchestrator_pb2.StartInterviewRequest(candidate_name="load test"))
            if started is not None and started.HasField("question"):
                self.session_id, self.question = started.session.session_id, started.question
            return
        current = self.call("grpc Orchestrator.GetCurrentQuestion", self.stub.GetCurrentQuestion,
                            orchestrator_pb2.GetCurrentQuestionRequest(session_id=self.session_id))
        kind, text = proto_answer(current or self.question, self.rng)
        reply = self.call(f"grpc Orchestrator.SubmitAnswer [{kind}]", self.stub.SubmitAnswer,
                          orchestrator_pb2.SubmitAnswerRequest(session_id=self.session_id, item_id=self.question.item_id,
                                                               answer=text, idempotency_key=str(uuid.uuid4())))
        if reply is None or reply.finished or not reply.HasField("next_question"):
            self.call("grpc Orchestrator.FinishInterview", self.stub.FinishInterview,
                      orchestrator_pb2.FinishInterviewRequest(session_id=self.session_id))
            self.question = None
        else:
            self.question = reply.next_question


@functools.cache
def _bank_items() -> list[common_pb2.ScoringItem]:
    """Every item of the repository's question bank, as the orchestrator sends it to the scorer."""
    from orchestrator.bank import ItemVersion, load_bank, to_scoring_item

    return [to_scoring_item(ItemVersion(item, 1)) for item in load_bank(REPO_ROOT / "orchestrator" / "bank")]


class ScorerGrpcUser(GrpcUser):
    """Grades random bank items with fresh answers on the scorer's gRPC API."""

    fixed_count = 1
    address_option = "scorer_address"
    stub_class = scorer_pb2_grpc.ScorerStub

    @task
    def score(self) -> None:
        item = self.rng.choice(_bank_items())
        kind, text = proto_answer(item, self.rng)
        self.call(f"grpc Scorer.Score [{kind}]", self.stub.Score,
                  scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id=str(uuid.uuid4()), text=text)))
