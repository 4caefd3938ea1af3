"""What a free-text answer costs the MiniLM encoder, in this process: the figures behind
``scorer.minilm.compute_graph``, ``embed_each``, the encoders' one onnxruntime thread and
``scorer.triton_backend.single_threaded_blas``.

1. CPU per Mohler answer, one text per run on one thread: the pinned fp32-compute file against
   the derived int8-compute graph.
2. Cosine of the int8 embeddings to the fp32 ones over the 2,273 Mohler answers, and what one
   quantization scale per matrix (instead of per output channel) gives on a sample.
3. Texts run together in runs of 16 against alone: CPU, and how far they move each other's
   embeddings (the int8 graph quantizes a run's activations with one scale).
4. One onnxruntime thread against two: answers/s and CPU per answer.
5. ``text_features``' own code (``Featurizer``), one load-test answer per call as the Triton
   model gets them under load: CPU per answer with numpy's BLAS threads as they start and
   held to one.

Mohler is read in place from ``../shared`` (evaluation data, never copied). Prints a Markdown
table and writes the "encoder" section of benchmarks/README.md.

Usage: ``.venv/bin/python benchmarks/scorer/encoder_cost.py [--no-readme]`` (or ``make bench-encoder``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "benchmarks" / "load"), str(REPO_ROOT)]

from answers import free_text_answer  # noqa: E402
from report import publish  # noqa: E402
from run import code_state, machine  # noqa: E402
from orchestrator.bank import FreeTextItem, load_bank  # noqa: E402
from orchestrator.settings import DEFAULT_BANK_DIR  # noqa: E402
from scorer import minilm  # noqa: E402
from scorer.training.data import Question, load_mohler  # noqa: E402
from scorer.training.embed import Encoder  # noqa: E402
from scorer.training.features import Featurizer  # noqa: E402

README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "encoder"


def session(path: Path, threads: int) -> Any:
    """An onnxruntime session on ``path`` with the serving options (no spinning)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cpu_and_wall(work: Callable[[], object]) -> tuple[float, float]:
    """CPU seconds of this process (all threads) and wall seconds that ``work`` took."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def embed_in_runs(graph: Any, tokenizer: Any, texts: Sequence[str], rows: int) -> np.ndarray:
    """Embeddings with ``rows`` length-sorted texts per padded run (what serving did before)."""
    encodings = tokenizer.encode_batch(list(texts))
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
    out = np.zeros((len(texts), minilm.EMBEDDING_DIM), dtype=np.float32)
    for start in range(0, len(order), rows):
        run = order[start : start + rows]
        width = max(len(encodings[i].ids) for i in run)
        ids, mask = np.zeros((len(run), width), np.int64), np.zeros((len(run), width), np.int64)
        for r, i in enumerate(run):
            ids[r, : len(encodings[i].ids)], mask[r, : len(encodings[i].ids)] = encodings[i].ids, 1
        (hidden,) = graph.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        out[run] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return out


def featurizer_cost(warm: Sequence[str], answers: Sequence[str], blas_threads: int | None) -> tuple[float, float]:
    """CPU and wall ms per answer of ``text_features``' code, one answer per call, after
    ``warm`` (other answers: the encoder would not run again for a text it has seen)."""
    from threadpoolctl import threadpool_limits

    item = next(i for i in load_bank(DEFAULT_BANK_DIR) if isinstance(i, FreeTextItem))
    question = Question(
        qid=item.id, group=item.id, prompt=item.prompt, references=tuple(item.rubric.reference_answers),
        criteria=tuple((c.name, tuple(c.terms), float(c.weight)) for c in item.rubric.criteria),
    )
    featurizer = Featurizer(Encoder(threads=1, max_cached_texts=512))
    encoding = featurizer.encode_question(question)

    def score_each(texts: Sequence[str]) -> None:
        for answer in texts:
            plain, demoted = featurizer.answer_embeddings(encoding, [answer])
            featurizer.base(encoding, [answer], plain, demoted)

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        score_each(warm)
        cpu, wall = cpu_and_wall(lambda: score_each(answers))
    return 1000 * cpu / len(answers), 1000 * wall / len(answers)


def measure(sample: int) -> list[tuple[str, str, str]]:
    texts = [a.text for a in load_mohler().answers]
    tokenizer = minilm.open_tokenizer()
    pinned = minilm.package_file(minilm.ONNX_PACKAGE, minilm.ONNX_FILE, minilm.ONNX_SHA256)
    fp32, int8 = session(pinned, 1), session(minilm.compute_graph(), 1)
    rows: list[tuple[str, str, str]] = []

    timed = texts[:sample]
    fp32_cpu, _ = cpu_and_wall(lambda: minilm.embed(fp32, tokenizer, timed))
    int8_cpu, _ = cpu_and_wall(lambda: minilm.embed(int8, tokenizer, timed))
    rows.append(("CPU per Mohler answer, fp32-compute pinned file, 1 thread, each text alone",
                 f"{1000 * fp32_cpu / sample:.1f} ms", "what `sentence_encoder` version 1 served"))
    rows.append(("CPU per Mohler answer, int8-compute graph (`compute_graph`), 1 thread, each text alone",
                 f"{1000 * int8_cpu / sample:.1f} ms", f"{fp32_cpu / int8_cpu:.2f}× less"))

    reference = minilm.embed(fp32, tokenizer, texts)
    cosine = np.sum(minilm.embed(int8, tokenizer, texts) * reference, axis=1)
    worst = int(np.argmin(cosine))
    rows.append((f"cosine int8 to fp32, all {len(texts):,} Mohler answers",
                 f"median {np.median(cosine):.3f}", f"1st percentile {np.percentile(cosine, 1):.3f}, "
                 f"lowest {cosine[worst]:.3f} ({texts[worst][:20]!r})"))
    with tempfile.TemporaryDirectory() as tmp:
        coarse = session(minilm.quantize(Path(tmp), per_channel=False), 1)
        per_tensor = np.sum(minilm.embed(coarse, tokenizer, timed) * reference[:sample], axis=1)
    rows.append((f"cosine to fp32 with one scale per matrix instead, {sample} answers",
                 f"median {np.median(per_tensor):.3f}", f"lowest {per_tensor.min():.3f} (why per channel)"))

    alone = minilm.embed(int8, tokenizer, timed)
    in_runs_cpu, _ = cpu_and_wall(lambda: embed_in_runs(int8, tokenizer, timed, 16))
    moved = np.sum(embed_in_runs(int8, tokenizer, timed, 16) * alone, axis=1)
    rows.append(("int8, runs of 16 length-sorted texts against each alone",
                 f"{1000 * in_runs_cpu / sample:.1f} ms CPU per answer",
                 f"lowest cosine to the same text alone {moved.min():.3f} (why each text runs alone)"))

    for threads in (1, 2):
        graph = session(minilm.compute_graph(), threads)
        cpu, wall = cpu_and_wall(lambda: minilm.embed(graph, tokenizer, timed))
        rows.append((f"int8, {threads} onnxruntime thread{'s' if threads > 1 else ''}",
                     f"{sample / wall:,.0f} answers/s", f"{1000 * cpu / sample:.1f} ms CPU per answer"))

    rng = random.Random(2)
    answers = [f"{free_text_answer(rng)} (case {i})" for i in range(240)]
    for label, limit in (("as numpy starts them", None), ("held to one (`single_threaded_blas`)", 1)):
        cpu_ms, wall_ms = featurizer_cost(answers[:20], answers[20:120] if limit is None else answers[120:220], limit)
        rows.append((f"`text_features` code, a load-test answer per call, BLAS threads {label}",
                     f"{cpu_ms:.1f} ms CPU per answer", f"{wall_ms:.1f} ms wall"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=300, help="Mohler answers in the timed measurements")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = measure(args.sample)
    lines = [
        "## encoder (`make bench-encoder`)",
        "",
        f"MiniLM in this process, {dt.date.today().isoformat()}, {code_state()}, {machine()}. 1-minute load average "
        f"before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}. CPU is this process's (all its threads).",
        "",
        "| measurement | result | note |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ]
    publish(README, SECTION, "\n".join(lines), write=not args.no_readme)


if __name__ == "__main__":
    main()
