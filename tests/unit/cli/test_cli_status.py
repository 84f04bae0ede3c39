"""``stopline status|history|logs|check`` through typer's CliRunner over a fake cluster."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner
from web import samples

from cli.conftest import FakeApi
from controller import cli
from controller.kube import cli_client
from controller.kube.cli_client import CliError
from controller.models.notify import NotificationMessage, NotificationsStatus, OutboxEntry

runner = CliRunner()
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args), env=env or ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def line_with(out: str, *needles: str) -> str:
    found = [ln for ln in out.splitlines() if all(n in ln for n in needles)]
    assert len(found) == 1, f"expected one line with {needles}, got {found}\n{out}"
    return found[0]


def fact(out: str, key: str) -> str:
    """The value of a ``Key   value`` line of the facts grid."""
    found = [ln[len(key) :].strip() for ln in out.splitlines() if ln.startswith(key + "  ")]
    assert len(found) == 1, f"expected one {key!r} fact, got {found}\n{out}"
    return found[0]


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]


# ---------------------------------------------------------------- status RELEASE
def test_status_release_shows_the_gauges_row_and_the_rollback_banner(fake: FakeApi) -> None:
    code, out = invoke("status", "web-3f9c2e1")
    assert code == 0, out
    assert cells(line_with(out, "chat-loadavg", " chat ", "4.13")) == [
        "chat-loadavg",
        "chat",
        "4.13",
        "7.20",
        "+3.07",
        "+74.33%",
        ">6 or >+25%",
        "Fail",
    ]
    assert cells(line_with(out, "registrations")) == [
        "registrations",
        "chat",
        "12.50",
        "12.10",
        "-0.40",
        "-3.20%",
        "<-20%",
        "Pass",
    ]
    assert "This push was rolled back" in out
    banner = [ln.strip("│ ") for ln in out.splitlines() if ln.startswith("│") and "┃" not in ln][:3]
    assert banner == [
        "This push was rolled back",
        "gate chat-loadavg 7.20 > 6 in phase chat",
        f"revert commit {samples.REVERT} (Pushed) on main",
    ]
    assert f"revert commit {samples.REVERT} (Pushed) on main" in out
    assert fact(out, "Phase") == "RolledBack"
    assert cells(line_with(out, "GitReverted"))[:3] == ["GitReverted", "True", "Pushed"]


def test_status_release_colours_the_verdicts(fake: FakeApi) -> None:
    code, out = invoke("status", "web-3f9c2e1", env={"FORCE_COLOR": "1", "COLUMNS": "200", "TERM": "xterm"})
    assert code == 0, out
    fail_line = line_with(out, "7.20", "74.33")
    assert "\x1b[1;31mFail" in fail_line  # bold red
    assert "\x1b[32mPass" in line_with(out, "12.10")  # green


def test_status_succeeded_release_has_no_banner(fake: FakeApi) -> None:
    code, out = invoke("status", "web-aaaaaaa")
    assert code == 0, out
    assert "rolled back" not in out
    assert fact(out, "Phase") == "Succeeded"


def test_status_release_json_has_the_status_keys(fake: FakeApi) -> None:
    code, out = invoke("status", "web-3f9c2e1", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert (data["kind"], data["name"], data["namespace"], data["revision"]) == (
        "Release",
        "web-3f9c2e1",
        "shop",
        samples.BAD,
    )
    assert data["rolledBack"] is True
    status = data["status"]
    assert status["phase"] == "RolledBack"
    assert status["revert"]["commit"] == samples.REVERT
    failing = status["gauges"][1]
    assert (failing["gate"], failing["phase"], failing["prePush"], failing["postPush"], failing["verdict"]) == (
        "chat-loadavg",
        "chat",
        4.13,
        7.2,
        "Fail",
    )
    assert failing["deltaPercent"] == 74.33


def test_status_yaml_parses_to_the_same_data_as_json(fake: FakeApi) -> None:
    _, as_json = invoke("status", "web-bbbbbbb", "-o", "json")
    code, as_yaml = invoke("status", "web-bbbbbbb", "-o", "yaml")
    assert code == 0, as_yaml
    assert yaml.safe_load(as_yaml) == json.loads(as_json)
    assert json.loads(as_json)["status"]["currentPhase"] == "canary"


def test_status_holding_release_names_the_phase_number(fake: FakeApi) -> None:
    code, out = invoke("status", "web-bbbbbbb")
    assert code == 0, out
    assert fact(out, "Current phase") == "canary (1 of 2)"
    assert "rolled back" not in out


def test_rich_markup_in_cluster_data_is_printed_literally(fake: FakeApi) -> None:
    status = samples.rolled_back_status()
    status.gauges[1].message = "[bold red]x[/bold red] <script>"
    status.message = "[link=http://evil]click[/link]"
    fake.objects["releases"]["web-3f9c2e1"] = samples.release_object("web-3f9c2e1", samples.BAD, status)
    code, out = invoke("logs", "web-3f9c2e1")
    assert code == 0, out
    assert "[bold red]x[/bold red] <script>" in out
    code, out = invoke("status", "web-3f9c2e1")
    assert "[link=http://evil]click[/link]" in out


# ---------------------------------------------------------------- status TRACK / overview
def test_status_track_shows_locks_current_and_last_good(fake: FakeApi) -> None:
    code, out = invoke("status", "web")
    assert code == 0, out
    assert "Commit lock: LOCKED" in out
    assert "web-3f9c2e1 rolledback: gate chat-loadavg: 7.20 > 6" in out
    assert fact(out, "Last good") == samples.GOOD
    assert fact(out, "Push lock") == "free"
    assert cells(line_with(out, "web-3f9c2e1", "RolledBack"))[1:4] == ["3f9c2e1", "web-3f9c2e1", "RolledBack"]


def test_status_track_says_how_its_lock_notifications_fare(fake: FakeApi) -> None:
    status = samples.locked_track_status()
    message = NotificationMessage(
        event="Locked", kind="Track", namespace="shop", name="web", at=samples.NOW, title="web locked"
    )
    status.notifications = NotificationsStatus(
        outbox=[
            OutboxEntry(
                key="shop/web/1/Locked/ops",
                event="Locked",
                sink="ops",
                sink_type="webhook",
                attempts=2,
                last_error="HTTP 503",
                message=message,
            )
        ]
    )
    fake.objects["tracks"]["web"] = samples.track_object("web", status)
    code, out = invoke("status", "web")
    assert code == 0, out
    assert fact(out, "Notifications") == "1 pending (1 failing: ops: HTTP 503)"


def test_status_prefers_the_track_when_names_collide(fake: FakeApi) -> None:
    fake.objects["releases"]["web"] = samples.release_object("web", samples.GOOD, samples.succeeded_status())
    code, out = invoke("status", "web", "-o", "json")
    assert code == 0, out
    assert json.loads(out)["kind"] == "Track"


def test_status_track_json(fake: FakeApi) -> None:
    code, out = invoke("status", "api", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert (data["kind"], data["locked"], data["branch"]) == ("Track", False, "main")
    assert data["status"]["pushLock"] == {"held": True, "release": "web-bbbbbbb", "since": "2024-05-30T11:59:00Z"}
    assert data["status"]["lastGood"] == samples.GOOD


def test_status_without_name_lists_tracks_and_releases(fake: FakeApi) -> None:
    code, out = invoke("status")
    assert code == 0, out
    assert "locked: web-3f9c2e1 rolledback" in line_with(out, "│ web ")
    assert cells(line_with(out, "│ api "))[3:5] == ["web-bbbbbbb", "web-bbbbbbb"]
    rows = [cells(ln)[0] for ln in out.splitlines() if ln.startswith("│ web-")]
    assert rows == ["web-bbbbbbb", "web-3f9c2e1", "web-aaaaaaa"]  # newest first
    assert cells(line_with(out, "│ web-3f9c2e1"))[2:5] == ["RolledBack", "—", "chat-loadavg"]


def test_status_without_name_json(fake: FakeApi) -> None:
    code, out = invoke("status", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["namespace"] == "shop"
    assert [t["name"] for t in data["tracks"]] == ["api", "web"]
    assert data["tracks"][1]["locked"] is True and data["tracks"][1]["lockReason"].startswith("web-3f9c2e1")
    assert {r["name"]: r["phase"] for r in data["releases"]} == {
        "web-bbbbbbb": "Holding",
        "web-3f9c2e1": "RolledBack",
        "web-aaaaaaa": "Succeeded",
    }


def test_empty_namespace_says_so(fake: FakeApi) -> None:
    fake.objects = {}
    code, out = invoke("status", "-n", "empty")
    assert code == 0, out
    assert "No Tracks in empty." in out and "No Releases in empty." in out


def test_namespace_and_context_reach_the_connection(fake: FakeApi) -> None:
    invoke("status", "web", "-n", "other", "--context", "kind-prod")
    assert fake.connected == [("other", "kind-prod")]
    invoke("status", "web")
    assert fake.connected[-1] == (None, None)


# ---------------------------------------------------------------- errors
def test_unknown_name_is_a_one_line_error(fake: FakeApi) -> None:
    result = runner.invoke(cli.app, ["status", "nope"], env=ENV)
    assert result.exit_code == 1
    assert result.output.strip() == "error: no Track or Release named nope in namespace shop"
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "message",
    [
        "no Kubernetes cluster configured: Invalid kube-config file. No configuration found.",
        "cannot reach the Kubernetes API at https://127.0.0.1:6443: connection refused",
        "the stopline CRDs are not installed in this cluster (no API stopline.dev/v1alpha1)",
    ],
    ids=["no-kubeconfig", "unreachable", "no-crds"],
)
@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "web"], ["history", "web"], ["logs", "x"], ["check", "web"], ["promote", "x"]],
    ids=["status", "status-name", "history", "logs", "check", "promote"],
)
def test_cluster_problems_exit_1_with_the_message(
    monkeypatch: pytest.MonkeyPatch, message: str, args: list[str]
) -> None:
    def connect(namespace: str | None = None, context: str | None = None) -> FakeApi:
        if "kubeconfig" in message or "configured" in message:
            raise CliError(message)
        return FakeApi(fail=CliError(message))

    monkeypatch.setattr(cli_client, "connect", connect)
    result = runner.invoke(cli.app, args, env=ENV)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"error: {message}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "nope"], "error: Track nope not found in namespace shop"),
        (["logs", "nope"], "error: Release nope not found in namespace shop"),
        (["check", "nope"], "error: Track nope not found in namespace shop"),
        (["lock", "nope", "--reason", "x"], "error: Track nope not found in namespace shop"),
        (["abort", "nope"], "error: Release nope not found in namespace shop"),
    ],
    ids=["history", "logs", "check", "lock", "abort"],
)
def test_missing_objects(fake: FakeApi, args: list[str], message: str) -> None:
    code, out = invoke(*args)
    assert code == 1
    assert out.strip() == message


# ---------------------------------------------------------------- history / logs / check
def test_history_table_and_json(fake: FakeApi) -> None:
    code, out = invoke("history", "web")
    assert code == 0, out
    assert cells(line_with(out, "web-3f9c2e1")) == [
        "2024-05-30 11:58:00Z",
        "3f9c2e1",
        "web-3f9c2e1",
        "RolledBack",
        "8m00s",
        "chat-loadavg",
        "c0ffee0",
        "0",
    ]
    assert len([ln for ln in out.splitlines() if "│ 2024-" in ln]) == 5
    code, out = invoke("history", "web", "-o", "json")
    data = json.loads(out)
    assert [h["result"] for h in data] == ["RolledBack", "Succeeded", "Succeeded", "Succeeded", "RolledBack"]
    assert data[0]["revertCommit"] == samples.REVERT and data[0]["durationSeconds"] == 480


def test_history_of_a_new_track(fake: FakeApi) -> None:
    code, out = invoke("history", "api")
    assert code == 0
    assert "has not pushed anything yet" in out


def test_logs_shows_readings_and_events_in_time_order(fake: FakeApi) -> None:
    code, out = invoke("logs", "web-3f9c2e1")
    assert code == 0, out
    assert cells(line_with(out, "7.20 > 6", "Fail", "74.33"))[7:10] == ["Fail", "3", "2024-05-30 11:58:00Z"]
    reasons = [cells(ln)[2] for ln in out.splitlines() if "│ 2024-05-30" in ln and ("Normal" in ln or "Warning" in ln)]
    assert reasons == ["PushStarted", "GateFailed", "RolledBack"]


def test_logs_json(fake: FakeApi) -> None:
    code, out = invoke("logs", "web-3f9c2e1", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert set(data) == {"release", "namespace", "phase", "gauges", "events"}
    assert [e["reason"] for e in data["events"]] == ["PushStarted", "GateFailed", "RolledBack"]
    assert data["events"][1] == {
        "at": "2024-05-30T11:58:00+00:00",
        "type": "Warning",
        "reason": "GateFailed",
        "message": "gate chat-loadavg: 7.20 > 6",
        "count": 1,
    }
    assert len(data["gauges"]) == 3


def test_logs_without_events(fake: FakeApi) -> None:
    code, out = invoke("logs", "web-aaaaaaa")
    assert code == 0
    assert "No events." in out


def test_check_exits_3_while_locked_and_prints_the_reason(fake: FakeApi) -> None:
    code, out = invoke("check", "web")
    assert code == cli.EXIT_LOCKED == 3
    assert out.strip() == ("locked: web-3f9c2e1 rolledback: gate chat-loadavg: 7.20 > 6 (since 2024-05-30 11:58:00Z)")


def test_check_exits_0_when_open(fake: FakeApi) -> None:
    code, out = invoke("check", "api")
    assert code == 0
    assert out.strip() == "open (pushing web-bbbbbbb)"


def test_check_json_is_the_lock_api_shape(fake: FakeApi) -> None:
    code, out = invoke("check", "web", "-o", "json")
    assert code == 3
    data = json.loads(out)
    assert data["locked"] is True and data["track"] == "shop/web"
    assert data["release"] == "web-3f9c2e1" and data["lastGood"] == samples.GOOD


def test_commands_are_all_there() -> None:
    result = runner.invoke(cli.app, ["--help"], env=ENV)
    assert result.exit_code == 0
    for command in (
        "status",
        "history",
        "lock",
        "unlock",
        "check",
        "promote",
        "abort",
        "pause",
        "resume",
        "logs",
        "run",
        "experiment",
    ):
        assert re.search(rf"│ {command}\s", result.output), command


def test_run_still_demands_a_namespace_choice() -> None:
    result = runner.invoke(cli.app, ["run"], env=ENV)
    assert result.exit_code == 2
    assert "--all-namespaces" in result.output


def test_status_release_lists_each_phases_objects(fake: FakeApi) -> None:
    code, out = invoke("status", "web-3f9c2e1")
    assert code == 0, out
    header = cells(line_with(out, "Phase", "State", "Deployments"))
    assert header[:4] == ["Phase", "State", "Deployments", "Objects"]
    row = cells(line_with(out, "canary", "RolledBack", "web-canary"))
    assert row[2:4] == ["web-canary", "Deployment/web-canary"]  # older statuses: their Deployments


# ---------------------------------------------------------------- a stuck rollout explains itself (issue 17)
@pytest.mark.parametrize(
    ("heals", "want"),
    [
        (False, f"{samples.SA_CAUSE} — cannot heal by waiting: phase canary fails at 2024-05-30 12:00:57Z"),
        (
            True,
            "db: Unschedulable: 0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
            "— may heal: phase canary keeps waiting (since 2024-05-30 11:59:40Z)",
        ),
    ],
    ids=["cannot-heal", "may-heal"],
)
def test_status_release_says_why_it_is_stuck_in_its_first_lines(fake: FakeApi, heals: bool, want: str) -> None:
    fake.objects["releases"]["web-bbbbbbb"] = samples.release_object(
        "web-bbbbbbb", samples.NEXT, samples.stuck_status(heals=heals)
    )
    env = {**ENV, "COLUMNS": "400"}
    code, out = invoke("status", "web-bbbbbbb", env=env)
    assert code == 0, out
    assert fact(out, "Stuck") == want
    lines = out.splitlines()
    assert lines[1].startswith("Phase") and lines[2].startswith("Stuck"), "\n".join(lines[:4])


def test_status_release_has_no_stuck_line_once_available(fake: FakeApi) -> None:
    code, out = invoke("status", "web-bbbbbbb")
    assert code == 0, out
    assert not [ln for ln in out.splitlines() if ln.startswith("Stuck")]


def test_history_days_prints_the_per_day_counts(fake: FakeApi) -> None:
    fake.objects["tracks"]["web"]["status"]["daily"] = [
        {"day": "2024-05-01", "pushes": 9},  # outside the 3 days asked for
        {"day": "2024-05-28", "pushes": 50, "succeeded": 45, "rollbacks": 5, "reverts": 4, "failed": 0},
        {"day": "2024-05-30", "pushes": 12, "succeeded": 11, "rollbacks": 1, "reverts": 1},
    ]
    code, out = invoke("history", "web", "--days", "3")
    assert code == 0, out
    assert cells(line_with(out, "2024-05-30")) == ["2024-05-30", "12", "11", "1", "1", "0"]
    assert cells(line_with(out, "2024-05-29")) == ["2024-05-29", "0", "0", "0", "0", "0"]
    assert cells(line_with(out, "2024-05-28")) == ["2024-05-28", "50", "45", "5", "4", "0"]
    assert cells(line_with(out, "total")) == ["total", "62", "56", "6", "5", "0"]
    assert "2024-05-01" not in out
    code, out = invoke("history", "web", "--days", "2", "-o", "json")
    assert [(d["day"], d["pushes"]) for d in json.loads(out)] == [("2024-05-29", 0), ("2024-05-30", 12)]
