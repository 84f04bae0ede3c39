"""Kubernetes API client construction (in-cluster, else kubeconfig), done once at startup."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes import config as _config
from kubernetes.config.config_exception import ConfigException

from controller.errors import ClusterError

config: Any = _config  # the loaders are untyped


_PATH = re.compile(r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/(?P<plural>[^/?]+)(?P<name>/[^/?]+)?")


def request_kind(method: str, url: str) -> tuple[str, str]:
    """``(verb, resource)`` of an API request, as the API server's request metrics name them: GET on a
    collection is LIST (WATCH with ``watch=true``), e.g. ``("LIST", "pods")``, ``("PATCH", "releases")``,
    ``("GET", "namespaces")``."""
    path, _, query = re.sub(r"^[a-z]+://[^/]+", "", url).partition("?")
    m = _PATH.match(path)
    if m is None:
        return method.upper(), "other"
    plural = m.group("plural")
    verb = method.upper()
    if verb == "GET" and m.group("name") is None:
        verb = "WATCH" if re.search(r"(?:^|&)watch=(?:true|1)(?:&|$)", query) else "LIST"
    return verb, plural


def api_client(pool_size: int = 32, on_request: Callable[[str, str], None] | None = None) -> client.ApiClient:
    """An ApiClient for the controller's cluster, sized for concurrent calls from worker threads.

    ``on_request(verb, resource)`` is told of every request it sends (the controller counts them)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        try:
            config.load_kube_config(client_configuration=configuration)
        except (ConfigException, FileNotFoundError, TypeError) as exc:
            raise ClusterError(
                f"no Kubernetes cluster configured: not in a pod and no usable kubeconfig ({exc})"
            ) from exc
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    if on_request is not None:
        rest: Any = api.rest_client  # untyped
        send = rest.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            on_request(*request_kind(method, url))
            return send(method, url, *args, **kwargs)

        rest.request = counted
    return api
