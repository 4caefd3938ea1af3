"""A local OpenAI-compatible chat-completions server for the LLM-judge tests.

A real HTTP server (FastAPI under uvicorn, on a free 127.0.0.1 port, in a thread) that records
every request and answers deterministically, so tests exercise the ``openai`` client, the
wire format and the judge's parsing for real. Its judge is deliberately gullible: it awards
full marks to any answer that asks for them, so a canary test shows that the *system* (the
injection scan and the conservative combination) gives zero lift even when the LLM is fooled.

Answers containing these words change its behaviour: ``MALFORMED`` (a reply that is not
JSON), ``OUT OF RANGE`` (a grade above the scale), ``SLOW`` (the verdict comes after
:attr:`FakeServer.slow_s` seconds).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from scorer.training.text import content_keys

READING = "Reading of the rubric: a full-marks answer names the lookup column and the returned row value."


def _completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _fake_verdict(messages: list[dict[str, str]]) -> str:
    """A deterministic, gullible judge: keyword overlap with the references, or full marks if asked."""
    match = re.search(r"<answer-([0-9a-f]+)>\n(.*)\n</answer-\1>", messages[-1]["content"], flags=re.DOTALL)
    assert match, "the answer must arrive between nonce markers"
    answer = json.loads(match.group(2))
    if "MALFORMED" in answer:
        return "I think this is about a 4."
    if "OUT OF RANGE" in answer:
        return json.dumps({"grade": 7, "criteria_met": [], "rationale": "x", "injection_attempt": False})
    if re.search(r"full|5/5|ignore|maximum|perfect|grader", answer, flags=re.IGNORECASE):
        grade = 5.0
    else:
        refs = messages[1]["content"].split("Reference answers:")[1]
        wanted = set(content_keys(refs))
        grade = round(5.0 * len(wanted & set(content_keys(answer))) / max(len(wanted), 1), 2)
    return json.dumps({"grade": grade, "criteria_met": [], "rationale": "keyword overlap", "injection_attempt": False})


class FakeServer:
    """An OpenAI-compatible /v1/chat/completions on a free loopback port, recording requests."""

    def __init__(self, slow_s: float = 5.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.slow_s = slow_s
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append(body)
            if body.get("response_format") is None:
                return _completion(READING, body["model"])
            if "SLOW" in body["messages"][-1]["content"]:
                await asyncio.sleep(self.slow_s)
            return _completion(_fake_verdict(body["messages"]), body["model"])

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client (``OPENAI_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
