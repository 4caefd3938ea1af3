"""Item calibration: parameter recovery of the EM, the response mapping it shares with
the engine, the min-responses rule, and the stored calibrations on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest

from orchestrator import calibration
from orchestrator.adaptive import AdaptiveEngine, CatRules, follow_up_credit, item_parameters, score_category
from orchestrator.bank import FreeTextItem, Item, ItemVersion, load_bank, parse_item
from orchestrator.calibration import ItemModel, collect_responses, estimate_parameters
from orchestrator.db import AnswerRow, Database, ItemCalibration, ItemRef, ScoredSession, SessionRow, Turn
from orchestrator.settings import DEFAULT_BANK_DIR, OrchestratorSettings
from orch_helpers import running_orchestrator
from xlinterview.v1 import common_pb2

BANK = load_bank(DEFAULT_BANK_DIR)
RIGHT_WRONG = [i for i in BANK if not isinstance(i, FreeTextItem)]
FREE_TEXT = [i for i in BANK if isinstance(i, FreeTextItem)]


def simulate_adaptive(
    a: np.ndarray, thresholds: list[np.ndarray], people: int, per_person: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Responses of ``people`` simulees who each answer ``per_person`` items chosen, like
    a CAT, near a running ability guess that follows their answers (so which items a
    person sees depends on their responses and hard items go to the able)."""
    n_items = len(a)
    centre = np.array([t.mean() for t in thresholds])
    top = np.array([len(t) for t in thresholds])
    cumulative_b = np.full((n_items, 2), np.inf)
    for i, t in enumerate(thresholds):
        cumulative_b[i, : len(t)] = t
    theta = rng.normal(0.0, 1.0, people)
    guess = np.zeros(people)
    seen = np.zeros((people, n_items), dtype=bool)
    everyone = np.arange(people)
    person, item, category = [], [], []
    for step in range(per_person):
        distance = np.abs(centre[None, :] - guess[:, None]) + rng.random((people, n_items))
        distance[seen] = np.inf
        chosen = distance.argmin(axis=1)
        seen[everyone, chosen] = True
        p_at_least = 1.0 / (1.0 + np.exp(-a[chosen, None] * (theta[:, None] - cumulative_b[chosen])))
        answered = (rng.random(people)[:, None] < p_at_least).sum(axis=1)
        guess += (answered / top[chosen] - 0.5) * 1.5 / np.sqrt(step + 1)
        person.append(everyone)
        item.append(chosen)
        category.append(answered)
    return np.concatenate(person), np.concatenate(item), np.concatenate(category)


def test_em_recovers_2pl_and_grm_parameters_from_sparse_adaptive_data() -> None:
    rng = np.random.default_rng(20261126)
    n_items = 40
    true_a = np.exp(rng.normal(0.1, 0.35, n_items))
    b = rng.normal(0.0, 1.0, n_items)
    graded = np.arange(n_items) % 3 == 0  # 14 three-category items, 26 right/wrong
    true_thresholds = [np.array([x - 0.7, x + 0.7]) if g else np.array([x]) for x, g in zip(b, graded)]
    person, item, category = simulate_adaptive(true_a, true_thresholds, people=3000, per_person=10, rng=rng)
    assert len(person) == 30_000  # each simulee saw 10 of the 40 items

    # Every item starts from the same neutral guess: nothing of the truth leaks in.
    models = [ItemModel(1.0, (-0.6, 0.6) if g else (0.0,)) for g in graded]
    cycles = []
    estimate = estimate_parameters(models, person, item, category, progress=lambda i, lp, ch: cycles.append((i, lp)))
    assert estimate.converged and cycles[-1][0] == estimate.iterations
    # EM never lowers the (log-posterior) objective.
    assert all(later >= earlier - 1e-6 for (_, earlier), (_, later) in zip(cycles, cycles[1:]))

    a = np.array([p[0] for p in estimate.parameters])
    found = np.concatenate([p[1] for p in estimate.parameters])
    truth = np.concatenate(true_thresholds)
    assert [len(p[1]) for p in estimate.parameters] == [len(t) for t in true_thresholds]
    assert all(p[1][0] < p[1][1] for p, g in zip(estimate.parameters, graded) if g)
    # Difficulty is recovered closely although every item was answered mostly by
    # candidates near it (a proportion-correct method would put all of them near 0).
    assert np.corrcoef(found, truth)[0, 1] > 0.98
    assert np.sqrt(np.mean((found - truth) ** 2)) < 0.2
    assert np.sqrt(np.mean((found - truth)[np.repeat(graded, [2 if g else 1 for g in graded])] ** 2)) < 0.25
    # Discrimination is harder from targeted data, and still tracks the truth.
    assert np.corrcoef(a, true_a)[0, 1] > 0.75
    assert np.sqrt(np.mean((a - true_a) ** 2)) < 0.3
    assert np.sqrt(np.mean((a[graded] - true_a[graded]) ** 2)) < 0.35
    assert abs(np.mean(a - true_a)) < 0.1


