"""Scorer throughput against the real stack on this machine, side by side in one run.

Starts a real ``tritonserver`` (stack.backing), the scorer as its own process
(``python -m scorer``, no Redis so every answer is scored by the models) and a plain
grpc.aio echo server as another process, then measures:

1. core_rs's own in-process formula grading (the ceiling for bulk formula scoring), and
2. bulk ``ScoreStream`` of formula answers, many answers per message, taking turns with it in
   rounds (the median round's ratio is reported);
3. unary ``Score`` of formula answers at concurrency 64, next to the echo server;
4. the sentence encoder: onnxruntime alone in this process (the same graph, tokenizer and
   thread count as the Triton model) one answer per run and 64 per call, which bounds what
   batching can gain; then on Triton one call per answer vs multi-row calls, and free-text
   answers end to end through the scorer.

Prints a Markdown table and writes it into the "scorer" section of benchmarks/README.md.
Every load loop is bounded in time and count and talks to 127.0.0.1 only.

Usage: ``.venv/bin/python benchmarks/scorer/bench_scorer.py [--seconds 5]`` (or ``make bench-scorer``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc.aio as tritonaio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import InferInput, InferRequestedOutput

import core_rs
from scorer import minilm
from scorer.grading import sheet_rows
from stack.backing import TritonServer, free_port
from stack.runner import MODEL_REPOSITORY, REPO_ROOT
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

README = REPO_ROOT / "benchmarks" / "README.md"
START, END = "<!-- scorer:start -->", "<!-- scorer:end -->"

ECHO_SERVER = """
import asyncio, sys, grpc
async def main():
    server = grpc.aio.server()
    echo = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", {"Echo": echo})])
    server.add_insecure_port(sys.argv[1])
    await server.start()
    await server.wait_for_termination()
async def _echo(raw, context):
    return raw
