"""The adaptive engine's wiring: IRT parameters for bank items, sessions replayed
from what PostgreSQL stores, the next-question decision and the result.

The engine itself is :mod:`core_rs` (``CatBank``/``CatSession``/``ExposureControl``).
Nothing here keeps per-session state: every decision replays the session's stored
items and scores into a fresh ``CatSession`` (microseconds), so a restarted or
scaled-out orchestrator decides exactly as the first one would have.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core_rs import CatBank, CatSession, ExposureControl
from orchestrator.bank import DEFAULT_DIFFICULTY, Criterion, FreeTextItem, Item, ItemVersion
from orchestrator.db import ItemCalibration, ItemRef, SessionRow, Turn
from xlinterview.v1 import common_pb2, orchestrator_pb2

log = logging.getLogger(__name__)

# Starting discriminations until items are calibrated on real answers: an evaluated
# formula separates levels better than a guessable multiple choice, and a typed number
# cannot be guessed either.
KIND_DISCRIMINATION = {"formula": 1.4, "free_text": 1.2, "multiple_choice": 1.0, "numeric": 1.3}
# Authored difficulty 1..5 maps to b = -2..2 on the ability scale.
DIFFICULTY_STEP = 1.0
# Free-text answers earn partial credit: three GRM categories (missed, partial, full)
# whose boundaries sit this far either side of the item's difficulty.
PARTIAL_CREDIT_HALF_WIDTH = 0.6
Z_95 = 1.959963984540054

REASON_FINISH_REQUESTED = "finish_requested"

# The scorer's signal prefix of its guards (scorer.guards.GUARD_SIGNAL_PREFIX; the
# services import no code of each other's, a test pins the two together).
GUARD_SIGNAL_PREFIX = "guard:"

# Credit an item earns only in its follow-up counts this much: the candidate needed
# the hint of which point was missing, so it is worth less than volunteering it.
FOLLOW_UP_CREDIT = 0.5


def follow_up_credit(original: float, combined: float) -> float:
    """The score an item counts with in the ability estimate after a follow-up.

    ``original`` grades the first answer alone, ``combined`` the first answer and the
    follow-up's together. Credit gained in the follow-up counts half
    (:data:`FOLLOW_UP_CREDIT`) and a weaker combined answer takes nothing away, so the
    item counts ``original + 0.5 * max(0, combined - original)``; e.g. 0.2 then 1.0
    counts 0.6.
    """
    return original + FOLLOW_UP_CREDIT * max(0.0, combined - original)


def missed_criterion(item: Item, score: common_pb2.Score, min_weight: float) -> Criterion | None:
    """The rubric criterion a follow-up should ask about, or None for no follow-up.

    Only free-text answers get follow-ups, never one a guard acted on (gibberish,
    off-topic, text aimed at the grader...: a hint would only coach it), and only for a
    criterion the scorer reported as unmet whose authored weight is at least
    ``min_weight``. Of several, the heaviest, then the first in the rubric.

    Args:
        item: The item answered.
        score: The answer's score.
        min_weight: Smallest rubric weight worth a follow-up; 0 turns follow-ups off.
    """
    if min_weight <= 0 or not isinstance(item, FreeTextItem):
        return None
    if any(signal.startswith(GUARD_SIGNAL_PREFIX) for signal in score.signals):
        return None
    unmet = {c.name for c in score.criteria if not c.met}
    candidates = [c for c in item.rubric.criteria if c.name in unmet and c.weight >= min_weight]
    return max(candidates, key=lambda c: c.weight, default=None)


def cat_items(items: Sequence[ItemRef]) -> int:
    """How many of ``items`` the engine chose: follow-ups do not count toward the length."""
    return sum(not ref.is_follow_up for ref in items)


@dataclass(frozen=True)
class CatRules:
    """How long interviews are and how items are chosen.

    Attributes:
        max_items: Most questions per interview.
        min_items: Fewest answers before the standard-error rule may stop.
        se_target: Stop once the ability's standard error is below this.
        max_exposure: Target maximum share of interviews that ask any one item.
        randomesque_k: The first question is drawn from this many most informative.
    """

    max_items: int = 12
    min_items: int = 8
    se_target: float = 0.3
    max_exposure: float = 0.25
    randomesque_k: int = 5


def item_parameters(item: Item) -> tuple[float, list[float]]:
    """Starting IRT parameters ``(a, thresholds)`` from the authored difficulty and kind."""
    b = (item.difficulty - DEFAULT_DIFFICULTY) * DIFFICULTY_STEP
    a = KIND_DISCRIMINATION[item.kind]
    if score_categories(item) == 3:
        return a, [b - PARTIAL_CREDIT_HALF_WIDTH, b + PARTIAL_CREDIT_HALF_WIDTH]
    return a, [b]


def score_categories(item: Item) -> int:
    """How many IRT score categories the item's kind has: 3 for partial credit, else 2."""
    return 3 if isinstance(item, FreeTextItem) else 2