def test_priors_keep_an_item_everybody_gets_right_finite() -> None:
    rng = np.random.default_rng(3)
    person = np.arange(300)
    # Item 0 is answered right by all; item 1 separates everybody normally.
    theta = rng.normal(size=300)
    item = np.r_[np.zeros(300, int), np.ones(300, int)]
    category = np.r_[np.ones(300, int), (rng.random(300) < 1 / (1 + np.exp(-theta))).astype(int)]
    estimate = estimate_parameters(
        [ItemModel(1.0, (0.0,)), ItemModel(1.0, (0.0,))], np.r_[person, person], item, category
    )
    (a, (b,)), _ = estimate.parameters
    assert np.isfinite(a) and np.isfinite(b)
    # The data only say "easy"; the priors keep it on the scale instead of at -inf.
    assert -8 < b < -1 and 0.2 < a < 4


def test_fixed_items_keep_their_parameters_and_bad_input_is_refused() -> None:
    models = [ItemModel(1.3, (0.4,), free=False), ItemModel(1.0, (-0.6, 0.6))]
    estimate = estimate_parameters(models, [0, 0, 1, 1], [0, 1, 0, 1], [1, 2, 0, 0])
    assert estimate.parameters[0] == (1.3, (0.4,))
    assert estimate.parameters[1] != (1.0, (-0.6, 0.6))
    with pytest.raises(ValueError, match="category"):
        estimate_parameters(models, [0], [0], [2])  # a right/wrong item has categories 0 and 1
    with pytest.raises(ValueError, match="item index"):
        estimate_parameters(models, [0], [2], [0])


def _turns(row: SessionRow, values: list[float | None]) -> list[Turn]:
    now = datetime.now(UTC)
    return [
        Turn(
            AnswerRow(uuid.uuid4(), row.session_id, ref.item_id, ref.version, p, "a", f"k{p}", now),
            None if v is None else common_pb2.Score(value=v),
        )
        for p, (ref, v) in enumerate(zip(row.items, values))
    ]


def test_responses_are_read_exactly_as_the_engine_records_them() -> None:
    free, formula, choice = FREE_TEXT[0], RIGHT_WRONG[0], RIGHT_WRONG[1]
    versions = [ItemVersion(free, 1), ItemVersion(formula, 1), ItemVersion(choice, 1)]
    engine = AdaptiveEngine(versions, CatRules())
    items = (
        ItemRef(free.id, 1),
        ItemRef(free.id, 1, follow_up_of=0, criterion="x"),
        ItemRef(formula.id, 1),
        ItemRef(choice.id, 1),
    )
    row = SessionRow(uuid.uuid4(), "x", "finished", items, 4, datetime.now(UTC), None, cat_seed=1, max_items=12)
    values = [0.2, 1.0, 0.7, None]  # the follow-up lifts 0.2 to 0.6; the last is unscored
    turns = _turns(row, values)

    data = collect_responses(
        {ItemRef(v.item_id, v.version): v for v in versions},
        [ScoredSession(items, {p: v for p, v in enumerate(values) if v is not None})],
    )
    recorded = engine.replay(row, turns).responses
    by_index = {ItemRef(v.item_id, v.version): i for i, v in enumerate(versions)}
    assert [(by_index[data.refs[i]], c) for i, c in zip(data.item, data.category)] == recorded
    assert data.category.tolist() == [score_category(free, follow_up_credit(0.2, 1.0)), 1]
    assert data.counts() == {ItemRef(free.id, 1): 1, ItemRef(formula.id, 1): 1}


