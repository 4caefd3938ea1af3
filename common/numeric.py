"""Reading a number the way a candidate types it: ``1,234.50``, ``$99``, ``12%``, ``(250)``.

Shared by the orchestrator, which refuses an answer to a numeric question that is not a
number before storing it, and the scorer, which grades the number. Both must read the
same text the same way, so the rules live here once.

Values are :class:`decimal.Decimal`: a tolerance edge such as ``2.685`` against
``2.68 ± 0.005`` must be decided on the digits typed, not on binary rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MAX_NUMBER_CHARS = 64
# Enough for any amount an interview asks about; keeps Decimal arithmetic small.
MAX_EXPONENT = 20
PERCENT_UNIT = "%"
CURRENCY_SIGNS = "$€£¥₹"
# Spaces people and spreadsheets put between digit groups: plain, no-break, narrow no-break.
_GROUP_SPACES = " \u00a0\u202f"
_MINUS = "-\u2212"

# Digits, optionally grouped by threes with one consistent separator, an optional
# fraction and an optional exponent. At least one digit is checked separately.
_BODY = re.compile(
    r"(?P<int>\d{1,3}(?P<sep>[,\u0020\u00a0\u202f])\d{3}(?:(?P=sep)\d{3})*|\d*)"
    r"(?P<frac>\.\d*)?"
    r"(?P<exp>[eE][+-]?\d{1,3})?"
)


class NotANumber(ValueError):
    """The text is not a number; the message says why in words a candidate understands."""


@dataclass(frozen=True)
class ParsedNumber:
    """A number read from an answer.

    Attributes:
        value: The number.
        text: The answer as typed (surrounding spaces removed).
        ignored: How the text was read beyond plain digits, e.g. ``('the currency sign "$" set aside',)``.
    """

    value: Decimal
    text: str
    ignored: tuple[str, ...] = ()

    def understood(self) -> str:
        """A sentence saying how the answer was read, for the score's evidence."""
        sentence = f'read your answer "{self.text}" as {format_decimal(self.value)}'
        if self.ignored:
            sentence += " (" + "; ".join(self.ignored) + ")"
        return sentence


def format_decimal(value: Decimal) -> str:
    """Plain notation without trailing zeros, e.g. ``1234.5`` or ``-0.07``."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def parse_number(text: str, unit: str = "") -> ParsedNumber:
    """Reads a number leniently: surrounding spaces, a sign, a leading currency sign,
    thousands separators, a trailing ``%``, accounting parentheses for a negative
    amount, and the question's own unit before or after the number.

    A trailing ``%`` divides by 100 as Excel does (``12%`` is 0.12), except when the
    question's unit is ``%``: then the expected value is in percent points and ``12%``
    is 12.

    Args:
        text: The answer as typed.
        unit: The question's unit, e.g. ``"days"``; empty for a bare number.

    Returns:
        The number, with what was set aside to read it.

    Raises:
        NotANumber: When the text is not one number; a decimal comma (``3,5``) is refused
            rather than guessed, as it could also be a thousands separator.
    """
    shown = text.strip()
    if not shown:
        raise NotANumber("the answer is empty; type a number")
    if len(shown) > MAX_NUMBER_CHARS:
        raise NotANumber(f"a number has at most {MAX_NUMBER_CHARS} characters")
    rest, ignored = shown, []
    unit = unit.strip()
    if unit and unit != PERCENT_UNIT:
        lowered, wanted = rest.lower(), unit.lower()
        if lowered.endswith(wanted) and len(rest) > len(unit):
            rest, ignored = rest[: -len(unit)].strip(), [f'the unit "{unit}" set aside']
        elif lowered.startswith(wanted) and len(rest) > len(unit):
            rest, ignored = rest[len(unit) :].strip(), [f'the unit "{unit}" set aside']
    negative = False
    if rest.startswith("(") and rest.endswith(")"):
        # Accounting formats show a negative amount in parentheses.
        rest, negative = rest[1:-1].strip(), True
        ignored.append("parentheses read as a minus sign")
    percent = rest.endswith("%")
    if percent:
        rest = rest[:-1].rstrip()
    # A sign and a currency sign come in either order: -$5 and $-5 are both written.
    for _ in range(2):
        if rest[:1] in _MINUS or rest[:1] == "+":
            if rest[:1] in _MINUS:
                negative = not negative
            rest = rest[1:].lstrip()
        elif rest[:1] and rest[:1] in CURRENCY_SIGNS:
            ignored.append(f'the currency sign "{rest[0]}" set aside')
            rest = rest[1:].lstrip()
    match = _BODY.fullmatch(rest)
    if match is None or not any(ch.isdigit() for ch in rest):
        raise NotANumber(_why_not(shown, rest))
    if match.group("sep"):
        ignored.append("thousands separators set aside")
    digits = match.group("int").replace(match.group("sep") or ",", "") + (match.group("frac") or "")
    try:
        value = Decimal((digits or "0") + (match.group("exp") or ""))
    except InvalidOperation:
        raise NotANumber(_why_not(shown, rest)) from None
    if value != 0 and abs(value.adjusted()) > MAX_EXPONENT:
        raise NotANumber(f"the number is outside the range an answer can have (1e-{MAX_EXPONENT} to 1e{MAX_EXPONENT})")
    if percent:
        if unit == PERCENT_UNIT:
            ignored.append("% set aside, as the answer is in %")
        else:
            value /= 100
            ignored.append("% read as hundredths, as in Excel")
    return ParsedNumber(-value if negative else value, shown, tuple(ignored))


def _why_not(shown: str, rest: str) -> str:
    if shown.startswith("="):
        return f'"{shown}" is a formula; type the number it returns'
    if re.fullmatch(r"[+\-\u2212]?\d+,\d{1,2}", rest) or re.fullmatch(r"\d{1,3}(\.\d{3})+,\d+", rest):
        return f'"{shown}" looks like a decimal comma; write the decimals with a point, e.g. 3.5'
    if "," in rest:
        return f'"{shown}" is not a number: a comma may only separate thousands, as in 1,234,567'
    return f'"{shown}" is not a number; type digits, e.g. 1234.5, 1,234.5, -7 or 12%'
