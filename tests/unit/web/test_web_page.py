"""The pure ``render_*`` functions of the push status page, driven with model instances."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from controller.models.release import ReleaseStatus
from controller.web import page
from controller.web.views import EventView, ExperimentView, ReleaseView, TrackView, sort_events
from web import samples


class Dom(HTMLParser):
    """Just enough DOM: elements with attributes and text, plus a balance check."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "rect", "line"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.stack: list[tuple[str, dict[str, str], list[str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el: tuple[str, dict[str, str], list[str]] = (tag, {k: v or "" for k, v in attrs}, [])
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1][0] == tag, f"unbalanced </{tag}>; open: {[t for t, _, _ in self.stack]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for _, _, text in self.stack:
            text.append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[str, dict[str, str], list[str]]]:
        def match(a: dict[str, str]) -> bool:
            for k, v in attrs.items():
                key = k.rstrip("_").replace("_", "-")
                if key == "class":
                    if v not in a.get("class", "").split():
                        return False
                elif a.get(key) != v:
                    return False
            return True

        return [el for el in self.elements if el[0] == tag and match(el[1])]

    def text(self, tag: str, **attrs: str) -> list[str]:
        return [" ".join(" ".join(t).split()) for _, _, t in self.find(tag, **attrs)]


def _cell_text(cell: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", cell).split()).replace("&gt;", ">").replace("&lt;", "<")


def row_cells(html: str, tr_attrs: dict[str, str]) -> list[str]:
    """Text of each <td> of the one <tr> whose attributes include ``tr_attrs`` (class: every token)."""
    found = []
    for m in re.finditer(r"(<tr\b[^>]*>)(.*?)</tr>", html, re.S):
        attrs = Dom(m.group(1) + "</tr>").elements[0][1]
        ok = all(
            set(v.split()) <= set(attrs.get("class", "").split()) if k == "class" else attrs.get(k) == v
            for k, v in tr_attrs.items()
        )
        if ok:
            found.append([_cell_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(2), re.S)])
    assert len(found) == 1, found
    return found[0]


def release(status: ReleaseStatus | None, name: str = "web-3f9c2e1") -> ReleaseView:
    return ReleaseView.from_object(samples.release_object(name, samples.BAD, status))


def cluster_views() -> tuple[list[TrackView], list[ReleaseView]]:
    c = samples.cluster()
    tracks = [TrackView.from_object(o) for o in c["tracks"].values()]
    releases = [ReleaseView.from_object(o) for o in c["releases"].values()]
    return tracks, releases


# ---------------------------------------------------------------- release page
def test_rolled_back_release_has_the_banner_with_failure_and_revert() -> None:
    html = page.render_release(release(samples.rolled_back_status()), [], samples.NOW)
    dom = Dom(html)
    banners = dom.find("div", id="banner")
    assert len(banners) == 1
    assert "rolled-back" in banners[0][1]["class"].split()
    text = dom.text("div", id="banner")[0]
    assert text.startswith("This push was rolled back")
    assert "This push was rolled back gate chat-loadavg 7.20 > 6 in phase chat Revert commit" in text
    assert f"Revert commit {samples.REVERT} pushed to main" in text


@pytest.mark.parametrize(
    "status",
    [samples.succeeded_status(), samples.holding_status(), ReleaseStatus(), None],
    ids=["succeeded", "holding", "pending", "no-status"],
)
def test_no_banner_unless_rolled_back(status: ReleaseStatus | None) -> None:
    html = page.render_release(release(status), [], samples.NOW)
    assert Dom(html).find("div", id="banner") == []
    assert "rolled back" not in html


def test_failed_after_a_gate_without_rollback_is_red_too() -> None:
    status = samples.rolled_back_status()
    status.phase = "Failed"
    status.undo = None
    status.revert = None
    html = page.render_release(release(status), [], samples.NOW)
    text = Dom(html).text("div", id="banner")
    assert text and text[0].startswith("This push failed its gates and was not rolled back (rollback was not done)")


def test_failed_without_a_gate_has_no_banner() -> None:
    status = ReleaseStatus(phase="Failed", message="invalid spec")
    assert Dom(page.render_release(release(status), [], samples.NOW)).find("div", id="banner") == []


def test_rolling_back_has_an_amber_banner() -> None:
    status = samples.rolled_back_status()
    status.phase = "RollingBack"
    dom = Dom(page.render_release(release(status), [], samples.NOW))
    assert dom.find("div", id="banner", class_="rolling-back")
    assert dom.text("div", id="banner")[0].startswith("This push is being rolled back")


