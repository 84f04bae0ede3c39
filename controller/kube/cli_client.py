"""The CLI's access to the cluster: the current kubeconfig context, stopline objects, their Events.

Every failure a user can meet becomes a :class:`CliError` with a one-line message (the CLI prints it and
exits 1): no kubeconfig, API server unreachable, stopline CRDs not installed, not allowed. Tests replace
:func:`connect` with a fake that has the :class:`StoplineApi` methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import typer
from kubernetes import client
from kubernetes import config as _config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError as Urllib3Error

from controller.errors import StoplineError
from controller.kube.apierrors import api_detail
from controller.models.common import API_GROUP, API_VERSION

config: Any = _config  # the loaders are untyped
T = TypeVar("T")
REQUEST_TIMEOUT = (5, 30)
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
KINDS = {"releases": "Release", "tracks": "Track", "experiments": "Experiment"}


class CliError(StoplineError):
    """Something the user has to fix; the message is one line, printed without a traceback."""


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn user-facing errors into one ``error:`` line on stderr and exit code 1 (no traceback)."""
    try:
        yield
    except StoplineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


class StoplineApi(Protocol):
    """What the CLI needs from the cluster, bound to one namespace."""

    namespace: str

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A stopline object in the namespace, or None when it does not exist."""
        ...

    def list_all(self, plural: str, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """Every ``plural`` object in the namespace (in every namespace with ``all_namespaces``)."""
        ...

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch an object (annotations); raises CliError when it does not exist."""
        ...

    def events(self, kind: str, name: str) -> list[dict[str, Any]]:
        """core/v1 Events about ``kind``/``name`` (camelCase dicts)."""
        ...


def _detail(exc: ApiException) -> str:
    return api_detail(exc) or str(exc.reason or exc.status)


def kubeconfig_path() -> str:
    """``$KUBECONFIG`` (possibly a list) read now, not at import time as the client library does."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _context_namespace(context: str | None) -> str | None:
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig_path())
    except (ConfigException, FileNotFoundError, TypeError, KeyError):
        return None
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts or () if c.get("name") == context), None)
    ns = ((chosen or {}).get("context") or {}).get("namespace")
    return str(ns) if ns else None


def default_namespace(context: str | None = None) -> str:
    """The kubeconfig context's namespace, else the pod's (in-cluster), else ``default``."""
    ns = _context_namespace(context)
    if ns:
        return ns
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def _configuration(context: str | None) -> client.Configuration:
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig_path(), context=context, client_configuration=configuration)
        return configuration
    except (ConfigException, FileNotFoundError, TypeError) as exc:
        kube_error = exc
    if context is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return configuration
        except ConfigException:
            pass
    raise CliError(f"no Kubernetes cluster configured: {kube_error} (set KUBECONFIG or pick a context)")


class KubeApi:
    """:class:`StoplineApi` over the Kubernetes Python client."""

    def __init__(self, namespace: str, api_client: client.ApiClient) -> None:
        self.namespace = namespace
        self._api: Any = api_client
        self._custom: Any = client.CustomObjectsApi(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._host = api_client.configuration.host

    def _call(self, what: str, fn: Callable[[], T], where: str | None = None) -> T:
        try:
            return fn()
        except ApiException as exc:
            if exc.status in (401, 403):
                where = where or f"in namespace {self.namespace}"
                raise CliError(f"not allowed to {what} {where}: {_detail(exc)}") from None
            raise
        except (Urllib3Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise CliError(f"cannot reach the Kubernetes API at {self._host}: {reason}") from None

    def _crds_missing(self, plural: str) -> CliError | None:
        """A CliError when the stopline CRDs (or this kind's) are not installed, else None."""
        try:
            resources = self._call(
                "discover the stopline.dev API",
                lambda: self._custom.get_api_resources(API_GROUP, API_VERSION, _request_timeout=REQUEST_TIMEOUT),
            )
        except ApiException as exc:
            if exc.status == 404:
                return CliError(
                    f"the stopline CRDs are not installed in this cluster (no API {API_GROUP}/{API_VERSION}); "
                    "install them with: kubectl apply -f crds/"
                )
            raise CliError(f"discover {API_GROUP}/{API_VERSION}: {_detail(exc)}") from None
        names = {r.name for r in getattr(resources, "resources", None) or ()}
        if plural not in names:
            return CliError(
                f"the {KINDS.get(plural, plural)} CRD is not installed in this cluster "
                f"({plural}.{API_GROUP} missing); install it with: kubectl apply -f crds/"
            )
        return None

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A stopline object in the namespace, or None."""
        try:
            obj: dict[str, Any] = self._call(
                f"read {plural}",
                lambda: self._custom.get_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                missing = self._crds_missing(plural)
                if missing is not None:
                    raise missing from None
                return None
            raise CliError(f"read {KINDS.get(plural, plural)} {name}: {_detail(exc)}") from None
        return obj

    def list_all(self, plural: str, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """Every ``plural`` object in the namespace (in every namespace with ``all_namespaces``)."""
        try:
            out: dict[str, Any] = self._call(
                f"list {plural}",
                lambda: (
                    self._custom.list_cluster_custom_object(
                        API_GROUP, API_VERSION, plural, _request_timeout=REQUEST_TIMEOUT
                    )
                    if all_namespaces
                    else self._custom.list_namespaced_custom_object(
                        API_GROUP, API_VERSION, self.namespace, plural, _request_timeout=REQUEST_TIMEOUT
                    )
                ),
                "in all namespaces" if all_namespaces else None,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise (self._crds_missing(plural) or CliError(f"list {plural}: {_detail(exc)}")) from None
            raise CliError(f"list {plural}: {_detail(exc)}") from None
        return list(out.get("items") or [])

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch the object."""
        try:
            obj: dict[str, Any] = self._call(
                f"patch {plural}",
                lambda: self._custom.patch_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    self.namespace,
                    plural,
                    name,
                    patch,
                    _content_type="application/merge-patch+json",
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise (
                    self._crds_missing(plural)
                    or CliError(f"{KINDS.get(plural, plural)} {name} not found in namespace {self.namespace}")
                ) from None
            raise CliError(f"patch {KINDS.get(plural, plural)} {name}: {_detail(exc)}") from None
        return obj

    def events(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Events about ``kind``/``name`` in the namespace."""
        try:
            out = self._call(
                "list events",
                lambda: self._core.list_namespaced_event(
                    self.namespace,
                    field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiException as exc:
            raise CliError(f"list events: {_detail(exc)}") from None
        items: list[dict[str, Any]] = self._api.sanitize_for_serialization(out).get("items") or []
        return items


def connect(namespace: str | None = None, context: str | None = None) -> StoplineApi:
    """An API bound to ``namespace`` (default: the context's) on the current (or named) kubeconfig context."""
    configuration = _configuration(context)
    configuration.retries = 1
    return KubeApi(namespace or default_namespace(context), client.ApiClient(configuration))