asyncio.run(main())
"""

WORDS = (
    "a relative reference like A1 changes when the formula is copied while an absolute reference such as "
    "$A$1 stays fixed because the dollar sign locks the row and the column so copying keeps it pointing "
    "at the same cell mixed references lock only one part"
).split()


def formula_item() -> common_pb2.ScoringItem:
    def row(*values: object) -> common_pb2.SheetRow:
        cells = [
            common_pb2.CellValue(text=v) if isinstance(v, str) else common_pb2.CellValue(number=float(v))  # type: ignore[arg-type]
            for v in values
        ]
        return common_pb2.SheetRow(cells=cells)

    regions = ["East", "West", "North", "South"]
    rows = [row("Region", "Rep", "Units")] + [row(regions[i % 4], f"R{i}", i * 3 % 17) for i in range(2, 42)]
    return common_pb2.ScoringItem(
        item_id="bench-sumifs",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_FORMULA,
        formula=common_pb2.FormulaSpec(
            sheet=common_pb2.SampleSheet(name="Sales", rows=rows), reference_formula='=SUMIFS(C2:C41,A2:A41,"East")'
        ),
    )


def text_item() -> common_pb2.ScoringItem:
    return common_pb2.ScoringItem(
        item_id="bench-refs",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_FREE_TEXT,
        rubric=common_pb2.TextRubric(
            reference_answers=[" ".join(WORDS[:30])],
            criteria=[
                common_pb2.RubricCriterion(name="relative", terms=["relative", "changes"], weight=1),
                common_pb2.RubricCriterion(name="absolute", terms=["absolute", "fixed"], weight=1),
            ],
        ),
    )


def formulas(n: int, offset: int = 0) -> list[str]:
    """Distinct formula answers (so no cache helps): a mix of right, wrong and broken ones.

    Every answer's text differs (``{i}`` in each shape): the scorer's in-process formula
    cache must not answer any of them, or the scorer would be measured on less work than
    core_rs's own grading.
    """
    shapes = ['=SUMIFS(C2:C41,A2:A41,"East")+{i}*0', "=SUM(C2:C41)-{i}", '=COUNTIF(A2:A41,"East")*{i}', "=C2+C{j}+0*{i}"]
    return [shapes[i % 4].format(i=i + offset, j=2 + (i + offset) % 40) for i in range(n)]


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(12, 30)))) for _ in range(n)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# -- measurements -------------------------------------------------------------------------


def bench_core_rs(item: common_pb2.ScoringItem, seconds: float) -> float:
    rows, reference = sheet_rows(item.formula.sheet), item.formula.reference_formula
    done, started, offset = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        core_rs.grade_formulas(rows, reference, formulas(1000, offset))
        offset += 1000
        done += 1000
    return done / (time.perf_counter() - started)


async def bench_stream(
    stub: scorer_pb2_grpc.ScorerStub, item: common_pb2.ScoringItem | None, per_message: int, messages: int, make: object
) -> float:
    batches = [
        scorer_pb2.ScoreBatchRequest(
            batch_id=str(m),
            item=item,
            answers=[scorer_pb2.AnswerInput(answer_id=str(i), text=t) for i, t in enumerate(make(per_message, m))],  # type: ignore[operator]
        )
        for m in range(messages)
    ]

    async def send() -> AsyncIterator[scorer_pb2.ScoreBatchRequest]:
        for batch in batches:
            yield batch

    started, answered = time.perf_counter(), 0
    async for reply in stub.ScoreStream(send(), timeout=600):
        answered += len(reply.results)
    assert answered == per_message * messages
    return answered / (time.perf_counter() - started)


UnaryRun = tuple[int, float, list[float]]
# Rounds of core_rs alone, then the stream, whose ratios give the stream's median. Five: on a
# quiet box single rounds of the same code land near 50% or near 90% (41-97% in two runs each
# of two commits), so three rounds could still report either mode.
STREAM_ROUNDS = 5


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU seconds (user + system) a process, or one of its threads, has used so far (Linux /proc)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU a server spends per call: the whole process and its main (event-loop) thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.total, self.loop, self.calls = pid, 0.0, 0.0, 0

    async def run(self, load: Awaitable[UnaryRun]) -> UnaryRun:
        """Awaits ``load`` (a :func:`bench_unary` call) and adds the CPU it cost this server."""
        total, loop = cpu_seconds(self.pid), cpu_seconds(self.pid, self.pid)
        result = await load
        self.total += cpu_seconds(self.pid) - total
        self.loop += cpu_seconds(self.pid, self.pid) - loop
        self.calls += result[0]
        return result

    def per_call_us(self) -> tuple[float, float]:
        """``(process, event-loop thread)`` CPU µs per call."""
        return self.total / self.calls * 1e6, self.loop / self.calls * 1e6


async def bench_unary(
    call: grpc.aio.UnaryUnaryMultiCallable, payloads: list[bytes], concurrency: int, seconds: float, first: int = 0
) -> UnaryRun:
    """Closed-loop unary load; returns ``(calls, elapsed seconds, latencies)``.

    Args:
        call: The method.
        payloads: Request messages, sent in order from ``first`` on.
        concurrency: Calls in flight.
        seconds: Duration.
        first: Index of the first payload sent.
    """
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    cursor = iter(range(first, 10**9))

    async def worker() -> None:
        while time.perf_counter() < stop:
            payload = payloads[next(cursor) % len(payloads)]
            t0 = time.perf_counter()
            await call(payload, timeout=10)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), time.perf_counter() - started, latencies


def summarise(runs: list[UnaryRun]) -> tuple[float, float, float]:
    """Calls per second, p50 and p99 (ms) over runs of :func:`bench_unary`."""
    latencies = [latency for _, _, run in runs for latency in run]
    rate = sum(calls for calls, _, _ in runs) / sum(elapsed for _, elapsed, _ in runs)
    return rate, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


def encoder_threads() -> int:
    """The ``intra_op_threads`` the Triton ``sentence_encoder`` runs with (from its config.pbtxt)."""
    config = (MODEL_REPOSITORY / "sentence_encoder" / "config.pbtxt").read_text()
    match = re.search(r'key: "intra_op_threads" value: \{ string_value: "(\d+)" \}', config)
    return int(match.group(1)) if match else 1


def bench_encoder_in_process(seconds: float) -> dict[str, float]:
    """MiniLM through onnxruntime in this process, as the Triton model runs it: answers/s
    at one answer per call and at 64 per call. No Triton, no IPC: the model's own cost."""
    session, tokenizer = minilm.open_session(encoder_threads()), minilm.open_tokenizer()
    texts = sentences(4096, seed=3)

    def rate(batch_size: int) -> float:
        done, started, cursor = 0, time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            minilm.embed(session, tokenizer, texts[cursor : cursor + batch_size])
            cursor = (cursor + batch_size) % (len(texts) - batch_size)
            done += batch_size
        return done / (time.perf_counter() - started)

    minilm.embed(session, tokenizer, texts[:8])  # warm-up
    return {"single": rate(1), "batch64": rate(64)}