def score_category(item: Item, value: float) -> int:
    """The IRT score category of a 0..1 score: right/wrong at 0.5 for 2PL items,
    the nearest of missed/partial/full for partial-credit items."""
    top = score_categories(item) - 1
    return min(top, max(0, int(math.floor(value * top + 0.5))))


def current_parameters(
    version: ItemVersion, calibrations: Mapping[ItemRef, ItemCalibration]
) -> tuple[float, list[float]]:
    """The parameters the engine uses for an item version: its newest calibration when
    there is one, else :func:`item_parameters`.

    A calibration belongs to exactly one ``(item_id, version)``: a new version of an
    item starts again from its authored difficulty. A calibration whose number of
    thresholds does not fit the item's categories cannot be used and is ignored.
    """
    calibration = calibrations.get(ItemRef(version.item_id, version.version))
    if calibration is None:
        return item_parameters(version.item)
    if len(calibration.thresholds) != score_categories(version.item) - 1:
        log.warning(
            "ignoring the calibration of %s@v%d: %d thresholds for a %d-category item",
            version.item_id,
            version.version,
            len(calibration.thresholds),
            score_categories(version.item),
        )
        return item_parameters(version.item)
    return calibration.discrimination, list(calibration.thresholds)


def counted_values(items: Sequence[ItemRef], scores: Mapping[int, float]) -> dict[int, float]:
    """The 0..1 value each scored item counts with in the ability estimate.

    A follow-up is not an item of its own: its combined score raises its item's
    value by :func:`follow_up_credit` (while it waits for its score, the item counts
    with the original score alone). The engine's replay and the calibration both read
    responses through this, so calibration sees exactly what the engine saw.

    Args:
        items: A session's asked items in order (``SessionRow.items``).
        scores: The newest score value by 0-based position, for the scored answers.

    Returns:
        By position of each scored item the engine chose (follow-ups left out).
    """
    follow_ups = {ref.follow_up_of: position for position, ref in enumerate(items) if ref.is_follow_up}
    values = {}
    for position, ref in enumerate(items):
        value = scores.get(position)
        if ref.is_follow_up or value is None:
            continue
        combined = scores.get(follow_ups.get(position, -1))
        values[position] = value if combined is None else follow_up_credit(value, combined)
    return values


