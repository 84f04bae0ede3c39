"""The Experiment resource: a user-level A/B test and feature rollout."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from controller.models.common import DNS_LABEL_PATTERN, Condition, Duration, Model, StatusModel, cel

WEIGHT_TOLERANCE = 1e-6
ALPHA_MESSAGE = "alpha must be greater than 0 and less than 0.5 (a significance level such as 0.05)"
"""What both the CRD (CEL rule) and the controller say about an alpha out of range."""


class SegmentMetric(Model):
    """Per-branch counts broken down by segment (IMVU's "buckets")."""

    exposures: str = Field(
        description=(
            "PromQL returning one sample per branch and segment (labels 'branch', 'segment' and optionally"
            " 'dimension', e.g. sum by (branch, dimension, segment)): users exposed."
        )
    )
    conversions: str | None = Field(default=None, description="PromQL like exposures (same labels): users converted.")


class CovariateMetric(Model):
    """CUPED: per-branch sums of a pre-period covariate x (one value per exposed user)."""

    sum: str = Field(description="PromQL, one sample per branch: Σx.")
    sum_squares: str = Field(description="PromQL, one sample per branch: Σx².")
    sum_products: str = Field(description="PromQL, one sample per branch: Σxy.")


class ValueMetric(Model):
    """A continuous metric as per-branch sufficient statistics (n is the exposures query)."""

    sum: str = Field(description="PromQL, one sample per branch: Σy over exposed users.")
    sum_squares: str = Field(description="PromQL, one sample per branch: Σy².")
    covariate: CovariateMetric | None = Field(
        default=None, description="Pre-period covariate sums: the report adds a CUPED-adjusted comparison."
    )


class ExperimentMetric(Model):
    """Per-branch counts from Prometheus (or pushed by the SDK)."""

    exposures: str = Field(description="PromQL returning one sample per branch (label 'branch'): users exposed.")
    conversions: str | None = Field(
        default=None, description="PromQL returning one sample per branch (label 'branch'): users converted."
    )
    segments: SegmentMetric | None = Field(
        default=None, description="Counts by segment: a report row per segment and a balance check per dimension."
    )
    value: ValueMetric | None = Field(
        default=None,
        description="A continuous metric (sums per branch) judged by Welch's t-test, with CUPED given a covariate.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ExperimentMetric:
        if self.value is not None and self.conversions is not None:
            raise ValueError("give metric.conversions (a rate) or metric.value (a continuous metric), not both")
        return self


class ExperimentForce(Model):
    """Forced branches for QA: these users and groups get a chosen branch, outside the analysis."""

    users: dict[str, str] = Field(
        default_factory=dict, description="User id to branch: these users always get that branch (until closed)."
    )
    groups: dict[str, str] = Field(
        default_factory=dict,
        description="Group to branch: members get that branch (the first listed group they are in wins).",
    )

    def forced_names(self) -> list[str]:
        """Who is forced, for people: ``user alice → enhanced``, ``group qa → control``."""
        return [f"user {u} → {b}" for u, b in self.users.items()] + [f"group {g} → {b}" for g, b in self.groups.items()]


class AutoClose(Model):
    """Close the experiment automatically on a decision."""

    on_winner: bool = Field(default=False, description="Close to the winning branch.")
    on_harm: bool = Field(default=True, description="Close to control when a treatment is significantly worse.")


class ExperimentSpec(Model):
    """Desired state of an Experiment."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("!has(self.closeOn) || self.closeOn in self.branches", "closeOn must name one of the branches"),
            ("!has(self.control) || self.control in self.branches", "control must name one of the branches"),
            (
                "self.branches.all(b, b.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.branches[b] >= 0.0)",
                "branch names must be lowercase DNS labels and weights must be >= 0",
            ),
            (
                "self.branches.map(b, self.branches[b]).sum() >= 0.999999"
                " && self.branches.map(b, self.branches[b]).sum() <= 1.000001",
                "branch weights must sum to 1",
            ),
            ("!has(self.alpha) || (self.alpha > 0.0 && self.alpha < 0.5)", ALPHA_MESSAGE),
        )
    )

    key: str = Field(description="Experiment key used by applications and the SDK.", min_length=1, max_length=128)
    seed: str | None = Field(default=None, description="Hashing seed (defaults to key).")
    rollout: float = Field(default=100.0, description="Percent of users in the experiment (To Users).", ge=0, le=100)
    audience: list[str] = Field(
        default_factory=list, description="If set, only users in these groups are in (e.g. qa, admin)."
    )
    branches: dict[str, float] = Field(
        description="Branch name to weight; weights sum to 1.", min_length=2, max_length=26
    )
    control: str | None = Field(
        default=None, description="Control branch (default: 'control' if present, else the first)."
    )
    force: ExperimentForce = Field(
        default_factory=ExperimentForce,
        description="Forced branches (QA): users and groups that get a chosen branch; never counted in the analysis.",
    )
    metric: ExperimentMetric | None = Field(default=None, description="Where per-branch counts come from.")
    min_samples: int = Field(default=1000, description="Samples per branch before any decision.", ge=1)
    alpha: float = Field(
        default=0.05, description="Significance level, greater than 0 and less than 0.5 (default 0.05)."
    )
    engine: Literal["frequentist", "bayesian"] = Field(
        default="frequentist",
        description=(
            "What decides: frequentist (p-value < alpha) or bayesian (chance to beat control past chanceToWin;"
            " Beta(1,1) prior for rates, flat prior for means). Both read-outs are always reported."
        ),
    )
    chance_to_win: float = Field(
        default=0.95,
        description="With engine bayesian: a winner above this chance to beat control, harm below 1 - it.",
        gt=0.5,
        lt=1,
    )
    close_on: str | None = Field(default=None, description="Close the experiment: everyone gets this branch.")
    auto_close: AutoClose = Field(default_factory=AutoClose, description="Automatic closing on a decision.")
    interval: Duration = Field(default=timedelta(seconds=30), description="How often the report is refreshed.")
    hash_version: Literal[1, 2] = Field(default=2, description="GrowthBook hashing version.")

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        # the same words as the CRD's rule, so kubectl and the controller say one thing
        if not 0 < v < 0.5:
            raise PydanticCustomError("alpha_range", ALPHA_MESSAGE)
        return v

    @field_validator("branches")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        import re

        for name, w in v.items():
            if not re.fullmatch(DNS_LABEL_PATTERN, name):
                raise ValueError(f"branch name {name!r} must be a lowercase DNS label")
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"branch {name!r}: weight must be a finite number >= 0 (got {w})")
        total = sum(v.values())
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"branch weights must sum to 1 (got {total:g})")
        return v

    @model_validator(mode="after")
    def _refs(self) -> ExperimentSpec:
        if self.control is not None and self.control not in self.branches:
            raise ValueError(f"control {self.control!r} is not one of the branches ({', '.join(self.branches)})")
        if self.close_on is not None and self.close_on not in self.branches:
            raise ValueError(f"closeOn {self.close_on!r} is not one of the branches ({', '.join(self.branches)})")
        for what, table in (("users", self.force.users), ("groups", self.force.groups)):
            unknown = sorted({b for b in table.values() if b not in self.branches})
            if unknown:
                raise ValueError(
                    f"force.{what} names {', '.join(unknown)}, not one of the branches ({', '.join(self.branches)})"
                )
        return self

    @property
    def control_branch(self) -> str:
        """The control branch: explicit, else 'control' if present, else the first branch."""
        if self.control:
            return self.control
        return "control" if "control" in self.branches else next(iter(self.branches))

    @property
    def hash_seed(self) -> str:
        """The seed used for hashing."""
        return self.seed or self.key


class ReportRow(StatusModel):
    """One row of the experiment report."""

    branch: str = Field(description="Branch name.")
    samples: int = Field(default=0, description="Exposed users.")
    conversions: float | None = Field(default=None, description="Converted users.")
    mean: float | None = Field(default=None, description="Conversion rate or metric mean.")
    variance: float | None = Field(default=None, description="Variance of the metric.")
    p_value: float | None = Field(default=None, description="Two-sided p-value against control.")
    significance: float | None = Field(default=None, description="(1 - pValue) x 100.")
    lift: float | None = Field(default=None, description="Absolute lift over control.")
    lift_percent: float | None = Field(default=None, description="Relative lift over control, percent.")
    ci: list[float] | None = Field(default=None, description="Confidence interval of the relative lift, percent.")
    chance_to_win: float | None = Field(default=None, description="Bayesian: probability of beating control.")
    expected_loss: float | None = Field(
        default=None, description="Bayesian: expected loss of shipping this branch (metric units)."
    )
    risk_control: float | None = Field(
        default=None, description="Bayesian: expected loss of keeping control instead (metric units)."
    )
    credible_interval: list[float] | None = Field(
        default=None, description="Bayesian: credible interval of the relative lift, percent."
    )


class SrmStatus(StatusModel):
    """Sample ratio mismatch check against the configured weights."""

    p_value: float | None = Field(default=None, description="Chi-square p-value.")
    ok: bool = Field(default=True, description="False when the observed split departs from the weights.")


class SegmentReportStatus(StatusModel):
    """The report of one segment (e.g. dimension platform, segment ios)."""

    dimension: str = Field(description="Segment dimension (the series' 'dimension' label, default 'segment').")
    segment: str = Field(description="Segment value.")
    report: list[ReportRow] = Field(default_factory=list, description="One row per branch, within this segment.")
    srm: SrmStatus | None = Field(default=None, description="Sample ratio check within this segment.")


class BalanceStatus(StatusModel):
    """Balance of one segment dimension: chi-square of the segment x branch table against the weights."""

    dimension: str = Field(description="Segment dimension.")
    segments: int = Field(default=0, description="Segments in the dimension.")
    p_value: float | None = Field(default=None, description="Chi-square p-value.")
    chi_square: float | None = Field(default=None, description="Chi-square statistic.")
    df: int | None = Field(default=None, description="Degrees of freedom.")
    ok: bool = Field(default=True, description="False when the branches are imbalanced in this dimension.")
    imbalanced: list[str] = Field(default_factory=list, description="Segments whose own sample ratio fails.")


class CupedStatus(StatusModel):
    """The CUPED-adjusted comparison of a continuous metric."""

    theta: float | None = Field(default=None, description="Regression coefficient of y on the covariate.")
    report: list[ReportRow] = Field(default_factory=list, description="Adjusted means and variances, Welch's test.")
    variance_reduction: dict[str, float] = Field(
        default_factory=dict, description="Per treatment: share of the difference's variance removed (0..1)."
    )
    error: str | None = Field(default=None, description="Why no adjustment could be made.")


class ExperimentStatus(StatusModel):
    """Observed state of an Experiment; written only by the controller."""

    report: list[ReportRow] = Field(default_factory=list, description="The report, one row per branch.")
    srm: SrmStatus | None = Field(default=None, description="Sample ratio mismatch check.")
    cuped: CupedStatus | None = Field(default=None, description="CUPED-adjusted comparison (continuous metrics).")
    segments: list[SegmentReportStatus] = Field(default_factory=list, description="The report per segment.")
    balance: list[BalanceStatus] = Field(default_factory=list, description="Balance check per segment dimension.")
    decision: str = Field(default="Running", description="Running, Winner:<b>, Harm:<b>, NoSignificance, Closed:<b>.")
    p_value: float | None = Field(default=None, description="Smallest p-value among treatments.")
    closed_on: str | None = Field(default=None, description="Branch everyone gets, when closed.")
    config_map: str | None = Field(default=None, description="ConfigMap the live config is published to.")
    updated_at: datetime | None = Field(default=None, description="When the report was last refreshed.")
    message: str | None = Field(default=None, description="Latest human-readable message.")
    observed_generation: int | None = Field(default=None, description="Spec generation last acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Published, ReportAvailable.")
