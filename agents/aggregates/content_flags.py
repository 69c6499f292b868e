"""Content flags found in prompts and answers: PII, prompt-injection markers, refusals.

Pattern matching, not understanding: the patterns are chosen to be cheap and to rarely fire on
ordinary chat. Card numbers must pass the Luhn check, phone numbers need 8-15 digits and a
separator or a leading ``+`` and end in a group of 3-4 digits, so an order number, a year or a
date does not count.

The scan runs on the worker's event loop, so its cost is bounded and linear (issue #11: the old
e-mail pattern took seconds on a run of ``%``):

- A message longer than ``max_chars`` (``TOKENWIRE_AGG_SCAN_MAX_CHARS``) is scanned on its first
  quarter and last three quarters of that budget (the newest user turn is at the end of a
  prompt); the middle is not scanned, and ``ContentFlags.truncated`` says so.
- No pattern has nested or overlapping unbounded quantifiers, and every unbounded repeat is
  entered only at the start of a run of its characters (the e-mail local part includes ``%`` in
  its "no start inside a run" check), so each character is visited a bounded number of times.
- Each pattern starts with a character class and checks what precedes it with a lookbehind
  *after* that first character, so ``re`` can skip to candidate characters in C.
- At most ``MAX_CANDIDATES`` matches per pattern and message are examined in Python (Luhn, digit
  counts); counts stop there, far beyond where the pii signal saturates.

``tokenwire.bench.scanners`` measures the cost on adversarial and ordinary 100k inputs.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from itertools import islice

from tokenwire.aggregates_settings import SCAN_MAX_CHARS as DEFAULT_MAX_CHARS

MAX_CANDIDATES = 64
# Where a cut is moved back to the nearest whitespace, so a cut does not split a token.
_CUT_SLACK = 64

# The first character is matched first; the lookbehind after it checks the one before it.
EMAIL = re.compile(
    r"[A-Za-z0-9._%+-](?<![\w.%+-].)[A-Za-z0-9._%+-]*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
CARD = re.compile(r"\d(?<![\d-]\d)(?:[ -]?\d){12,18}(?![\d-])")
_PHONE_BODY = r"\d{2,4}(?:[ .-]\d{2,4}){0,3}[ .-]\d{3,4}(?![\w-])"
PHONE = re.compile(
    r"[+(\d](?<![\w+].)(?:"
    rf"(?<=\+)\d{{1,3}}[ .-]?(?:\(\d{{1,4}}\)[ .-]?)?{_PHONE_BODY}"  # +44 (20) 7946 0958
    rf"|(?<=\()\d{{1,4}}\)[ .-]?{_PHONE_BODY}"  # (555) 123-4567
    r"|(?<=\d)\d{1,3}(?:[ .-]\d{2,4}){0,3}[ .-]\d{3,4}(?![\w-])"  # 020 7946 0958
    r"|(?<=\+)\d{8,15}(?!\w)"  # +442079460958
    r")"
)
US_SSN = re.compile(r"\d(?<![\d-]\d)\d{2}-\d{2}-\d{4}(?![\d-])")
# A card or SSN needs 9+ digits, a phone 8+: text without 8 digits close together has none.
_DIGIT_RUN = re.compile(r"\d(?:[ ().-]{0,2}\d){7}")


def _word_start(*words: str) -> str:
    """``\\b(?:w1|w2)`` written so that ``re`` can skip to the words' first letters in C."""
    return "(?:" + "|".join(f"{w[0]}(?<!\\w.){w[1:]}" for w in words) + ")"


# On case-folded text (``fold``), so no IGNORECASE, which would stop ``re`` skipping ahead.
INJECTION_MARKERS = tuple(
    re.compile(pattern)
    for pattern in (
        _word_start("ignore", "disregard", "forget", "override")
        + r"\b[\w\s,]{0,20}?\b(?:previous|prior|above|earlier|preceding|original|system)\s+"
        r"(?:instructions?|prompts?|rules|directions|guidelines|messages?)",
        _word_start("reveal", "print", "show", "repeat", "output", "leak")
        + r"\b[\w\s]{0,20}?\b(?:system|hidden|initial|secret)\s+(?:prompt|instructions?|message)",
        _word_start("you")
        + r"\s+are\s+now\s+(?:dan|in\s+developer\s+mode|unrestricted|unfiltered|jailbroken)",
        _word_start("developer", "god", "jailbreak") + r"\s+mode\s+(?:enabled|on|activated)",
        _word_start("do") + r"\s+anything\s+now\b",
        r"<\|im_start\|>|<\|system\|>|\[/?inst\]",
        _word_start("begin") + r"\s+(?:system|admin)\s+(?:prompt|instructions?)\b",
        _word_start("act") + r"\s+as\s+an?\s+(?:unfiltered|unrestricted|uncensored)\b",
    )
)
# The same marker as ``<|im_start|>`` above, but only at the very start of the text.
SYSTEM_HEADER = re.compile(r"\s*#{2,}\s*system\s*:")

