"""Tests for stack.backing: real PostgreSQL, Redis and Triton processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import redis
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from stack.backing import (
    BackingServiceError,
    EmbeddedPostgres,
    EmbeddedRedis,
    TritonServer,
    free_port,
    running_postgres_port,
)
from stack.runner import MODEL_REPOSITORY, REPO_ROOT, served_version

WEIGHTS = MODEL_REPOSITORY / "answer_scorer" / "1" / "weights.json"
FEATURES = (
    "kind_formula", "kind_text", "parses", "value_match", "function_overlap",
    "hardcoded", "concept_coverage", "reference_recall", "length_ratio",
    "excel_vocab_density",
)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536


# -- PostgreSQL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


async def test_postgres_data_survives_restart(postgres: EmbeddedPostgres) -> None:
    assert postgres.url == (
        f"postgresql://xlinterview:xlinterview@127.0.0.1:{postgres.port}/xlinterview"
    )
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        await conn.execute("INSERT INTO notes VALUES (1, 'kept')")
        assert await conn.fetchval("SELECT body FROM notes WHERE id = 1") == "kept"
        assert await conn.fetchval("SELECT current_database()") == "xlinterview"
    finally:
        await conn.close()

    postgres.stop()
    assert not postgres.running
    postgres.start()
    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("SELECT body FROM notes WHERE id = 1") == "kept"
    finally:
        await conn.close()


def test_postgres_start_is_idempotent(postgres: EmbeddedPostgres) -> None:
    pid = postgres.pid
    postgres.start()
    assert postgres.pid == pid


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root")
def test_postgres_runs_unprivileged_as_root(postgres: EmbeddedPostgres) -> None:
    assert postgres.pid is not None
    assert _uid_of(postgres.pid) != 0


def test_the_port_of_a_running_server_is_found_from_its_data_dir(postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    assert running_postgres_port(postgres.pgdata) == postgres.port
    assert running_postgres_port(tmp_path) is None  # no server was ever there
    # A pid file left by a killed server whose pid now belongs to another process.
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path}\n0\n{postgres.port}\n")
    assert running_postgres_port(tmp_path) is None


def test_postgres_second_instance_on_same_dir_refused(postgres: EmbeddedPostgres) -> None:
    with pytest.raises(BackingServiceError, match="already used"):
        EmbeddedPostgres(postgres.data_dir).start()


async def test_postgres_restarts_after_kill_9(postgres: EmbeddedPostgres) -> None:
    pid = postgres.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while postgres.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (postgres.pgdata / "postmaster.pid").exists()  # stale, left by the kill

    postgres.start()
    assert postgres.pid != pid
    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM notes") == 1
    finally:
        await conn.close()


# -- Redis ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def test_redis_data_survives_restart(redis_server: EmbeddedRedis) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("interview:1", "in-progress")
        client.hset("session:1", mapping={"q": "3", "score": "0.75"})
    finally:
        client.close()

    redis_server.stop()
    assert not redis_server.running
    redis_server.start()

    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.get("interview:1") == b"in-progress"
        assert client.hgetall("session:1") == {b"q": b"3", b"score": b"0.75"}
    finally:
        client.close()
    assert (redis_server.data_dir / "appendonly.aof").exists()


def test_server_dies_with_its_python_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen(  # noqa: S603 - fixed argv
        [
            sys.executable, "-c",
            "import sys, time\n"
            "from stack.backing import EmbeddedRedis\n"
            "server = EmbeddedRedis(sys.argv[1]).start()\n"
            "print(server.pid, flush=True)\n"
            "time.sleep(600)\n",
            str(tmp_path / "redis"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert Path(f"/proc/{server_pid}").exists()
        parent.kill()  # SIGKILL: no atexit hook, no stop()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(server_pid), "redis-server outlived its parent"
    finally:
        parent.kill()
        parent.wait(10)


# -- Triton -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer(MODEL_REPOSITORY, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="module")
def triton_client(triton: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(triton.url)
    yield client
    client.close()


def _score(client: grpcclient.InferenceServerClient, rows: np.ndarray) -> np.ndarray:
    inp = grpcclient.InferInput("FEATURES", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    result = client.infer("answer_scorer", [inp])
    out = result.as_numpy("SCORE")
    assert out is not None
    return out


def _expected(rows: np.ndarray) -> np.ndarray:
    spec = json.loads(WEIGHTS.read_text())
    assert tuple(spec["feature_names"]) == FEATURES
    z = rows.astype(np.float64) @ np.asarray(spec["weights"]) + spec["bias"]
    return (1.0 / (1.0 + np.exp(-z))).reshape(-1, 1)


def test_triton_batch_matches_logistic_formula(
    triton: TritonServer, triton_client: grpcclient.InferenceServerClient
) -> None:
    assert triton.url == f"127.0.0.1:{triton.grpc_port}"
    rows = np.random.default_rng(7).random((3, 10), dtype=np.float32)
    scores = _score(triton_client, rows)
    assert scores.shape == (3, 1)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, _expected(rows), rtol=1e-5, atol=1e-6)


def _row(**values: float) -> list[float]:
    assert set(values) <= set(FEATURES)
    return [values.get(name, 0.0) for name in FEATURES]


def test_triton_scores_follow_documented_behaviour(
    triton_client: grpcclient.InferenceServerClient,
) -> None:
    rows = np.array(
        [
            _row(kind_formula=1, parses=1, value_match=1),  # correct formula
            _row(kind_formula=1, parses=1, value_match=1, hardcoded=1),  # typed-in constant
            _row(kind_formula=1, parses=1),  # wrong formula
            _row(kind_formula=1, parses=1, function_overlap=1, length_ratio=1,
                 excel_vocab_density=1),  # wrong formula, right functions
            _row(kind_text=1, concept_coverage=1, reference_recall=0.6, length_ratio=0.5),
            _row(kind_text=1, reference_recall=0.3, length_ratio=1, excel_vocab_density=0.3),
        ],
        dtype=np.float32,
    )
    s = _score(triton_client, rows)[:, 0]
    assert s[0] > 0.9
    assert s[1] < 0.3
    assert s[2] < 0.3 and s[3] < 0.3 and s[3] > s[2]
    assert s[4] > 0.85
    assert s[5] < 0.15


def test_triton_similarity_term_is_gated_by_kind_text(
    triton_client: grpcclient.InferenceServerClient,
) -> None:
    spec = json.loads(WEIGHTS.read_text())["similarity"]
    rows = np.array([_row(kind_text=1)] * 3 + [_row(kind_formula=1, parses=1)], dtype=np.float32)
    similarity = np.array([[0.0], [spec["floor"]], [0.9], [0.9]], dtype=np.float32)
    features = grpcclient.InferInput("FEATURES", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)
    sim = grpcclient.InferInput("SIMILARITY", [4, 1], "FP32")
    sim.set_data_from_numpy(similarity)
    scores = triton_client.infer("answer_scorer", [features, sim]).as_numpy("SCORE")
    assert scores is not None
    term = np.array([0.0, 0.0, spec["weight"] * (0.9 - spec["floor"]) / (1 - spec["floor"]), 0.0])
    expected = 1.0 / (1.0 + np.exp(-(np.log(_expected(rows)[:, 0] / (1 - _expected(rows)[:, 0])) + term)))
    np.testing.assert_allclose(scores[:, 0], expected, rtol=1e-5)
    # Without SIMILARITY the score is the ten features' alone.
    np.testing.assert_allclose(_score(triton_client, rows), _expected(rows), rtol=1e-5)


def test_sentence_encoder_returns_unit_embeddings(triton_client: grpcclient.InferenceServerClient) -> None:
    texts = np.array([["Copy the formula down.".encode()], ["Lock the row with a dollar sign.".encode()]], dtype=np.object_)
    inp = grpcclient.InferInput("TEXT", [2, 1], "BYTES")
    inp.set_data_from_numpy(texts)
    out = triton_client.infer("sentence_encoder", [inp]).as_numpy("EMBEDDING")
    assert out is not None and out.shape == (2, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_triton_rejects_wrong_shape(triton_client: grpcclient.InferenceServerClient) -> None:
    rows = np.zeros((2, 9), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="FEATURES|shape"):
        _score(triton_client, rows)


def test_triton_model_rejects_nan(triton_client: grpcclient.InferenceServerClient) -> None:
    rows = np.zeros((2, 10), dtype=np.float32)
    rows[1, 3] = np.nan
    with pytest.raises(InferenceServerException, match="value_match"):
        _score(triton_client, rows)
    # A bad request does not poison the model: a good one still works.
    assert _score(triton_client, np.zeros((1, 10), dtype=np.float32)).shape == (1, 1)


@pytest.mark.parametrize("model_py", [None, "raise"], ids=["no-model-py", "init-raises"])
def test_triton_start_failure_reports_log(tmp_path: Path, model_py: str | None) -> None:
    broken = tmp_path / "repo" / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\n'
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]\n'
    )
    if model_py is not None:
        (broken / "1" / "model.py").write_text(
            "class TritonPythonModel:\n"
            "    def initialize(self, args):\n"
            "        raise ValueError('weights are broken')\n"
        )
    server = TritonServer(tmp_path / "repo", tmp_path / "data", start_timeout=60)
    started = time.monotonic()
    with pytest.raises(BackingServiceError) as info:
        server.start()
    assert time.monotonic() - started < 30  # fails fast, not by timeout
    message = str(info.value)
    assert "tritonserver" in message
    assert ("model.py" in message) if model_py is None else ("weights are broken" in message)
    assert not server.running


# -- answer_scorer_text and text_features ---------------------------------------------

TEXT_MODEL = served_version("answer_scorer_text")
TEXT_ITEM = {
    "prompt": "What does VLOOKUP do?",
    "references": ["VLOOKUP searches the first column of a table and returns the value in the same row of another column."],
    "criteria": [["finds the row", ["searches", "first column"], 1.0], ["returns a value", ["returns"], 1.0]],
}
TEXT_ANSWERS = [
    "It looks for a value in the first column and returns the value from the same row in another column.",
    "It adds up numbers.",
]


def _text_features(client: grpcclient.InferenceServerClient, answers: list[str], item: dict[str, object]) -> np.ndarray:
    rows = len(answers)
    answer = grpcclient.InferInput("ANSWER", [rows, 1], "BYTES")
    answer.set_data_from_numpy(np.array([[a.encode()] for a in answers], dtype=np.object_))
    raw = grpcclient.InferInput("ITEM", [rows, 1], "BYTES")
    raw.set_data_from_numpy(np.array([[json.dumps(item).encode()]] * rows, dtype=np.object_))
    out = client.infer("text_features", [answer, raw]).as_numpy("FEATURES")
    assert out is not None
    return out


def test_text_features_equal_the_training_featurizer(triton_client: grpcclient.InferenceServerClient) -> None:
    from scorer.training.data import Question
    from scorer.training.embed import Encoder
    from scorer.training.features import BASE_FEATURES, Featurizer

    served = _text_features(triton_client, TEXT_ANSWERS, TEXT_ITEM)
    featurizer = Featurizer(Encoder(threads=1))
    question = Question(
        qid="q", group="q", prompt=TEXT_ITEM["prompt"], references=tuple(TEXT_ITEM["references"]),
        criteria=tuple((n, tuple(t), w) for n, t, w in TEXT_ITEM["criteria"]),
    )
    encoding = featurizer.encode_question(question)
    plain, demoted = featurizer.answer_embeddings(encoding, TEXT_ANSWERS)
    offline = featurizer.base(encoding, TEXT_ANSWERS, plain, demoted)
    assert served.shape == (2, len(BASE_FEATURES)) and served.dtype == np.float32
    # Same code, same pinned graph; int8 activations are quantised per run, so allow a little.
    np.testing.assert_allclose(served, offline, atol=2e-3)


def test_text_features_rejects_an_item_without_references(triton_client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="reference"):
        _text_features(triton_client, ["x"], {**TEXT_ITEM, "references": []})
    assert _text_features(triton_client, ["It returns a value."], TEXT_ITEM).shape == (1, 17)


def test_answer_scorer_text_runs_the_committed_artefact(triton_client: grpcclient.InferenceServerClient) -> None:
    from scorer.training.model import load_metadata, run_onnx

    metadata = load_metadata(TEXT_MODEL)  # the committed graph matches its recorded sha256
    assert metadata["name"] == "answer_scorer_text" and not metadata["feature_config"]["peers"]
    rows = _text_features(triton_client, TEXT_ANSWERS, TEXT_ITEM)
    features = grpcclient.InferInput("FEATURES", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)
    result = triton_client.infer("answer_scorer_text", [features])
    score, confidence = result.as_numpy("SCORE"), result.as_numpy("CONFIDENCE")
    expected_score, expected_confidence = run_onnx(TEXT_MODEL / "model.onnx", rows)
    np.testing.assert_allclose(score[:, 0], expected_score, atol=1e-6)
    np.testing.assert_allclose(confidence[:, 0], expected_confidence, atol=1e-6)
    assert score[0, 0] > score[1, 0]  # the right answer above the wrong one
    config = triton_client.get_model_config("answer_scorer_text").config
    assert config.parameters["origin"].string_value == "trained"
    assert triton_client.get_model_config("answer_scorer").config.parameters["origin"].string_value == "hand_set"


def test_answer_scorer_text_rejects_non_finite_features(triton_client: grpcclient.InferenceServerClient) -> None:
    rows = np.zeros((2, 17), dtype=np.float32)
    rows[0, 0] = np.inf
    features = grpcclient.InferInput("FEATURES", [2, 17], "FP32")
    features.set_data_from_numpy(rows)
    with pytest.raises(InferenceServerException, match="finite"):
        triton_client.infer("answer_scorer_text", [features])


def test_gpu_variant_keeps_the_tensor_contract() -> None:
    local = (MODEL_REPOSITORY / "answer_scorer_text" / "config.pbtxt").read_text()
    gpu = (REPO_ROOT / "deploy" / "triton" / "gpu" / "answer_scorer_text" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in gpu and "KIND_GPU" in gpu
    for name in ("FEATURES", "SCORE", "CONFIDENCE"):
        assert f'name: "{name}"' in local and f'name: "{name}"' in gpu
    assert "dims: [ 17 ]" in local and "dims: [ 17 ]" in gpu


def test_a_request_still_queued_past_its_timeout_is_rejected_not_run(
    triton_client: grpcclient.InferenceServerClient,
) -> None:
    # The scorer sends its remaining deadline as the request's timeout; the models' queue
    # policy drops a request that waits longer, instead of running it for nobody.
    def texts(count: int, words: int) -> grpcclient.InferInput:
        inp = grpcclient.InferInput("TEXT", [count, 1], "BYTES")
        rows = [[f"answer {i}: {'absolute reference ' * words}".encode()] for i in range(count)]  # distinct texts
        inp.set_data_from_numpy(np.array(rows, dtype=object))
        return inp

    done: list[object] = []
    # Long enough to keep the model's one instance busy for a while (64 texts of ~200 tokens).
    triton_client.async_infer("sentence_encoder", [texts(64, 100)], lambda result, error: done.append(error or result))
    time.sleep(0.2)  # past the 2 ms batching window: the next request queues behind it
    with pytest.raises(InferenceServerException, match="(?i)timeout|timed out"):
        triton_client.infer("sentence_encoder", [texts(1, 3)], timeout=1000)
    deadline = time.monotonic() + 60
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done and not isinstance(done[0], InferenceServerException)
    # Without a timeout the same request is run as always.
    assert triton_client.infer("sentence_encoder", [texts(1, 3)]).as_numpy("EMBEDDING").shape == (1, 384)