class AdaptiveEngine:
    """Chooses questions and estimates ability for every session on one bank.

    Args:
        bank: The current item versions.
        rules: Stop and selection rules.
        calibrations: Estimated parameters by item version (see
            ``Database.latest_calibrations``); versions without one use their authored
            parameters.
    """

    def __init__(
        self,
        bank: Sequence[ItemVersion],
        rules: CatRules,
        calibrations: Mapping[ItemRef, ItemCalibration] | None = None,
    ) -> None:
        if not bank:
            raise ValueError("the question bank is empty")
        self.rules = rules
        self._bank = list(bank)
        self._refs = [ItemRef(v.item_id, v.version) for v in bank]
        self._items = [v.item for v in bank]
        self._index = {v.item_id: i for i, v in enumerate(bank)}
        self.areas = sorted({item.skill_area for item in self._items})
        self.use_calibrations(calibrations or {})
        self._exposure = ExposureControl(len(bank), rules.max_exposure)
        # Interviews cover every area once before the standard error may end them.
        self._min_items = min(rules.max_items, max(rules.min_items, len(self.areas)))

    def use_calibrations(self, calibrations: Mapping[ItemRef, ItemCalibration]) -> None:
        """Uses ``calibrations`` (by item version) instead of the authored parameters.

        Sessions are replayed on every decision, so the next decision of every session
        uses the new parameters; the exposure history is kept.
        """
        area_index = {area: i for i, area in enumerate(self.areas)}
        self._params = [current_parameters(version, calibrations) for version in self._bank]
        self._cat = CatBank(
            [a for a, _ in self._params],
            [t for _, t in self._params],
            [area_index[i.skill_area] for i in self._items],
        )

    def parameters(self, ref: ItemRef) -> tuple[float, list[float]]:
        """The ``(a, thresholds)`` the engine uses for a bank item version."""
        index = self._index.get(ref.item_id)
        if index is None or self._refs[index] != ref.version_ref:
            raise KeyError(f"{ref.item_id}@v{ref.version} is not in the bank")
        a, thresholds = self._params[index]
        return a, list(thresholds)

    def restore_exposure(self, sessions: int, ineligible: dict[str, int], asked: dict[str, int]) -> None:
        """Loads the exposure history of finished sessions (see ``Database.exposure_counts``)."""
        ids = [ref.item_id for ref in self._refs]
        self._exposure = ExposureControl(
            len(ids),
            self.rules.max_exposure,
            n_sessions=sessions,
            n_eligible=[max(0, sessions - ineligible.get(i, 0)) for i in ids],
            n_administered=[asked.get(i, 0) for i in ids],
        )

    def _session(self, seed: int, ineligible: Sequence[str], max_items: int) -> CatSession:
        excluded = set(ineligible)
        return CatSession(
            self._cat,
            blueprint=[1.0] * len(self.areas),
            max_items=max_items,
            min_items=min(self._min_items, max_items),
            se_target=self.rules.se_target,
            eligible=[ref.item_id not in excluded for ref in self._refs],
            randomesque_items=1,
            randomesque_k=self.rules.randomesque_k,
            seed=seed,
        )

    def plan(self) -> tuple[int, list[str], ItemRef]:
        """A new session's seed, its ineligible item ids and its first question."""
        seed = secrets.randbits(63)
        eligible = self._exposure.draw(seed)
        ineligible = [ref.item_id for ref, ok in zip(self._refs, eligible) if not ok]
        first = self._session(seed, ineligible, self.rules.max_items).next_item()
        assert first is not None  # a non-empty bank always has a first item
        return seed, ineligible, self._refs[first]

    def replay(self, session: SessionRow, turns: Sequence[Turn]) -> CatSession:
        """The engine state of a stored session: its items asked and its scored answers.

        A follow-up is not an item of its own: its combined score raises its item's
        response by :func:`follow_up_credit` (while it waits for its score, the item
        counts with the original score alone).
        """
        cat = self._session(session.cat_seed, session.ineligible, session.max_items or self.rules.max_items)
        values = counted_values(
            session.items, {t.answer.position: t.score.value for t in turns if t.score is not None}
        )
        for position, ref in enumerate(session.items):
            index = self._index.get(ref.item_id)
            if ref.is_follow_up or index is None:
                # A follow-up counts with its item (counted_values); a retired item
                # counts toward the length, not the estimate.
                continue
            cat.administer(index)
            if position in values:
                cat.record(index, score_category(self._items[index], values[position]))
        return cat

    def decide(self, session: SessionRow, turns: Sequence[Turn]) -> tuple[ItemRef | None, str | None]:
        """The next question, or why to stop; unscored answers are left out of the estimate."""
        if cat_items(session.items) >= (session.max_items or self.rules.max_items):
            return None, "max_items"
        cat = self.replay(session, turns)
        index = cat.next_item()
        if index is None:
            return None, cat.stop_reason() or "bank_exhausted"
        return self._refs[index], None

    def record_finished(self, session: SessionRow) -> None:
        """Counts a finished session toward the exposure rates."""
        eligible = [ref.item_id not in set(session.ineligible) for ref in self._refs]
        asked = [self._index[ref.item_id] for ref in session.items if ref.item_id in self._index and not ref.is_follow_up]
        self._exposure.record(eligible, asked)

    def result(self, session: SessionRow, turns: Sequence[Turn]) -> orchestrator_pb2.Result:
        """Ability, its 95% interval and per-skill estimates from the scored answers."""
        cat = self.replay(session, turns)
        theta, se = cat.theta, cat.standard_error
        result = orchestrator_pb2.Result(
            ability=theta,
            standard_error=se,
            ci_low=theta - Z_95 * se,
            ci_high=theta + Z_95 * se,
            stop_reason=session.stop_reason or "",
            answers_scored=len(cat.responses),
        )
        for area, (a_theta, a_se, count) in zip(self.areas, cat.area_estimates()):
            if count:
                result.skills.add(skill_area=area, ability=a_theta, standard_error=a_se, answers=count)
        return result
