"""The per-Experiment loop with fakes: publishing, status patches, Prometheus errors, invalid specs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.errors import ClusterError, MetricsError
from controller.experiments.growthbook import GROWTHBOOK_SUFFIX, growthbook_json
from controller.experiments.hashing import ExperimentConfig
from controller.experiments.runner import CONFIGMAP_LABELS, run_experiment

CONFIGMAP = "stopline-experiments"
PROM = "http://prometheus.test:9090"
EXPOSURES = "sum by (branch) (stopline_experiment_exposures_total)"
CONVERSIONS = "sum by (branch) (stopline_experiment_conversions_total)"
IMVU = {
    EXPOSURES: {"control": 148266.0, "enhanced": 150702.0},
    CONVERSIONS: {"control": 64630.0, "enhanced": 66903.0},
}
HARM = {
    EXPOSURES: {"control": 5000.0, "enhanced": 5000.0},
    CONVERSIONS: {"control": 600.0, "enhanced": 500.0},
}
T0 = datetime(2011, 8, 15, 12, 0, tzinfo=UTC)


def experiment_body(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "GDCEurope2011",
        "rollout": 10,
        "branches": {"control": 0.496, "enhanced": 0.504},
        "metric": {"exposures": EXPOSURES, "conversions": CONVERSIONS},
        "interval": "30s",
    }
    body.update(spec)
    return {"metadata": {"name": "gdc", "namespace": "shop", "generation": 1}, "spec": body}


class FakeCounts:
    """Prometheus answering ``query_by`` from a table; an exception in the table is raised."""

    def __init__(self, answers: dict[str, dict[str, float]] | Exception) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str]] = []
        self.tables: dict[str, dict[tuple[str, ...], float]] = {}

    async def query_by(self, url: str, query: str, label: str) -> dict[str, float]:
        self.calls.append((url, query, label))
        if isinstance(self.answers, Exception):
            raise self.answers
        return dict(self.answers[query])

    async def query_table(self, url: str, query: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        self.calls.append((url, query, ",".join(labels)))
        if isinstance(self.answers, Exception):
            raise self.answers
        return dict(self.tables[query])


class FakePublisher:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, str, dict[str, str | None], dict[str, str]]] = []
        self.failures = failures

    async def merge_configmap(
        self, namespace: str, name: str, data: dict[str, str | None], labels: dict[str, str]
    ) -> None:
        self.calls.append((namespace, name, dict(data), dict(labels)))
        if self.failures:
            self.failures -= 1
            raise ClusterError("patch ConfigMap shop/stopline-experiments: 503 Service Unavailable")

    def configs(self) -> list[dict[str, Any]]:
        return [
            json.loads(value)
            for _, _, data, _ in self.calls
            for key, value in data.items()
            if value is not None and not key.endswith(GROWTHBOOK_SUFFIX)
        ]


@dataclass
class Harness:
    """Drives ``run_experiment`` for a number of loops; ``on_wait`` may edit the body between loops."""

    body: dict[str, Any]
    counts: FakeCounts
    publisher: FakePublisher = field(default_factory=FakePublisher)
    loops: int = 3
    clock_step: timedelta = timedelta(0)
    on_wait: Callable[[int, Harness], None] = lambda _i, _h: None
    patches: list[dict[str, Any]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    prometheus_url: str | None = PROM
    now: datetime = T0

    async def patch_status(self, patch: dict[str, Any]) -> None:
        self.patches.append(json.loads(json.dumps(patch)))
        self.body["status"] = patch["status"]

    def clock(self) -> datetime:
        return self.now

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += self.clock_step
        self.on_wait(len(self.waits), self)

    async def run(self) -> None:
        await run_experiment(
            "shop",
            lambda: self.body,
            self.patch_status,
            self.counts,
            self.publisher,
            configmap=CONFIGMAP,
            prometheus_url=self.prometheus_url,
            clock=self.clock,
            wait=self.wait,
            emit=lambda t, r, m: self.events.append((t, r, m)),
            stopped=lambda: len(self.waits) >= self.loops,
        )

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.patches[-1]["status"]
        return status


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    found = [(c["status"], c["reason"]) for c in status.get("conditions", []) if c["type"] == type_]
    assert len(found) == 1, status.get("conditions")
    return found[0]


async def test_first_loop_publishes_the_config_and_writes_the_report() -> None:
    h = Harness(experiment_body(), FakeCounts(IMVU), loops=1)
    await h.run()
    assert h.publisher.calls == [
        (
            "shop",
            CONFIGMAP,
            {
                "GDCEurope2011.json": json.dumps(
                    {
                        "key": "GDCEurope2011",
                        "seed": "GDCEurope2011",
                        "rollout": 10.0,
                        "audience": [],
                        "branches": {"control": 0.496, "enhanced": 0.504},
                        "closeOn": None,
                        "hashVersion": 2,
                        "enabled": True,
                    },
                    separators=(",", ":"),
                ),
                "GDCEurope2011.growthbook.json": growthbook_json(
                    ExperimentConfig(
                        key="GDCEurope2011",
                        seed="GDCEurope2011",
                        rollout=10,
                        branches=(("control", 0.496), ("enhanced", 0.504)),
                    )
                ),
            },
            CONFIGMAP_LABELS,
        )
    ]
    assert h.counts.calls == [(PROM, EXPOSURES, "branch"), (PROM, CONVERSIONS, "branch")]
    status = h.status
    assert [(r["branch"], r["samples"], r["conversions"]) for r in status["report"]] == [
        ("control", 148266, 64630),
        ("enhanced", 150702, 66903),
    ]
    assert f"{status['report'][1]['pValue']:.6f}" == "0.000010"
    assert status["decision"] == "Winner:enhanced"
    assert status["srm"]["ok"] is True
    assert status["configMap"] == CONFIGMAP
    assert cond(status, "Published") == ("True", "ConfigPublished")
    assert cond(status, "ReportAvailable") == ("True", "Winner")
    assert cond(status, "Ready") == ("True", "Running")
    assert h.waits == [30.0]
    assert ("Normal", "Published", f"config published to ConfigMap {CONFIGMAP}") in h.events


async def test_publishes_once_per_change_not_every_loop() -> None:
    def close_after_second_loop(i: int, h: Harness) -> None:
        if i == 2:
            h.body["spec"]["closeOn"] = "enhanced"
            h.body["metadata"]["generation"] = 2

    h = Harness(experiment_body(), FakeCounts(IMVU), loops=5, on_wait=close_after_second_loop)
    await h.run()
    assert [c["closeOn"] for c in h.publisher.configs()] == [None, "enhanced"]
    assert h.status["decision"] == "Closed:enhanced"
    assert h.status["closedOn"] == "enhanced"
    assert h.status["observedGeneration"] == 2


async def test_status_is_patched_only_when_it_changes() -> None:
    h = Harness(experiment_body(), FakeCounts(IMVU), loops=4)  # the clock stands still: nothing changes
    await h.run()
    # the first round writes the report before publishing (a side effect is persisted first), then the
    # publication's result; the rounds after it change nothing and write nothing
    assert len(h.patches) == 2
    assert "Published" not in [c["type"] for c in h.patches[0]["status"]["conditions"]]
    assert cond(h.patches[1]["status"], "Published") == ("True", "ConfigPublished")
    assert len(h.counts.calls) == 8  # but the counts are read every loop


async def test_new_counts_or_a_new_refresh_time_patch_the_status() -> None:
    def harm_after_first_loop(i: int, h: Harness) -> None:
        if i == 1:
            h.counts.answers = HARM

    h = Harness(experiment_body(), FakeCounts(IMVU), loops=3, on_wait=harm_after_first_loop)
    await h.run()
    # round 1: report, then publication; round 2: the harm decision closes on control (write, publish, write)
    assert [p["status"]["decision"] for p in h.patches] == [
        "Winner:enhanced",
        "Winner:enhanced",
        "Harm:enhanced",
        "Harm:enhanced",
    ]
    assert [c["closeOn"] for c in h.publisher.configs()] == [None, "control"]

    ticking = Harness(experiment_body(), FakeCounts(IMVU), loops=3, clock_step=timedelta(seconds=30))
    await ticking.run()
    assert [p["status"]["updatedAt"] for p in ticking.patches] == [
        "2011-08-15T12:00:00Z",
        "2011-08-15T12:00:00Z",
        "2011-08-15T12:00:30Z",
        "2011-08-15T12:01:00Z",
    ]


async def test_harm_with_on_harm_publishes_close_on_control_and_warns() -> None:
    h = Harness(experiment_body(autoClose={"onHarm": True}), FakeCounts(HARM), loops=2)
    await h.run()
    assert [c["closeOn"] for c in h.publisher.configs()] == ["control"]
    assert (h.status["decision"], h.status["closedOn"]) == ("Harm:enhanced", "control")
    decisions = [e for e in h.events if e[1] == "Decision"]
    assert len(decisions) == 1 and decisions[0][0] == "Warning"
    assert decisions[0][2].startswith("Harm:enhanced: significantly worse")


async def test_prometheus_errors_mark_the_report_unavailable_and_keep_running() -> None:
    h = Harness(experiment_body(), FakeCounts(MetricsError("prometheus unreachable: ConnectionError")), loops=3)
    await h.run()
    assert h.waits == [30.0, 30.0, 30.0]  # no crash: every loop ran
    status = h.status
    assert cond(status, "ReportAvailable") == ("False", "NoData")
    assert status["message"] == "prometheus unreachable: ConnectionError"
    assert status["report"] == [] and status["decision"] == "Running"
    assert len(h.publisher.calls) == 1  # assignment keeps working without Prometheus
    assert cond(status, "Ready") == ("True", "Running")


async def test_prometheus_recovering_brings_the_report_back() -> None:
    def recover(i: int, h: Harness) -> None:
        if i == 1:
            h.counts.answers = IMVU

    h = Harness(experiment_body(), FakeCounts(MetricsError("query rejected: bad_data")), loops=2, on_wait=recover)
    await h.run()
    assert [cond(p["status"], "ReportAvailable") for p in h.patches] == [
        ("False", "NoData"),  # before the first publication
        ("False", "NoData"),
        ("True", "Winner"),
    ]


async def test_without_metric_or_prometheus_url_only_publishes() -> None:
    no_metric = experiment_body()
    del no_metric["spec"]["metric"]
    h = Harness(no_metric, FakeCounts(IMVU), loops=1)
    await h.run()
    assert h.counts.calls == []
    assert h.status["message"] == "no metric configured: assignment only"
    assert len(h.publisher.calls) == 1

    no_url = Harness(experiment_body(), FakeCounts(IMVU), loops=1, prometheus_url=None)
    await no_url.run()
    assert no_url.counts.calls == []
    assert no_url.status["message"] == "no Prometheus URL configured"
    assert cond(no_url.status, "ReportAvailable") == ("False", "NoData")


async def test_publish_failure_is_reported_and_retried_next_loop() -> None:
    h = Harness(experiment_body(), FakeCounts(IMVU), publisher=FakePublisher(failures=1), loops=2)
    await h.run()
    assert len(h.publisher.calls) == 2
    first, last = h.patches[1]["status"], h.status  # patches[0] is the report written before publishing
    assert cond(first, "Published") == ("False", "PublishFailed")
    assert [r for _, r, _ in h.events if r.startswith("Publish")] == ["PublishFailed", "Published"]
    assert cond(first, "Ready") == ("False", "Running")
    assert cond(last, "Published") == ("True", "ConfigPublished")
    assert cond(last, "Ready") == ("True", "Running")


async def test_invalid_spec_writes_the_reason_and_stops() -> None:
    h = Harness(experiment_body(branches={"control": 0.5, "enhanced": 0.2}), FakeCounts(IMVU))
    await h.run()
    assert h.waits == [] and h.counts.calls == [] and h.publisher.calls == []
    assert len(h.patches) == 1
    status = h.status
    assert status["message"].startswith("invalid spec: ")
    assert "weights must sum to 1" in status["message"]
    assert cond(status, "Ready") == ("False", "InvalidSpec")
    assert [(t, r) for t, r, _ in h.events] == [("Warning", "InvalidSpec")]


async def test_waits_the_spec_interval() -> None:
    h = Harness(experiment_body(interval="5s"), FakeCounts(IMVU), loops=2)
    await h.run()
    assert h.waits == [5.0, 5.0]


async def test_resumes_from_the_persisted_status_without_repatching() -> None:
    first = Harness(experiment_body(), FakeCounts(IMVU), loops=1)
    await first.run()
    resumed = Harness(first.body, FakeCounts(IMVU), loops=2)  # a restarted controller, same clock
    await resumed.run()
    assert resumed.patches == []
    assert len(resumed.publisher.calls) == 1  # it cannot know what is in the ConfigMap: publish once


async def test_segment_queries_feed_segment_rows_and_balance() -> None:
    seg_e, seg_c = "sum by (branch, dimension, segment) (e)", "sum by (branch, dimension, segment) (c)"
    counts = FakeCounts(IMVU)
    counts.tables = {
        seg_e: {("control", "platform", "ios"): 100.0, ("enhanced", "platform", "ios"): 300.0},
        seg_c: {("control", "platform", "ios"): 10.0, ("enhanced", "platform", "ios"): 60.0},
    }
    metric = {
        "exposures": EXPOSURES,
        "conversions": CONVERSIONS,
        "segments": {"exposures": seg_e, "conversions": seg_c},
    }
    h = Harness(experiment_body(metric=metric), counts, loops=1)
    await h.run()
    assert (PROM, seg_e, "branch,dimension,segment") in counts.calls
    status = h.status
    assert [(r["branch"], r["samples"], r["conversions"]) for r in status["segments"][0]["report"]] == [
        ("control", 100, 10),
        ("enhanced", 300, 60),
    ]
    assert status["balance"][0]["dimension"] == "platform" and status["balance"][0]["ok"] is False
    assert any(reason == "SegmentImbalance" for _, reason, _ in h.events)