def test_gauges_table_rows_carry_the_numbers() -> None:
    html = page.render_release(release(samples.rolled_back_status()), [], samples.NOW)
    dom = Dom(html)
    assert len(dom.find("tr", class_="gauge")) == 3
    headers = dom.text("th")[:8]
    assert headers == ["Gate", "Phase", "Pre-push", "Post-push", "Delta", "Delta %", "Threshold", "Verdict"]
    assert row_cells(html, {"data-gate": "chat-loadavg", "data-phase": "chat"})[:8] == [
        "chat-loadavg",
        "chat",
        "4.13",
        "7.20",
        "+3.07",
        "+74.33%",
        ">6 or >+25%",
        "Fail",
    ]
    assert dom.find("tr", class_="verdict-Fail", data_gate="chat-loadavg", data_phase="chat")
    assert len(dom.find("tr", class_="verdict-Pass")) == 2


def test_subtitle_names_the_phase_like_imvu() -> None:
    html = page.render_release(release(samples.rolled_back_status()), [], samples.NOW)
    assert Dom(html).text("p", class_="sub") == ["Metrics of phase 2 of 2 (chat) of revision 3f9c2e1"]
    html = page.render_release(release(samples.holding_status()), [], samples.NOW)
    assert Dom(html).text("p", class_="sub") == ["Metrics of phase 1 of 2 (canary) of revision 3f9c2e1"]


def test_events_table_in_time_order() -> None:
    events = sort_events([EventView.from_object(o) for o in samples.events()])
    html = page.render_release(release(samples.rolled_back_status()), events, samples.NOW)
    rows = Dom(html).find("tr", class_="event")
    assert len(rows) == 3
    reasons = [row_cells(html, {"class": "event", "data-reason": r})[2] for r in ("PushStarted",)]
    assert reasons == ["PushStarted"]
    order = re.findall(r'<tr class="event event-\w+" data-reason="(\w+)"', html)
    assert order == ["PushStarted", "GateFailed", "RolledBack"]


def test_events_error_is_shown_instead_of_the_table() -> None:
    html = page.render_release(release(samples.rolled_back_status()), None, samples.NOW, events_error="403 Forbidden")
    assert "Events unavailable: 403 Forbidden" in html
    assert Dom(html).find("table", class_="events") == []


def test_final_pages_do_not_refresh_live_ones_do() -> None:
    assert 'http-equiv="refresh"' not in page.render_release(release(samples.rolled_back_status()), [], samples.NOW)
    assert 'http-equiv="refresh"' in page.render_release(release(samples.holding_status()), [], samples.NOW)


MALICIOUS = '<script>alert("x")</script>'


def test_malicious_gate_name_and_messages_are_escaped() -> None:
    status = samples.rolled_back_status(gate_name=MALICIOUS)
    status.gauges[1].message = "<img src=x onerror=alert(1)>"
    status.message = "</table><b>bold</b>"
    html = page.render_release(release(status), [], samples.NOW)
    assert "<script" not in html
    assert "<img" not in html
    assert "<b>bold" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    dom = Dom(html)  # still balanced
    assert len(dom.find("tr", class_="gauge")) == 3
    assert dom.find("tr", data_gate=MALICIOUS, data_phase="chat")  # attribute round-trips exactly
    assert MALICIOUS in dom.text("div", id="banner")[0]


def test_escaping_everywhere_on_index_track_and_experiments() -> None:
    _, releases = cluster_views()
    locked = samples.locked_track_status()
    locked.commit_lock.reason = MALICIOUS
    evil_track = TrackView.from_object(samples.track_object("web", locked))
    events = [EventView(type="Warning", reason=MALICIOUS, message=MALICIOUS)]
    x = samples.experiment_object("gdc", audience=["<qa>"])
    x["status"]["message"] = MALICIOUS
    for html in (
        page.render_index([evil_track], releases, samples.NOW, notes=[MALICIOUS]),
        page.render_track(evil_track, releases, samples.NOW),
        page.render_release(releases[0], events, samples.NOW),
        page.render_experiments([ExperimentView.from_object(x)], samples.NOW),
        page.render_error(404, MALICIOUS),
    ):
        assert "<script" not in html and "<qa>" not in html
        Dom(html)


def test_links_are_url_encoded() -> None:
    assert page.release_href("shop", "a b/c") == "/namespaces/shop/releases/a%20b%2Fc"
    assert page.track_href("n s", "web") == "/namespaces/n%20s/tracks/web"


