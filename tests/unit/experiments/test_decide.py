"""decide(): report in, decision out — one case per rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controller.experiments.decide import Decision, decide
from controller.experiments.report import BranchCounts, build_report


def binomial(*pairs: tuple[str, int, int]) -> list[BranchCounts]:
    return [BranchCounts.binomial(name, conversions, samples) for name, conversions, samples in pairs]


BALANCED = {"control": 0.5, "enhanced": 0.5}
THREE = {"control": 1 / 3, "a": 1 / 3, "b": 1 / 3}


@dataclass(frozen=True)
class Case:
    branches: list[BranchCounts]
    weights: dict[str, float] | None
    label: str
    close_to: str | None = None
    close_on: str | None = None
    on_winner: bool = False
    on_harm: bool = True
    min_samples: int = 1000
    reason: str = ""
    control: str = "control"
    sequential: bool = False


CASES = {
    "closed": Case(
        binomial(("control", 500, 5000), ("enhanced", 700, 5000)), BALANCED, "Closed:control", close_on="control"
    ),
    "still-collecting": Case(
        binomial(("control", 50, 500), ("enhanced", 90, 480)), BALANCED, "Running", reason="enhanced 480/1000"
    ),
    "no-significance": Case(binomial(("control", 500, 5000), ("enhanced", 510, 5000)), BALANCED, "NoSignificance"),
    "winner-no-autoclose": Case(binomial(("control", 500, 5000), ("enhanced", 600, 5000)), BALANCED, "Winner:enhanced"),
    "winner-autoclose": Case(
        binomial(("control", 500, 5000), ("enhanced", 600, 5000)),
        BALANCED,
        "Winner:enhanced",
        close_to="enhanced",
        on_winner=True,
    ),
    "harm-autoclose": Case(
        binomial(("control", 600, 5000), ("enhanced", 500, 5000)), BALANCED, "Harm:enhanced", close_to="control"
    ),
    "harm-no-autoclose": Case(
        binomial(("control", 600, 5000), ("enhanced", 500, 5000)), BALANCED, "Harm:enhanced", on_harm=False
    ),
    "srm-blocks-winner": Case(
        binomial(("control", 500, 5000), ("enhanced", 720, 6000)),
        BALANCED,
        "SampleRatioMismatch",
        on_winner=True,
        reason="sample ratio mismatch",
    ),
    "harm-despite-srm": Case(
        binomial(("control", 700, 5000), ("enhanced", 500, 6000)),
        BALANCED,
        "Harm:enhanced",
        close_to="control",
        reason="sample ratio mismatch too",
    ),
    "missing-control": Case(binomial(("enhanced", 500, 5000), ("other", 500, 5000)), None, "InsufficientData"),
    "zero-variance": Case(
        binomial(("control", 0, 5000), ("enhanced", 0, 5000)), BALANCED, "InsufficientData", reason="zero variance"
    ),
    "harm-beats-winner": Case(
        binomial(("control", 1000, 10000), ("a", 1200, 10000), ("b", 800, 10000)),
        THREE,
        "Harm:b",
        close_to="control",
        on_winner=True,
    ),
    "best-of-two-winners": Case(
        binomial(("control", 1000, 10000), ("a", 1150, 10000), ("b", 1300, 10000)),
        THREE,
        "Winner:b",
        close_to="b",
        on_winner=True,
    ),
    "imvu-winner": Case(
        binomial(("control", 64630, 148266), ("enhanced", 66903, 150702)),
        {"control": 148266 / 298968, "enhanced": 150702 / 298968},
        "Winner:enhanced",
        reason="enhanced +1.84% vs control (p=0.000010)",
    ),
    "imvu-50-50-is-srm": Case(
        binomial(("control", 64630, 148266), ("enhanced", 66903, 150702)), BALANCED, "SampleRatioMismatch"
    ),
    "sequential-not-yet": Case(
        binomial(("control", 500, 5000), ("enhanced", 560, 5000)),
        BALANCED,
        "NoSignificance",
        sequential=True,
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_decide(case: Case) -> None:
    report = build_report(case.branches, case.weights, alpha=0.05, sequential=case.sequential)
    decision = decide(
        report,
        min_samples=case.min_samples,
        alpha=0.05,
        close_on=case.close_on,
        on_winner=case.on_winner,
        on_harm=case.on_harm,
        control=case.control,
    )
    assert decision.label == case.label
    assert decision.close_to == case.close_to
    assert case.reason in decision.reason


def test_fixed_horizon_would_have_called_the_sequential_case() -> None:
    report = build_report(binomial(("control", 500, 5000), ("enhanced", 560, 5000)), BALANCED)
    decision = decide(
        report, min_samples=1000, alpha=0.1, close_on=None, on_winner=False, on_harm=True, control="control"
    )
    assert decision.label == "Winner:enhanced"


def test_report_against_another_control_is_not_decided() -> None:
    report = build_report(binomial(("control", 500, 5000), ("enhanced", 600, 5000)), BALANCED, control="enhanced")
    decision = decide(
        report, min_samples=10, alpha=0.05, close_on=None, on_winner=True, on_harm=True, control="control"
    )
    assert decision.state == "InsufficientData"
    assert decision.close_to is None


@pytest.mark.parametrize(
    ("decision", "label"),
    [
        (Decision("Running", None, "", None), "Running"),
        (Decision("Winner", "enhanced", "", None), "Winner:enhanced"),
        (Decision("Harm", "enhanced", "", "control"), "Harm:enhanced"),
        (Decision("Closed", "control", "", None), "Closed:control"),
        (Decision("NoSignificance", None, "", None), "NoSignificance"),
        (Decision("SampleRatioMismatch", None, "", None), "SampleRatioMismatch"),
        (Decision("InsufficientData", None, "", None), "InsufficientData"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_labels(decision: Decision, label: str) -> None:
    assert decision.label == label
