"""Content flags found in prompts and answers: PII, prompt-injection markers, refusals.

Pattern matching, not understanding: the patterns are chosen to be cheap and to rarely fire on
ordinary chat. Card numbers must pass the Luhn check, phone numbers need 8-15 digits and a
separator or a leading ``+`` and end in a group of 3-4 digits, so an order number, a year or a
date does not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){0,3}"
    r"[ .-]\d{3,4}(?![\w-])"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)
US_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")

INJECTION_MARKERS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\b(?:ignore|disregard|forget|override)\b[\w\s,]{0,20}?\b(?:previous|prior|above|"
        r"earlier|preceding|original|system)\s+(?:instructions?|prompts?|rules|directions|"
        r"guidelines|messages?)",
        r"\b(?:reveal|print|show|repeat|output|leak)\b[\w\s]{0,20}?\b(?:system|hidden|initial|"
        r"secret)\s+(?:prompt|instructions?|message)",
        r"\byou\s+are\s+now\s+(?:DAN|in\s+developer\s+mode|unrestricted|unfiltered|jailbroken)",
        r"\b(?:developer|god|jailbreak)\s+mode\s+(?:enabled|on|activated)",
        r"\bdo\s+anything\s+now\b",
        r"<\|im_start\|>|<\|system\|>|\[/?INST\]|^\s*#{2,}\s*system\s*:",
        r"\bBEGIN\s+(?:SYSTEM|ADMIN)\s+(?:PROMPT|INSTRUCTIONS?)\b",
        r"\bact\s+as\s+an?\s+(?:unfiltered|unrestricted|uncensored)\b",
    )
)

REFUSALS = re.compile(
    r"\b(?:I\s*(?:can(?:no|')t|cannot|won't|am\s+(?:not\s+able|unable)\s+to)\s+"
    r"(?:help|assist|comply|provide|do\s+that)"
    r"|I'?m\s+(?:sorry,?\s+but\s+I\s+(?:can(?:no|')t|cannot)|unable\s+to\s+(?:help|assist)))",
    re.IGNORECASE,
)

PII_KINDS = ("email", "card", "phone", "ssn")


@dataclass(frozen=True)
class ContentFlags:
    pii: dict[str, int] = field(default_factory=dict)
    injection: int = 0
    refusal: bool = False

    @property
    def pii_total(self) -> int:
        return sum(self.pii.values())


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _cards(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            spans.append(match.span())
    return spans


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def find_pii(text: str) -> dict[str, int]:
    """Counts per kind; a card or SSN is not counted again as a phone number."""
    if not text:
        return {}
    cards = _cards(text)
    ssns = [m.span() for m in US_SSN.finditer(text)]
    taken = cards + ssns
    phones = 0
    for match in PHONE.finditer(text):
        digits = sum(c.isdigit() for c in match.group())
        if 8 <= digits <= 15 and not _overlaps(match.span(), taken):
            phones += 1
    counts = {
        "email": len(EMAIL.findall(text)),
        "card": len(cards),
        "phone": phones,
        "ssn": len(ssns),
    }
    return {kind: n for kind, n in counts.items() if n}


def count_injection(text: str) -> int:
    """How many distinct injection markers the text carries."""
    if not text:
        return 0
    return sum(1 for marker in INJECTION_MARKERS if marker.search(text))


def is_refusal(answer: str) -> bool:
    return bool(answer) and REFUSALS.search(answer[:400]) is not None


def scan_prompt(text: str) -> ContentFlags:
    return ContentFlags(pii=find_pii(text), injection=count_injection(text))


def scan_answer(text: str, finish_reason: str = "stop") -> ContentFlags:
    """PII the model wrote back, and whether it refused (or a filter cut it off)."""
    return ContentFlags(
        pii=find_pii(text), refusal=finish_reason == "content_filter" or is_refusal(text)
    )