# ---------------------------------------------------------------- index
def test_index_lists_tracks_with_locks_and_recent_releases() -> None:
    tracks, releases = cluster_views()
    html = page.render_index(tracks, releases, samples.NOW)
    dom = Dom(html)
    web = row_cells(html, {"data-name": "web", "class": "track"})
    assert web[0] == "web"
    assert web[3] == "Locked web-3f9c2e1 rolledback: gate chat-loadavg: 7.20 > 6"
    assert web[4] == "free"
    assert web[6] == "aaaaaaa"
    api = row_cells(html, {"data-name": "api", "class": "track"})
    assert (api[3], api[4], api[5]) == ("Open", "Held web-bbbbbbb", "web-bbbbbbb")
    assert dom.find("tr", class_="track", data_locked="true", data_name="web")
    assert [a["data-name"] for _, a, _ in dom.find("tr", class_="release")] == [
        "web-3f9c2e1",
        "web-aaaaaaa",
        "web-bbbbbbb",
    ]
    assert dom.find("a", href="/namespaces/shop/releases/web-3f9c2e1")
    assert dom.find("a", href="/namespaces/shop/tracks/web")


def test_index_limits_releases_and_says_when_empty() -> None:
    _, releases = cluster_views()
    html = page.render_index([], releases, samples.NOW, limit=2)
    assert len(Dom(html).find("tr", class_="release")) == 2
    assert "no Tracks" in html


# ---------------------------------------------------------------- track page
def test_track_page_shows_lock_history_and_graph() -> None:
    tracks, releases = cluster_views()
    web = next(t for t in tracks if t.name == "web")
    html = page.render_track(web, [r for r in releases if r.track == "web"], samples.NOW)
    dom = Dom(html)
    lock = dom.text("div", id="commit-lock")[0]
    assert lock.startswith("Commit lock: LOCKED — web-3f9c2e1 rolledback: gate chat-loadavg: 7.20 > 6")
    assert "stopline unlock web -n shop" in lock
    assert len(dom.find("tr", class_="history")) == 5
    assert [a["class"] for _, a, _ in dom.find("tr", class_="history")] == [
        "history result-RolledBack",
        "history result-Succeeded",
        "history result-Succeeded",
        "history result-Succeeded",
        "history result-RolledBack",
    ]
    first = html.split('<tr class="history result-RolledBack">', 1)[1].split("</tr>", 1)[0]
    assert [_cell_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", first)] == [
        "2024-05-30 11:58:00Z",
        "3f9c2e1",
        "web-3f9c2e1",
        "RolledBack",
        "8m00s",
        "chat-loadavg",
        "c0ffee0",
        "0",
    ]
    assert len(dom.find("svg", class_="rollback-graph")) == 1
    assert len(dom.find("g", class_="day")) == 30


def test_open_track_page() -> None:
    tracks, _ = cluster_views()
    api = next(t for t in tracks if t.name == "api")
    html = page.render_track(api, [], samples.NOW)
    dom = Dom(html)
    assert dom.find("div", id="commit-lock", class_="open")
    assert "no pushes yet" in html
    assert len(dom.find("g", class_="day")) == 30


# ---------------------------------------------------------------- experiments
def test_experiments_page_rollout_closed_on_decision_and_report() -> None:
    c = samples.cluster()
    views = sorted((ExperimentView.from_object(o) for o in c["experiments"].values()), key=lambda x: x.name)
    html = page.render_experiments(views, samples.NOW)
    dom = Dom(html)
    assert row_cells(html, {"class": "experiment-row", "data-name": "gdc"})[2:5] == [
        "To Users 10%",
        "—",
        "Winner:enhanced",
    ]
    assert row_cells(html, {"class": "experiment-row", "data-name": "beta"})[2] == "QA and Admin only"
    assert row_cells(html, {"class": "experiment-row", "data-name": "done"})[3:5] == ["enhanced", "Closed:enhanced"]
    assert len(dom.find("section", class_="experiment")) == 3
    assert len(dom.find("tr", class_="report-row")) == 6
    enhanced = [
        re.sub(r"<[^>]+>", "", c)
        for c in re.findall(r"<td[^>]*>(.*?)</td>", html.split('data-branch="enhanced"')[1].split("</tr>")[0])
    ]
    assert enhanced[1:] == [
        "150702",
        "66903",
        "0.44394",
        "0.24686",
        "0.000010",
        "99.9990%",
        "+1.84%",
        "[+1.02%, +2.67%]",
        "—",  # no Bayesian read-out in this sample status
        "—",
    ]
    assert dom.text("span", class_="closed-on") == ["—", "enhanced", "—"]


def test_experiment_section_lists_who_is_forced() -> None:
    obj = samples.experiment_object("qa", force={"users": {"alice": "enhanced"}, "groups": {"qa": "control"}})
    html = page.render_experiments([ExperimentView.from_object(obj)], samples.NOW)
    assert Dom(html).text("li", class_="forced") == ["user alice → enhanced", "group qa → control"]
    assert "Forced (not counted)" in html
    plain = page.render_experiments([ExperimentView.from_object(samples.experiment_object("p"))], samples.NOW)
    assert 'class="forced"' not in plain


