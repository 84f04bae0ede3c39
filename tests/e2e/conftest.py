"""Fixtures for the e2e suite: the real local stack (hack/stack.sh) with the stopline CRDs installed.

If the stack cannot start, every test fails with the reason: e2e tests are never skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from dsl import Given, Then, When
from helpers import (
    CRD_DIR,
    OUTPUT_DIR,
    Stack,
    crd_files,
    create_namespace,
    delete_namespace,
    get_stack,
    install_crds,
    k8s_name,
    kubectl,
    namespace_report,
    stack_up,
    unique_suffix,
)
from operator_proc import SESSION_PREFIX, controller  # noqa: F401  (session fixture: the controller under test)

E2E_DIR = Path(__file__).resolve().parent
TEST_LABEL = "stopline-e2e-test"
FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Lets fixtures see in teardown whether the test failed (item.stash[FAILED]).
    if report.failed:
        item.stash[FAILED] = True
    return report


@contextlib.contextmanager
def setup_lock() -> Iterator[None]:
    """One xdist worker at a time sets the stack up and installs the CRDs; the others then find it done."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with (OUTPUT_DIR / ".setup.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running stack with crds/*.yaml applied and Established (starts the stack if needed)."""
    with setup_lock():
        try:
            stack_up()
            current = get_stack()
        except Exception as exc:  # any reason the stack is unusable fails the suite, never skips it
            pytest.fail(f"the e2e stack is not available: {exc}", pytrace=False)
        files = crd_files()
        if files:  # crds/ may still be empty while the models are being written
            try:
                install_crds(files)
            except Exception as exc:
                pytest.fail(f"installing {CRD_DIR}/*.yaml failed: {exc}", pytrace=False)
    return current


@pytest.fixture
def ns(stack: Stack, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, labelled stopline-e2e-test=<name>; deleted afterwards.

    When the test fails, the namespace's events and objects are printed and saved under tests/e2e/output/.
    """
    test_name = k8s_name(request.node.name)
    name = f"{SESSION_PREFIX}-" + k8s_name(request.node.name, max_len=48) + "-" + unique_suffix()
    create_namespace(name, {TEST_LABEL: test_name})
    yield name
    if request.node.stash.get(FAILED, False):
        report = namespace_report(name)
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUTPUT_DIR / f"{name}.txt").write_text(report)
        print(report)
    # Delete stopline objects while the session's controller still runs (an Experiment's cleanup handler
    # holds a finalizer), then the namespace.
    kubectl("delete", "releases,tracks,experiments", "--all", "-n", name, "--wait=true", "--timeout=60s", check=False)
    delete_namespace(name)


@pytest.fixture
def given(ns: str) -> Given:
    return Given(ns)


@pytest.fixture
def when(ns: str) -> When:
    return When(ns)


@pytest.fixture
def then(ns: str) -> Then:
    return Then(ns)
