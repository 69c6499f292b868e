"""The protocol benchmark's figure: an adapter's edge CPU per token over the native stream's,
within each round (machines differ several-fold, so only same-round ratios are reported)."""

from __future__ import annotations

from tokenwire.bench.protocols import Phase, overhead


def _phase(protocol: str, round_: int, edge_cpu_s: float, tokens: int) -> Phase:
    return Phase(protocol, round_, answers=tokens // 100, cpu_s={"edge": edge_cpu_s},
                 tokens=tokens)


def test_overhead_is_the_range_of_same_round_ratios_to_native() -> None:
    phases = [
        _phase("native", 1, 1.0, 1000), _phase("ui", 1, 1.5, 1000),
        _phase("openai", 1, 2.0, 2000),
        _phase("native", 2, 2.0, 1000), _phase("ui", 2, 2.2, 1000),
    ]

    figures = overhead(phases)

    assert figures == {
        "ui": {"edge_cpu_vs_native": [1.1, 1.5], "rounds": 2},
        "openai": {"edge_cpu_vs_native": [1.0, 1.0], "rounds": 1},
    }


def test_a_round_without_native_figures_gives_no_ratio() -> None:
    assert overhead([_phase("ui", 1, 1.0, 1000), _phase("native", 1, 0.0, 0)]) == {}