REFUSALS = re.compile(
    r"\b(?:I\s*(?:can(?:no|')t|cannot|won't|am\s+(?:not\s+able|unable)\s+to)\s+"
    r"(?:help|assist|comply|provide|do\s+that)"
    r"|I'?m\s+(?:sorry,?\s+but\s+I\s+(?:can(?:no|')t|cannot)|unable\s+to\s+(?:help|assist)))",
    re.IGNORECASE,
)
REFUSAL_HEAD_CHARS = 400

PII_KINDS = ("email", "card", "phone", "ssn")


@dataclass(frozen=True)
class ContentFlags:
    pii: dict[str, int] = field(default_factory=dict)
    injection: int = 0
    refusal: bool = False
    # The text was longer than the scan budget: its middle was not scanned.
    truncated: bool = False

    @property
    def pii_total(self) -> int:
        return sum(self.pii.values())


def fold(text: str) -> str:
    """Lower case, plus the two letters IGNORECASE matches to ASCII that ``lower`` keeps
    (dotless i, long s); ``İ`` lowers to ``i`` + a combining dot, which is dropped."""
    return text.lower().replace("\u0131", "i").replace("\u017f", "s").replace("\u0307", "")


def scanned_parts(text: str, max_chars: int) -> tuple[list[str], bool]:
    """The text itself, or its head and tail within ``max_chars`` (cut at whitespace)."""
    if len(text) <= max_chars:
        return [text], False
    head_end = max_chars // 4
    tail_start = len(text) - (max_chars - head_end)
    space = text.rfind(" ", head_end - _CUT_SLACK, head_end)
    head_end = space if space > 0 else head_end
    space = text.find(" ", tail_start, tail_start + _CUT_SLACK)
    tail_start = space + 1 if space >= 0 else tail_start
    return [text[:head_end], text[tail_start:]], True


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _candidates(pattern: re.Pattern[str], text: str) -> list[re.Match[str]]:
    return list(islice(pattern.finditer(text), MAX_CANDIDATES))


def _cards(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _candidates(CARD, text):
        digits = match.group().replace(" ", "").replace("-", "")
        if luhn_valid(digits):  # the pattern allows 13-19 digits only
            spans.append(match.span())
    return spans


def _merged(spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted, disjoint starts and ends covering ``spans`` (a card can hold an SSN)."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(spans):
        if ends and start < ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _overlaps(span: tuple[int, int], starts: list[int], ends: list[int]) -> bool:
    """Whether ``span`` overlaps one of the disjoint spans ``zip(starts, ends)``."""
    index = bisect.bisect_right(ends, span[0])  # the first span ending after our start
    return index < len(starts) and starts[index] < span[1]


def _count_digits(text: str) -> int:
    return len(text) - sum(text.count(sep) for sep in " .-()+")


def _find_pii_in(text: str) -> dict[str, int]:
    counts = {"email": 0, "card": 0, "phone": 0, "ssn": 0}
    if "@" in text:
        counts["email"] = len(_candidates(EMAIL, text))
    if _DIGIT_RUN.search(text) is None:
        return counts
    cards = _cards(text)
    ssns = [m.span() for m in _candidates(US_SSN, text)]
    starts, ends = _merged(cards + ssns)
    for match in _candidates(PHONE, text):
        if 8 <= _count_digits(match.group()) <= 15 and not _overlaps(match.span(), starts, ends):
            counts["phone"] += 1
    counts["card"], counts["ssn"] = len(cards), len(ssns)
    return counts


def find_pii(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> dict[str, int]:
    """Counts per kind; a card or SSN is not counted again as a phone number."""
    return _find_pii(scanned_parts(text, max_chars)[0])


def _find_pii(parts: list[str]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        if not part:
            continue
        for kind, count in _find_pii_in(part).items():
            if count:
                total[kind] = total.get(kind, 0) + count
    return total


def _markers_in(text: str, at_start: bool) -> set[int]:
    folded = fold(text)
    found = {index for index, marker in enumerate(INJECTION_MARKERS) if marker.search(folded)}
    if at_start and SYSTEM_HEADER.match(folded):
        found.add(5)  # the ``<|im_start|>`` family
    return found


def count_injection(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> int:
    """How many distinct injection markers the text carries."""
    return _count_injection(scanned_parts(text, max_chars)[0])


def _count_injection(parts: list[str]) -> int:
    found: set[int] = set()
    for index, part in enumerate(parts):
        if part:
            found |= _markers_in(part, at_start=index == 0)
    return len(found)


def is_refusal(answer: str) -> bool:
    return bool(answer) and REFUSALS.search(answer[:REFUSAL_HEAD_CHARS]) is not None


def scan_prompt(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> ContentFlags:
    parts, truncated = scanned_parts(text, max_chars)
    return ContentFlags(
        pii=_find_pii(parts), injection=_count_injection(parts), truncated=truncated
    )


def scan_answer(
    text: str, finish_reason: str = "stop", max_chars: int = DEFAULT_MAX_CHARS
) -> ContentFlags:
    """PII the model wrote back, and whether it refused (or a filter cut it off)."""
    parts, truncated = scanned_parts(text, max_chars)
    return ContentFlags(
        pii=_find_pii(parts),
        refusal=finish_reason == "content_filter" or is_refusal(text),
        truncated=truncated,
    )