async def bench_encoder(url: str, seconds: float) -> dict[str, float]:
    client = tritonaio.InferenceServerClient(url)
    texts = sentences(4096, seed=3)

    async def embed(batch: list[str]) -> None:
        data = np.array([[t.encode()] for t in batch], dtype=np.object_)
        inp = InferInput("TEXT", [len(batch), 1], "BYTES")
        inp.set_data_from_numpy(data)
        await client.infer("sentence_encoder", [inp], outputs=[InferRequestedOutput("EMBEDDING")], client_timeout=30)

    async def rate(batch_size: int, concurrency: int) -> float:
        done, stop, cursor = 0, time.perf_counter() + seconds, 0

        async def worker() -> None:
            nonlocal done, cursor
            while time.perf_counter() < stop:
                start = cursor % (len(texts) - batch_size)
                cursor += batch_size
                await embed(texts[start : start + batch_size])
                done += batch_size

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)

    await embed(texts[:8])  # warm-up
    result = {
        "single_seq": await rate(1, 1),
        "single_c16": await rate(1, 16),
        "batch64": await rate(64, 2),
    }
    await client.close()
    return result


# -- orchestration ------------------------------------------------------------------------


def wait_serving(address: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"scorer exited with {process.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise RuntimeError(f"{address} not serving in {timeout:.0f}s")


def wait_port(address: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=max(0.1, deadline - time.monotonic()))


async def measure(
    triton: TritonServer, scorer_address: str, echo_address: str, seconds: float, pids: tuple[int, int]
) -> tuple[list[tuple[str, str, str, str]], str]:
    """Runs every phase; returns the table rows and the notes printed under the table.

    ``pids`` are the scorer's and the echo server's processes, whose CPU per unary call is reported.
    """
    fitem, titem = formula_item(), text_item()
    results: list[tuple[str, str, str, str]] = []

    async with grpc.aio.insecure_channel(scorer_address) as channel, grpc.aio.insecure_channel(echo_address) as echo_channel:
        stub = scorer_pb2_grpc.ScorerStub(channel)
        await bench_stream(stub, fitem, 200, 5, lambda n, m: formulas(n, 10**7 + m * n))  # warm-up
        # The same ratio moves from 55% to 86% between back-to-back runs on this shared machine,
        # so core_rs and the stream take turns in rounds and the median round's ratio is reported.
        messages = max(10, int(seconds * 8 / STREAM_ROUNDS))
        rounds: list[tuple[float, float]] = []
        for r in range(STREAM_ROUNDS):
            round_core = bench_core_rs(fitem, seconds / STREAM_ROUNDS)
            round_stream = await bench_stream(
                stub, fitem, 1000, messages, lambda n, m, r=r: formulas(n, 10**6 * (r + 1) + m * n)
            )
            rounds.append((round_stream / round_core, round_core))
        rounds.sort()
        ratio, core = rounds[len(rounds) // 2]
        stream = ratio * core
        spread = ", ".join(f"{q:.0%}" for q, _ in rounds)
        results.append(("core_rs in-process grading (formulas, 1 thread)", f"{core:,.0f} answers/s", "ceiling", ""))
        results.append(
            (
                "ScoreStream, formulas, 1,000 answers/message",
                f"{stream:,.0f} answers/s",
                f"{ratio:.0%} of core_rs (median of {STREAM_ROUNDS} rounds: {spread})",
                "PASS" if ratio >= 0.7 and stream >= 5000 else "FAIL (target ≥ 70% and ≥ 5,000/s)",
            )
        )

        payloads = [
            scorer_pb2.ScoreRequest(item=fitem, answer=scorer_pb2.AnswerInput(answer_id=str(i), text=t)).SerializeToString()
            for i, t in enumerate(formulas(20000, 2 * 10**7))
        ]
        raw_score = channel.unary_unary("/xlinterview.v1.Scorer/Score")
        raw_echo = echo_channel.unary_unary("/bench.Echo/Echo")
        warm_up = [
            scorer_pb2.ScoreRequest(item=fitem, answer=scorer_pb2.AnswerInput(answer_id=str(i), text=t)).SerializeToString()
            for i, t in enumerate(formulas(1000, 3 * 10**7))
        ]
        await bench_unary(raw_score, warm_up, 64, 1.0)
        await bench_unary(raw_echo, warm_up, 64, 1.0)
        # Alternating halves, so load from outside the benchmark that comes and goes (the 2 cores
        # are shared) hits both servers alike; the same payloads and client code for both.
        echo_runs: list[UnaryRun] = []
        score_runs: list[UnaryRun] = []
        score_cpu, echo_cpu = CpuMeter(pids[0]), CpuMeter(pids[1])
        for _ in range(2):
            echo_runs.append(await echo_cpu.run(bench_unary(raw_echo, payloads, 64, seconds / 2)))
            sent = sum(calls for calls, _, _ in score_runs)  # never an answer twice: no cache helps
            score_runs.append(await score_cpu.run(bench_unary(raw_score, payloads, 64, seconds / 2, first=sent)))
        echo_rate, echo_p50, echo_p99 = summarise(echo_runs)
        unary_rate, unary_p50, unary_p99 = summarise(score_runs)
        results.append(
            ("grpc.aio echo server, unary, concurrency 64", f"{echo_rate:,.0f} req/s", f"p50 {echo_p50:.1f} ms, p99 {echo_p99:.1f} ms", "baseline")
        )
        results.append(
            (
                "Score (unary), formulas, concurrency 64",
                f"{unary_rate:,.0f} req/s",
                f"{unary_rate / echo_rate:.0%} of echo; p50 {unary_p50:.1f} ms, p99 {unary_p99:.1f} ms",
                "PASS" if unary_rate >= 0.6 * echo_rate and unary_p99 < 50 else "FAIL (target ≥ 60% of echo, p99 < 50 ms)",
            )
        )

        local = bench_encoder_in_process(seconds)
        ceiling = local["batch64"] / local["single"]
        results.append(
            (
                f"onnxruntime alone in-process ({encoder_threads()} thread{'' if encoder_threads() == 1 else 's'}, as on Triton), "
                "1 answer per call",
                f"{local['single']:,.0f} answers/s",
                "the model's own cost",
                "",
            )
        )
        results.append(
            (
                "onnxruntime alone in-process, 64 answers per call",
                f"{local['batch64']:,.0f} answers/s",
                f"{ceiling:.1f}× (what batching saves in the model itself)",
                "",
            )
        )
        enc = await bench_encoder(triton.url, seconds)
        gain = enc["batch64"] / enc["single_seq"]
        results.append(("sentence_encoder on Triton, 1 call per answer (sequential)", f"{enc['single_seq']:,.0f} answers/s", "baseline", ""))
        results.append(
            (
                "sentence_encoder on Triton, 1 call per answer, 16 in flight",
                f"{enc['single_c16']:,.0f} answers/s",
                f"{enc['single_c16'] / enc['single_seq']:.1f}× (Triton's dynamic batcher merges them)",
                "",
            )
        )
        results.append(
            (
                "sentence_encoder on Triton, 64 answers per call",
                f"{enc['batch64']:,.0f} answers/s",
                f"{gain:.1f}× vs 1 call per answer; {enc['batch64'] / local['batch64']:.0%} of onnxruntime alone",
                "PASS" if gain >= 5 else "FAIL (target ≥ 5×; compute-bound, see below)",
            )
        )
        free_text = await bench_stream(stub, titem, 64, max(4, int(seconds * 2)), lambda n, m: sentences(n, seed=100 + m))
        results.append(("ScoreStream, free text (text_features + answer_scorer_text, the default), 64 answers/message", f"{free_text:,.0f} answers/s", "end to end", ""))
    return results, unary_notes(score_cpu, echo_cpu, core) + "\n\n" + encoder_notes(local, enc)


def unary_notes(score: CpuMeter, echo: CpuMeter, core: float) -> str:
    """Where a unary Score call's cost goes next to an echo call, from this run's CPU counters."""
    (score_total, score_loop), (echo_total, echo_loop) = score.per_call_us(), echo.per_call_us()
    return (
        f"What a unary call costs: the scorer process used {score_total:,.0f} µs of CPU per Score call "
        f"({score_loop:,.0f} µs on its event-loop thread), the echo server {echo_total:,.0f} µs per call "
        f"({echo_loop:,.0f} µs on its loop). Both pay gRPC's own per-call work on the loop; a Score call "
        f"adds grading one formula in core_rs (about {1e6 / core:,.0f} µs at this run's core_rs rate, in a "
        "worker thread, so it overlaps the loop's work on the other core), decoding the item (its 41-row "
        "sample sheet), building the score, and its share of a Triton call for the coalesced group. "
        "Everything but core_rs runs on the one loop thread: at these costs the scorer's loop alone could "
        f"serve at most {1e6 / score_loop:,.0f} calls/s and the echo's {1e6 / echo_loop:,.0f}, while the "
        "client, Triton and core_rs share the other core."
    )


def encoder_notes(local: dict[str, float], triton: dict[str, float]) -> str:
    """Why the encoder's batching gain is what it is, from this run's figures."""
    return (
        "Why the encoder's batching gain is small: the network is compute-bound. Its graph "
        "(`scorer.minilm.compute_graph`) multiplies int8 matrices, about 0.5 GFLOP-equivalent for a 24-token "
        "answer (6 layers × 1.8 M weights × 2 × tokens), and one answer already gives each product its token "
        "rows. Each text runs alone (`scorer.minilm.embed_each`: a run's activations share one quantization "
        "scale, so texts run together would change each other's embeddings), so a multi-answer call saves no "
        "model work, only the per-call work around it. With other work on the 2 cores, onnxruntime's threads "
        "lose more than that, and every encoder figure drops. "
        f"onnxruntime alone gains {local['batch64'] / local['single']:.1f}× from 64-answer calls here. What a "
        "multi-row Triton call does save is the fixed cost of a call (request, IPC to the Python stub, one "
        "tokeniser call), which the one-call-per-answer baseline pays per answer. If a 64-answer call cost "
        "nothing beyond onnxruntime, the gain over one call per answer would be about "
        f"{local['batch64'] / triton['single_seq']:.1f}× on these 2 cores"
        + (
            "."
            if triton["batch64"] >= 5 * triton["single_seq"]
            else "; 5× would need a GPU (Triton's onnxruntime backend with the GPU instance group, "
            "deploy/triton/gpu/) or a smaller model, not more batching."
        )
    )


def table(results: list[tuple[str, str, str, str]]) -> str:
    lines = ["| measurement | rate | ratio / latency | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in results]
    return "\n".join(lines)


def write_readme(markdown: str) -> None:
    section = f"{START}\n{markdown}\n{END}"
    text = README.read_text() if README.exists() else "# Benchmarks\n\nNot part of `make test`; each writes its own section below.\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each timed phase")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-scorer-") as tmp, TritonServer(MODEL_REPOSITORY, Path(tmp) / "triton") as triton:
        # Picked once Triton holds its ports, so neither can be one of them (a run crashed so).
        scorer_port = free_port()
        echo_port = next(port for port in iter(free_port, None) if port != scorer_port)
        scorer_address, echo_address = f"127.0.0.1:{scorer_port}", f"127.0.0.1:{echo_port}"
        env = {
            **os.environ,
            "TRITON_URL": triton.url,
            "XLI_SCORER_ADDRESS": scorer_address,
            "XLI_LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        scorer = subprocess.Popen([sys.executable, "-m", "scorer"], env=env, cwd=tmp)
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, echo_address])
        try:
            wait_serving(scorer_address, scorer)
            wait_port(echo_address)
            results, notes = asyncio.run(
                measure(triton, scorer_address, echo_address, args.seconds, (scorer.pid, echo.pid))
            )
        finally:
            for process in (echo, scorer):
                process.terminate()
                process.wait(timeout=15)

    header = (
        f"Scorer benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{args.seconds:.0f} s per phase; client, scorer, Triton and echo share the machine; no Redis (distinct answers). "
        f"1-minute load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} "
        "(anything above ~1 means other work competed for the 2 cores and every rate is lower)."
    )
    markdown = f"{header}\n\n{table(results)}\n\n{notes}"
    print(markdown)
    if not args.no_readme:
        write_readme(f"## scorer (`make bench-scorer`)\n\n{markdown}")
        print(f"\nwritten to {README}")


if __name__ == "__main__":
    main()
