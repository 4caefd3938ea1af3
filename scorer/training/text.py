"""Word-level text helpers shared by the features and the guards (pure Python, no core_rs)."""

from __future__ import annotations

import re

# English function words; a subset of core_rs's list plus question words, enough to find the
# content words of a reference answer (core_rs keeps its list private).
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either etc
    few for from further get gets got had has have having he her here hers him his how i if in into
    is it its itself just let like may me might more most much must my no nor not now of off on once
    one only or other our out over own same shall she should so some such than that the their them
    then there these they this those through to too under until up us use used uses using very via
    was we were what when where whether which while who whom why will with within without would you
    your describe explain briefly give name list state""".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (an inner apostrophe or dot does not split a word)."""
    return _WORD.findall(text.lower())


def word_key(word: str) -> str:
    """A crude singular form, so "arrays" and "array" compare equal (as core_rs's keys do)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_keys(text: str) -> list[str]:
    """The distinct keys of a text's non-stopwords, in order of first occurrence."""
    seen: dict[str, None] = {}
    for word in words(text):
        if word not in STOPWORDS:
            seen.setdefault(word_key(word), None)
    return list(seen)