def _sessions_answering(refs: list[ItemRef], answered: dict[ItemRef, int], rng: np.random.Generator) -> list[ScoredSession]:
    """Sessions in which ``refs[i]`` is answered ``answered[refs[i]]`` times, right or wrong at random."""
    sessions = []
    for n in range(max(answered.values())):
        items = tuple(ref for ref in refs if answered[ref] > n)
        sessions.append(ScoredSession(items, {p: float(rng.random() < 0.5) for p in range(len(items))}))
    return sessions


def test_items_below_min_responses_keep_their_parameters() -> None:
    rng = np.random.default_rng(5)
    versions = [ItemVersion(item, 1) for item in RIGHT_WRONG[:3]]
    refs = [ItemRef(v.item_id, v.version) for v in versions]
    # refs[2] was calibrated before; it is now below the threshold, so it stays as it was.
    earlier = {refs[2]: ItemCalibration(refs[2], 0.8, (1.1,), 250, "mml-em")}
    sessions = _sessions_answering(refs, {refs[0]: 220, refs[1]: 199, refs[2]: 150}, rng)

    result = calibration.calibrate(versions, sessions, earlier, min_responses=200)
    assert [c.ref for c in result.calibrations] == [refs[0]]
    assert result.calibrations[0].responses == 220 and result.calibrations[0].method == "mml-em"
    assert result.kept == [refs[1], refs[2]]
    assert result.responses == {refs[0]: 220, refs[1]: 199, refs[2]: 150}
    assert result.previous == {refs[0]: item_parameters(versions[0].item)}
    engine = AdaptiveEngine(versions, CatRules(), {**earlier, **{c.ref: c for c in result.calibrations}})
    assert engine.parameters(refs[1]) == item_parameters(versions[1].item)
    assert engine.parameters(refs[2]) == (0.8, [1.1])

    nothing = calibration.calibrate(versions, sessions, {}, min_responses=1000)
    assert nothing.calibrations == [] and nothing.iterations == 0


def test_engine_ignores_a_calibration_that_does_not_fit_the_items_categories() -> None:
    free = ItemVersion(FREE_TEXT[0], 1)
    ref = ItemRef(free.item_id, 1)
    wrong = {ref: ItemCalibration(ref, 1.1, (0.3,), 300, "mml-em")}  # one threshold: a 2-category item
    engine = AdaptiveEngine([free], CatRules(), wrong)
    assert engine.parameters(ref) == item_parameters(free.item)
    with pytest.raises(KeyError):
        engine.parameters(ItemRef(free.item_id, 2))


def test_min_responses_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OrchestratorSettings().calibration_min_responses == 200
    monkeypatch.setenv("XLI_CALIBRATION_MIN_RESPONSES", "50")
    assert OrchestratorSettings().calibration_min_responses == 50
    monkeypatch.setenv("XLI_CALIBRATION_MIN_RESPONSES", "0")
    with pytest.raises(ValueError, match="calibration_min_responses"):
        OrchestratorSettings()


# -- on PostgreSQL ---------------------------------------------------------------------


def _answer_value(item: Item, a: float, thresholds: list[float], theta: float, rng: np.random.Generator) -> float:
    """A score a candidate of ability ``theta`` earns on ``item`` under (a, thresholds)."""
    reached = sum(rng.random() < 1 / (1 + np.exp(-a * (theta - b))) for b in thresholds)
    return reached / len(thresholds)


async def _store_finished_session(db: Database, refs: list[ItemRef], values: list[float]) -> None:
    """One interview through the same calls the service makes: start, answer, score, advance."""
    session_id = uuid.uuid4()

    async def accept(_: SessionRow) -> None:
        return None

    await db.create_session(
        session_id, "simulee", refs[0], cat_seed=0, ineligible=[], time_limit_s=3600,
        extra_time_percent=0, max_items=len(refs),
    )
    for position, value in enumerate(values):
        answer = (await db.submit_answer(session_id, f"k{position}", "answer", accept)).answer
        score = common_pb2.Score(value=value, confidence=1.0)
        await db.store_first_score(session_id, answer.answer_id, score)
        following = refs[position + 1] if position + 1 < len(refs) else None
        await db.advance(session_id, position + 1, following, None if following else "max_items")


