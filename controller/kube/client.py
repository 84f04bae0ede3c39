"""Kubernetes API client construction (in-cluster, else kubeconfig), done once at startup."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes import config as _config
from kubernetes.config.config_exception import ConfigException

from controller.errors import ClusterError

config: Any = _config  # the loaders are untyped


def api_client(pool_size: int = 32) -> client.ApiClient:
    """An ApiClient for the controller's cluster, sized for concurrent calls from worker threads."""
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
    return client.ApiClient(configuration)
