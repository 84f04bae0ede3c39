"""Who pushed: the revision's author reaches the Release status, its message and the revert commit."""

from __future__ import annotations

from datetime import UTC, datetime

from sim import make_spec

from controller.models.common import person_name
from controller.models.release import FailureStatus, ReleaseStatus
from controller.release.actions import Begin, Done, Facts, Manifests
from controller.release.messages import revert_message
from controller.release.plan import plan
from controller.release.status import reduce

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ADA = "Ada Lovelace <ada@example.org>"
GRACE = "Grace Hopper <grace@example.org>"


def test_person_names() -> None:
    assert person_name(ADA) == "Ada Lovelace"
    assert person_name("<bot@example.org>") == "bot@example.org"
    assert person_name(None) == ""


def test_begin_records_the_author_and_the_revert_names_them() -> None:
    spec = make_spec()
    begin = plan(spec, ReleaseStatus(), Facts(now=NOW, manifests=_manifests(spec)))
    assert isinstance(begin, Begin) and (begin.author, begin.committer) == (ADA, GRACE)
    status = reduce(spec, ReleaseStatus(), begin, Done(), NOW)
    assert (status.author, status.committer) == (ADA, GRACE)
    assert "by Ada Lovelace" in (status.message or "")

    status.failure = FailureStatus(reason="RolloutFailed", message="chat broke", at=NOW, phase="chat")
    message, _ = revert_message(spec, status, "shop", "web-1")
    subject, *body = message.splitlines()
    assert subject.endswith(" for Ada Lovelace"), subject
    assert f"Pushed by {ADA}, committed by {GRACE}." in body


def test_an_unknown_author_leaves_the_messages_as_before() -> None:
    spec = make_spec()
    status = ReleaseStatus(failure=FailureStatus(reason="RolloutFailed", message="x", at=NOW, phase="chat"))
    message, _ = revert_message(spec, status, "shop", "web-1")
    assert " for " not in message.splitlines()[0] and "Pushed by" not in message


def _manifests(spec: object) -> Manifests:
    from sim import World

    facts = World.of().facts(make_spec(), ReleaseStatus())  # a plain app's manifests, as the sim serves them
    return Manifests(deployments=facts.manifests.deployments if facts.manifests else (), author=ADA, committer=GRACE)
