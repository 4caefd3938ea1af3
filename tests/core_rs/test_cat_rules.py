"""Selection rules of the adaptive engine as the orchestrator drives them through Python."""

from __future__ import annotations

import pytest

from core_rs import CatBank, CatSession, ExposureControl

# At theta = 0 item 0 (a = 2, b = 0.7) carries more information than item 1 (a = 1,
# b = 0), but not once weighted by a^(-1.5 SE) at the prior's SE of 1.
SHARP_OFF_TARGET, BROAD_ON_TARGET = 0, 1


def two_items(prior_sd: float = 1.0) -> CatBank:
    return CatBank([2.0, 1.0], [[0.7], [0.0]], [0, 0], prior_sd=prior_sd)


def test_an_a_discount_spares_high_discrimination_items_while_the_estimate_is_uncertain() -> None:
    assert CatSession(two_items(), randomesque_items=0, a_discount=1.5).next_item() == BROAD_ON_TARGET


def test_the_default_is_plain_maximum_information() -> None:
    assert CatSession(two_items(), randomesque_items=0).next_item() == SHARP_OFF_TARGET
    assert CatSession(two_items(), randomesque_items=0, a_discount=0.0).next_item() == SHARP_OFF_TARGET


def test_a_settled_estimate_takes_the_most_informative_item() -> None:
    # A prior SD of 0.2 is an estimate as settled as twenty-odd answers make it.
    assert CatSession(two_items(prior_sd=0.2), randomesque_items=0, a_discount=1.5).next_item() == SHARP_OFF_TARGET


def test_negative_a_discount_is_rejected() -> None:
    with pytest.raises(ValueError, match="a_discount"):
        CatSession(two_items(), a_discount=-0.5)


def test_orchestrator_arguments_still_build_a_session() -> None:
    """The keyword set orchestrator/adaptive.py passes, with exposure flags drawn as it draws them."""
    n = 40
    bank = CatBank([1.0 + 0.1 * (i % 5) for i in range(n)], [[-2.0 + 0.1 * i] for i in range(n)], [i % 4 for i in range(n)])
    exposure = ExposureControl(n, 0.25, n_sessions=0, n_eligible=[0] * n, n_administered=[0] * n)
    eligible = exposure.draw(7)
    session = CatSession(
        bank,
        blueprint=[1.0] * 4,
        max_items=12,
        min_items=8,
        se_target=0.3,
        eligible=eligible,
        randomesque_items=1,
        randomesque_k=5,
        seed=7,
    )
    item = session.next_item()
    while item is not None:
        item = session.step(item, 1)
    assert session.stop_reason() in {"se_target", "max_items"}
    assert 8 <= len(session.administered) <= 12 and session.blueprint_met()
    exposure.record(eligible, session.administered)
    assert exposure.n_sessions == 1
