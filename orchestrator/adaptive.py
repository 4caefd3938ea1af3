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
from collections.abc import Sequence
from dataclasses import dataclass

from core_rs import CatBank, CatSession, ExposureControl
from orchestrator.bank import DEFAULT_DIFFICULTY, FreeTextItem, Item, ItemVersion
from orchestrator.db import ItemRef, SessionRow, Turn
from xlinterview.v1 import orchestrator_pb2

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
    if isinstance(item, FreeTextItem):
        return a, [b - PARTIAL_CREDIT_HALF_WIDTH, b + PARTIAL_CREDIT_HALF_WIDTH]
    return a, [b]


def score_category(item: Item, value: float) -> int:
    """The IRT score category of a 0..1 score: right/wrong at 0.5 for 2PL items,
    the nearest of missed/partial/full for partial-credit items."""
    _, thresholds = item_parameters(item)
    top = len(thresholds)
    return min(top, max(0, int(math.floor(value * top + 0.5))))


class AdaptiveEngine:
    """Chooses questions and estimates ability for every session on one bank.

    Args:
        bank: The current item versions.
        rules: Stop and selection rules.
    """

    def __init__(self, bank: Sequence[ItemVersion], rules: CatRules) -> None:
        if not bank:
            raise ValueError("the question bank is empty")
        self.rules = rules
        self._refs = [ItemRef(v.item_id, v.version) for v in bank]
        self._items = [v.item for v in bank]
        self._index = {v.item_id: i for i, v in enumerate(bank)}
        self.areas = sorted({item.skill_area for item in self._items})
        area_index = {area: i for i, area in enumerate(self.areas)}
        params = [item_parameters(item) for item in self._items]
        self._cat = CatBank([a for a, _ in params], [t for _, t in params], [area_index[i.skill_area] for i in self._items])
        self._exposure = ExposureControl(len(bank), rules.max_exposure)
        # Interviews cover every area once before the standard error may end them.
        self._min_items = min(rules.max_items, max(rules.min_items, len(self.areas)))

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
        """The engine state of a stored session: its items asked and its scored answers."""
        cat = self._session(session.cat_seed, session.ineligible, session.max_items or self.rules.max_items)
        scores = {t.answer.position: t.score for t in turns}
        for position, ref in enumerate(session.items):
            index = self._index.get(ref.item_id)
            if index is None:
                # Retired from the bank: it still counts toward the length, not the estimate.
                continue
            cat.administer(index)
            score = scores.get(position)
            if score is not None:
                cat.record(index, score_category(self._items[index], score.value))
        return cat

    def decide(self, session: SessionRow, turns: Sequence[Turn]) -> tuple[ItemRef | None, str | None]:
        """The next question, or why to stop; unscored answers are left out of the estimate."""
        if len(session.items) >= (session.max_items or self.rules.max_items):
            return None, "max_items"
        cat = self.replay(session, turns)
        index = cat.next_item()
        if index is None:
            return None, cat.stop_reason() or "bank_exhausted"
        return self._refs[index], None

    def record_finished(self, session: SessionRow) -> None:
        """Counts a finished session toward the exposure rates."""
        eligible = [ref.item_id not in set(session.ineligible) for ref in self._refs]
        asked = [self._index[ref.item_id] for ref in session.items if ref.item_id in self._index]
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
