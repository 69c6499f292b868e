"""``python -m tokenwire.bench.scanners``: what the content scanners cost per message.

The aggregates agent scans every prompt and answer on the worker's event loop
(``agents/aggregates/content_flags.py``), so a slow scan stalls every stream of that worker.
This times ``scan_prompt`` and ``scan_answer`` on 100k-character inputs -- ordinary chat text and
one adversarial input per pattern (long runs of each character class the patterns repeat over,
near-misses that make them backtrack) -- and reports p50/p99/max over repeated runs, first with
the configured scan budget (``TOKENWIRE_AGG_SCAN_MAX_CHARS``), then with the whole input scanned,
and the time per character at 25k, 100k and 400k (flat when the scan is linear).

    python -m tokenwire.bench.scanners [--runs 200] [--chars 100000] [--target-ms 5]

Exit code 1 when a p99 of ``scan_prompt`` with the configured budget misses the target.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

from agents.aggregates.content_flags import scan_answer, scan_prompt
from tokenwire.aggregates_settings import AggregatesSettings

UNITS: dict[str, str] = {
    "percent run (e-mail local part)": "%",
    "local-part run, no @": "a",
    "a@ chain": "a@",
    "dotted domain, no TLD": "x@1.1",
    "digits": "1",
    "digits and spaces": "1 ",
    "digit pairs (phone groups)": "12 ",
    "plus and digit": "+1 ",
    "valid cards": "4111 1111 1111 1111 ",
    "ssns": "078-05-1120 ",
    "phones": "(555) 123-4567 ",
    "spaces": " ",
    "whitespace mix": " \t\n",
    "injection verb, no object": "ignore ",
    "injection near-miss": "ignore previous       ",
    "you are now": "you are now ",
    "hashes": "#",
    "marker prefixes": "<|[",
    "refusal near-miss": "I can't ",
}

WORDS = (
    "the a of to and in is it that for on with as was at by this be from kafka partition "
    "consumer group offset stream token window latency please explain how why what example"
).split()


def ordinary_text(chars: int, seed: int = 7) -> str:
    """Chat-like prose with the odd number, date, address and phone number."""
    rng = random.Random(seed)
    extras = ["2024", "3.9.2", "jane.doe@example.com", "+44 20 7946 0958", "order 123456", "12%"]
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(extras) if rng.random() < 0.02 else rng.choice(WORDS)
        words.append(word + ("." if rng.random() < 0.07 else ""))
        size += len(word) + 2
    return " ".join(words)[:chars]


def adversarial_inputs(chars: int) -> dict[str, str]:
    inputs = {name: (unit * (chars // len(unit) + 1))[:chars] for name, unit in UNITS.items()}
    inputs["## header then hashes"] = ("##" + "#" * chars)[:chars]
    inputs["everything, in blocks"] = "".join(
        (unit * (chars // len(UNITS) // len(unit) + 1))[: chars // len(UNITS)]
        for unit in UNITS.values()
    )
    return inputs


def time_ms(scan: Callable[[str], object], text: str, runs: int) -> list[float]:
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        scan(text)
        found.append((time.perf_counter() - started) * 1000)
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prompt_scan(max_chars: int) -> Callable[[str], object]:
    return lambda text: scan_prompt(text, max_chars)


def answer_scan(max_chars: int) -> Callable[[str], object]:
    return lambda text: scan_answer(text, "stop", max_chars)


def report(inputs: dict[str, str], max_chars: int, runs: int) -> float:
    """Print one line per input; the worst p99 of scan_prompt (ms)."""
    worst = 0.0
    print(f"{'input':34s} {'prompt p50':>10s} {'p99':>8s} {'max':>8s}   {'answer p50':>10s} "
          f"{'p99':>8s} {'max':>8s}  (ms)")  # fmt: skip
    for name, text in inputs.items():
        cells = []
        for scan in (prompt_scan(max_chars), answer_scan(max_chars)):
            values = time_ms(scan, text, runs)
            cells.append((statistics.median(values), percentile(values, 0.99), max(values)))
        worst = max(worst, cells[0][1])
        (p50, p99, top), (a50, a99, atop) = cells
        print(f"{name:34s} {p50:10.3f} {p99:8.3f} {top:8.3f}   {a50:10.3f} {a99:8.3f} {atop:8.3f}")
    return worst


def growth(runs: int) -> None:
    """Microseconds per 1000 characters of a whole-input scan_prompt: flat means linear."""
    sizes = (25_000, 100_000, 400_000)
    print(f"{'input (us per 1k chars, whole)':34s} " + " ".join(f"{s:>8d}" for s in sizes))
    for name in ("percent run (e-mail local part)", "digits and spaces", "injection near-miss"):
        cells = []
        for size in sizes:
            text = adversarial_inputs(size)[name]
            best = min(time_ms(prompt_scan(size), text, max(3, runs // 20)))
            cells.append(f"{best * 1000 / (size / 1000):8.1f}")
        print(f"{name:34s} " + " ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenwire.bench.scanners", description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="timed scans per input")
    parser.add_argument("--chars", type=int, default=100_000, help="characters per input")
    parser.add_argument("--target-ms", type=float, default=5.0, help="p99 target of scan_prompt")
    args = parser.parse_args(argv)
    budget = AggregatesSettings().scan_max_chars
    inputs = {"ordinary chat text": ordinary_text(args.chars), **adversarial_inputs(args.chars)}
    print(f"scan_prompt and scan_answer, {args.chars} characters, {args.runs} runs each")
    print(f"\nwith the scan budget (scan_max_chars={budget}):")
    worst = report(inputs, budget, args.runs)
    print(f"\nwhole input scanned (scan_max_chars={args.chars}):")
    report(inputs, args.chars, max(5, args.runs // 10))
    print()
    growth(args.runs)
    met = worst < args.target_ms
    print(f"\nworst p99 with the budget: {worst:.3f} ms (target < {args.target_ms} ms): "
          f"{'met' if met else 'MISSED'}")  # fmt: skip
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