def test_experiment_section_shows_segment_rows_and_flags_the_imbalanced_segment() -> None:
    obj = samples.experiment_object("seg", segmented=True)
    html = page.render_experiments([ExperimentView.from_object(obj)], samples.NOW)
    dom = Dom(html)
    assert len(dom.find("tr", class_="segment-row")) == 4
    de = row_cells(html, {"data-segment": "de", "data-branch": "control"})
    assert de[:4] == ["country", "de", "control", "300"]
    assert de[-1] == "2.90e-36 MISMATCH"
    assert 'class="segment-row bad"' in html and 'data-segment="fr"' in html
    assert dom.text("li", class_="balance") == ["country: p=1.40e-35 over 2 segments IMBALANCED (de)"]
    assert '<li class="balance bad">' in html
    plain = page.render_experiments([ExperimentView.from_object(samples.experiment_object("p"))], samples.NOW)
    assert "segment-row" not in plain and "Segment balance" not in plain


def test_experiment_section_shows_the_cuped_comparison() -> None:
    html = page.render_experiments(
        [ExperimentView.from_object(samples.experiment_object("c", cuped=True))], samples.NOW
    )
    assert "CUPED (θ = 0.801235)" in html
    assert row_cells(html, {"class": "cuped-row", "data-branch": "enhanced"}) == [
        "enhanced",
        "1500",
        "3.53311",
        "0.99000",
        "0.001200",
        "+3.54%",
        "—",
        "-67.12%",
    ]


def test_events_in_the_same_second_keep_the_api_servers_order() -> None:
    def ev(reason: str, version: str, at: str = "2024-05-30T11:58:00Z") -> dict[str, object]:
        return {"metadata": {"resourceVersion": version}, "reason": reason, "lastTimestamp": at}

    raw = [
        ev("RolledBack", "1203"),
        ev("GateFailed", "1201"),
        ev("GitRevertPushed", "1202"),
        ev("Later", "5", "2024-05-30T11:59:00Z"),
    ]
    ordered = sort_events([EventView.from_object(o) for o in raw])
    assert [e.reason for e in ordered] == ["GateFailed", "GitRevertPushed", "RolledBack", "Later"]
    assert EventView.from_object({"metadata": {"resourceVersion": "abc"}}).sequence == 0


def test_phase_rows_list_the_objects_each_phase_pushed() -> None:
    from controller.models.release import PhaseStatus

    status = samples.rolled_back_status().model_copy(
        update={
            "phases": [
                PhaseStatus(
                    name="chat",
                    state="Failed",
                    deployments=["chat"],
                    workloads=["Deployment/chat", "StatefulSet/chat-store"],
                    objects=["ConfigMap/chat-config", "Deployment/chat", "StatefulSet/chat-store", "Service/chat"],
                    pruned=["Service/old"],
                )
            ]
        }
    )
    html = page.render_release(release(status), [], samples.NOW)
    cells = row_cells(html, {"class": "phase", "data-name": "chat"})
    assert cells[2] == "chat"
    assert (
        cells[3] == "ConfigMap/chat-config, Deployment/chat, StatefulSet/chat-store, Service/chat, Service/old (pruned)"
    )


# ---------------------------------------------------------------- a stuck rollout explains itself (issue 17)
def test_a_stuck_rollout_names_its_cause_below_the_phase() -> None:
    html = page.render_release(release(samples.stuck_status()), [], samples.NOW)
    facts = re.findall(r"<dt>([^<]*)</dt><dd>(.*?)</dd>", html)
    assert [k for k, _ in facts][:3] == ["Phase", "Stuck", "Current phase"]
    stuck = dict(facts)["Stuck"]
    assert 'class="stuck no-heal"' in stuck and 'data-reason="FailedCreate"' in stuck
    assert (
        "serviceaccount &quot;frontend&quot; not found — cannot heal by waiting: phase canary fails at "
        "2024-05-30 12:00:57Z"
    ) in stuck


def test_a_rollout_that_may_heal_says_so() -> None:
    html = page.render_release(release(samples.stuck_status(heals=True)), [], samples.NOW)
    stuck = dict(re.findall(r"<dt>([^<]*)</dt><dd>(.*?)</dd>", html))["Stuck"]
    assert 'class="stuck heals"' in stuck and "may heal: phase canary keeps waiting" in stuck


def test_no_stuck_fact_when_nothing_is_stuck() -> None:
    html = page.render_release(release(samples.holding_status()), [], samples.NOW)
    assert "<dt>Stuck</dt>" not in html
