"""A fake cluster behind ``controller.kube.cli_client.connect`` for the CLI tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from web import samples

from controller.kube import cli_client
from controller.kube.cli_client import CliError


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            node = target.setdefault(key, {})
            merge(node, value)
        else:
            target[key] = value


@dataclass
class FakeApi:
    """``StoplineApi`` over in-memory objects; records patches and the connect arguments."""

    namespace: str = "shop"
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=samples.cluster)
    event_items: list[dict[str, Any]] = field(default_factory=samples.events)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    connected: list[tuple[str | None, str | None]] = field(default_factory=list)
    fail: CliError | None = None
    listed: list[tuple[str, bool]] = field(default_factory=list)

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        if self.fail:
            raise self.fail
        obj = self.objects.get(plural, {}).get(name)
        return copy.deepcopy(obj) if obj is not None else None

    def list_all(self, plural: str, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """The objects of the bound namespace (objects without one count as its), or of every namespace."""
        if self.fail:
            raise self.fail
        self.listed.append((plural, all_namespaces))
        return [
            copy.deepcopy(o)
            for o in self.objects.get(plural, {}).values()
            if all_namespaces or (o.get("metadata") or {}).get("namespace", self.namespace) == self.namespace
        ]

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        obj = self.objects.get(plural, {}).get(name)
        if obj is None:
            raise CliError(f"{plural} {name} not found")
        self.patches.append((plural, name, copy.deepcopy(patch)))
        merge(obj, patch)
        return copy.deepcopy(obj)

    def events(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [e for e in self.event_items if e["involvedObject"] == {"kind": kind, "name": name}]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    api = FakeApi()

    def connect(namespace: str | None = None, context: str | None = None) -> FakeApi:
        api.connected.append((namespace, context))
        if namespace:
            api.namespace = namespace
        return api

    monkeypatch.setattr(cli_client, "connect", connect)
    monkeypatch.setattr("controller.cli.now", lambda: samples.NOW)
    monkeypatch.setenv("USER", "alice")
    yield api