async def test_calibration_is_stored_and_used_per_item_version(
    fresh_database: str, make_settings  # type: ignore[no-untyped-def]
) -> None:
    rng = np.random.default_rng(11)
    items = [RIGHT_WRONG[0], RIGHT_WRONG[1], FREE_TEXT[0]]
    # The first item is far harder than authored; the others are as authored.
    truth = [(1.5, [item_parameters(items[0])[1][0] + 2.0])] + [item_parameters(i) for i in items[1:]]
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        bank = await db.import_items(items)
        refs = [ItemRef(v.item_id, v.version) for v in bank]
        for _ in range(12):  # 12 batches of 5 concurrent interviews: 60 responses per item
            await asyncio.gather(
                *(
                    _store_finished_session(
                        db, refs, [_answer_value(i, a, t, theta, rng) for i, (a, t) in zip(items, truth)]
                    )
                    for theta in rng.normal(size=5)
                )
            )
        # An interview still in progress is not calibration data.
        await db.create_session(
            uuid.uuid4(), "in progress", refs[0], cat_seed=0, ineligible=[], time_limit_s=3600,
            extra_time_percent=0, max_items=3,
        )
        settings = make_settings(database_url=fresh_database)

        out, err = io.StringIO(), io.StringIO()
        dry = await calibration.run(fresh_database, settings, min_responses=50, dry_run=True, out=out, err=err)
        assert "dry run: nothing stored" in out.getvalue() and "EM cycle 1:" in err.getvalue()
        assert await db.latest_calibrations() == {}
        assert dry.responses == {ref: 60 for ref in refs}

        out = io.StringIO()
        await calibration.run(fresh_database, settings, min_responses=50, dry_run=False, out=out, err=io.StringIO())
        stored = await db.latest_calibrations()
        assert set(stored) == set(refs)
        assert all(c.responses == 60 and c.method == "mml-em" and c.created_at is not None for c in stored.values())
        assert len(stored[refs[2]].thresholds) == 2
        hard = stored[refs[0]]
        assert hard.thresholds[0] > truth[0][1][0] - 1.0  # moved most of the way from authored
        assert f"{refs[0].item_id}" in out.getvalue().splitlines()[3]  # the largest change leads the table
        assert "stored 3 calibrations" in out.getvalue()

        # Newest row wins; rows are history.
        newer = ItemCalibration(refs[1], 0.9, (0.25,), 61, "mml-em")
        await db.store_calibrations([newer])
        assert (await db.latest_calibrations())[refs[1]].thresholds == (0.25,)
        conn = await asyncpg.connect(fresh_database)
        try:
            with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                await conn.execute("UPDATE item_calibrations SET discrimination = 2")
            assert await conn.fetchval("SELECT count(*) FROM item_calibrations") == 4
        finally:
            await conn.close()

        # The orchestrator uses them from its start.
        async with running_orchestrator(settings) as (app, _):
            engine = app.service.engine
            assert engine.parameters(refs[0]) == (hard.discrimination, list(hard.thresholds))
            assert engine.parameters(refs[1]) == (0.9, [0.25])

        # A new version of the hard item starts again from its authored difficulty.
        changed = parse_item({**items[0].model_dump(), "prompt": items[0].prompt + " (reworded)"})
        current = await db.import_items([changed, *items[1:]])
        assert current[0].version == 2
        engine = AdaptiveEngine(current, CatRules(), await db.latest_calibrations())
        assert engine.parameters(ItemRef(changed.id, 2)) == item_parameters(changed)
        assert engine.parameters(refs[1]) == (0.9, [0.25])
    finally:
        await db.close()


def test_command_needs_a_database(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("XLI_DATA_DIR", str(tmp_path))
    assert calibration.main(["--dry-run"]) == 2
    assert "DATABASE_URL is not set and there is no embedded PostgreSQL" in capsys.readouterr().err
