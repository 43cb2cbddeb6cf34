"""The operator's Kubernetes calls beyond what kopf does for the object being handled.

kopf watches the resources, patches the object a handler runs for, and posts
events. This module does the rest: reading a WASM policy from a ConfigMap, and
patching the status of *another* object (the snapshot a promotion superseded,
a deployment's status written by the rollout timer). It uses the official
``kubernetes`` client, configured from the same kubeconfig or in-cluster
service account that kopf logs in with, in worker threads so that the event
loop never blocks.

:class:`UserClient` is the same client, synchronous, for the ``kubectl pkg`` plugin: it
reads the caller's kubeconfig (``$KUBECONFIG``, a context chosen as kubectl does) and acts
as the caller.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import datetime as dt
import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from pkg_operator import crashpoints
from pkg_operator.api import GROUP, VERSION

__all__ = [
    "Conflict",
    "KubeError",
    "SecretData",
    "UserClient",
    "ensure_ca_bundle",
    "get_crd",
    "get_object",
    "list_objects",
    "patch_status",
    "post_event",
    "read_configmap_binary",
    "read_secret",
    "read_trusted_keys",
    "write_secret",
]

log = logging.getLogger(__name__)


class KubeError(Exception):
    """A Kubernetes call failed in a way the user can fix; the message says how."""


class Conflict(Exception):
    """Someone else wrote the object first (another replica): read it again."""


@functools.cache
def _api_client() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient()


def _read_configmap_binary(namespace: str, name: str, key: str) -> bytes:
    api = kubernetes.client.CoreV1Api(_api_client())
    try:
        configmap: Any = api.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise KubeError(
                f"ConfigMap {namespace}/{name} named by spec.wasm.configMapRef does not exist: "
                "create it (kubectl create configmap NAME --from-file=KEY=policy.wasm) first"
            ) from None
        raise KubeError(f"reading ConfigMap {namespace}/{name} failed: {exc.reason}") from exc
    binary = configmap.binary_data or {}
    if key not in binary:
        present = sorted(binary) + sorted(configmap.data or {})
        raise KubeError(
            f"ConfigMap {namespace}/{name} has no binaryData key {key!r} (it has {present}); "
            "put the .wasm module under binaryData (kubectl create configmap --from-file does)"
        )
    return base64.b64decode(binary[key])


async def read_configmap_binary(namespace: str, name: str, key: str) -> bytes:
    """The bytes under ``binaryData[key]`` of a ConfigMap; KubeError says what is missing."""
    return await asyncio.to_thread(_read_configmap_binary, namespace, name, key)


def _read_trusted_keys(namespace: str, name: str) -> dict[str, bytes]:
    api = kubernetes.client.CoreV1Api(_api_client())
    try:
        configmap: Any = api.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise KubeError(f"reading ConfigMap {namespace}/{name} failed: {exc.reason}") from exc
    else:
        keys = {k: v.encode() for k, v in (configmap.data or {}).items()}
        keys.update({k: base64.b64decode(v) for k, v in (configmap.binary_data or {}).items()})
        return keys
    try:
        secret: Any = api.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise KubeError(
                f"PKG_TRUSTED_KEYS names {namespace}/{name}, which is neither a ConfigMap nor a "
                "Secret: create it with one public key per key id (kubectl create configmap "
                f"{name} -n {namespace} --from-file=KEYID=KEYID.pub)"
            ) from None
        raise KubeError(f"reading Secret {namespace}/{name} failed: {exc.reason}") from exc
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


async def read_trusted_keys(namespace: str, name: str) -> dict[str, bytes]:
    """The trusted public keys, ``{key id: PEM or base64}``, from a ConfigMap, else a Secret."""
    return await asyncio.to_thread(_read_trusted_keys, namespace, name)


def _get_object(plural: str, namespace: str, name: str) -> dict[str, Any]:
    api = kubernetes.client.CustomObjectsApi(_api_client())
    result = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return cast(dict[str, Any], result)


async def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One of the operator's custom objects; None when it does not exist."""
    try:
        return await asyncio.to_thread(_get_object, plural, namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _list_objects(plural: str) -> list[dict[str, Any]]:
    api = kubernetes.client.CustomObjectsApi(_api_client())
    result = cast(dict[str, Any], api.list_cluster_custom_object(GROUP, VERSION, plural))
    return cast(list[dict[str, Any]], result.get("items") or [])


async def list_objects(plural: str) -> list[dict[str, Any]]:
    """Every one of the operator's custom objects of ``plural``, in all namespaces."""
    return await asyncio.to_thread(_list_objects, plural)


def _get_crd(name: str) -> dict[str, Any]:
    api = kubernetes.client.ApiextensionsV1Api(_api_client())
    meta: Any = api.read_custom_resource_definition(name).metadata
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": meta.name, "uid": meta.uid},
    }


async def get_crd(name: str) -> dict[str, Any] | None:
    """A CustomResourceDefinition's reference (apiVersion, kind, name, uid), for events;
    None when it does not exist."""
    try:
        return await asyncio.to_thread(_get_crd, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _post_event(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"  # cluster-scoped objects: as kopf does
    now = dt.datetime.now(dt.UTC)
    body: Any = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'pkg')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
        "source": {"component": "pkg-operator"},
        "reportingComponent": "pkg-operator",
    }
    kubernetes.client.CoreV1Api(_api_client()).create_namespaced_event(namespace, body)


async def post_event(obj: dict[str, Any], *, type_: str, reason: str, message: str) -> None:
    """Post an event about ``obj`` (a raw object with apiVersion, kind, metadata) from outside
    a handler, where kopf's own event posting is not available (a background task)."""
    await asyncio.to_thread(_post_event, obj, type_, reason, message)


def _patch_status(
    plural: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
) -> dict[str, Any]:
    api = kubernetes.client.CustomObjectsApi(_api_client())
    body: dict[str, Any] = {"status": status}
    if resource_version is not None:
        # A merge patch that names a resourceVersion is applied only to that version:
        # the API server answers 409 when another writer came first.
        body["metadata"] = {"resourceVersion": resource_version}
    result = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, body
    )
    return cast(dict[str, Any], result)


async def patch_status(
    plural: str,
    namespace: str,
    name: str,
    status: dict[str, Any],
    *,
    resource_version: str | None = None,
    crash_point: str = "patch_status",
) -> dict[str, Any] | None:
    """Merge-patch an object's status subresource; None when the object is gone.

    A merge patch replaces lists whole, so a writer that read ``conditions`` and writes
    them back passes the ``resource_version`` it read: :class:`Conflict` then tells it
    that someone wrote in between, and it must read again rather than undo that write.
    ``crash_point`` names the write for the chaos suite (a periodic write is named apart,
    so the crash points of a run stay where the run itself puts them).
    """
    crashpoints.hit(f"kube:{crash_point}:{plural}")
    try:
        return await asyncio.to_thread(
            _patch_status, plural, namespace, name, status, resource_version
        )
    except ApiException as exc:
        if exc.status == 404:
            log.info(
                "not patching the status of %s %s/%s: it no longer exists", plural, namespace, name
            )
            return None
        if exc.status == 409 and resource_version is not None:
            raise Conflict(
                f"{plural} {namespace}/{name} changed since version {resource_version}"
            ) from None
        raise


# ---- the admission webhook's certificate Secret and configuration (pkg_operator.inject)


@dataclass(frozen=True)
class SecretData:
    """A Secret's decoded data and the resourceVersion it was read at."""

    data: dict[str, bytes]
    resource_version: str


def _read_secret(namespace: str, name: str) -> SecretData | None:
    api = kubernetes.client.CoreV1Api(_api_client())
    try:
        secret: Any = api.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(f"reading Secret {namespace}/{name} failed: {exc.reason}") from exc
    data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    return SecretData(data, secret.metadata.resource_version)


async def read_secret(namespace: str, name: str) -> SecretData | None:
    """A Secret's data; None when it does not exist."""
    return await asyncio.to_thread(_read_secret, namespace, name)


def _write_secret(
    namespace: str, name: str, data: dict[str, bytes], resource_version: str | None
) -> None:
    api = kubernetes.client.CoreV1Api(_api_client())
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    try:
        if resource_version is None:
            body: Any = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "type": "Opaque",
                "data": encoded,
            }
            api.create_namespaced_secret(namespace, body)
        else:
            # A merge patch with the resourceVersion read: refused (409) when another
            # replica wrote in between, so two replicas never serve different CAs.
            patch = {"metadata": {"resourceVersion": resource_version}, "data": encoded}
            api.patch_namespaced_secret(name, namespace, patch)
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(f"Secret {namespace}/{name} changed meanwhile") from None
        if exc.status == 403:
            raise KubeError(
                f"the operator may not write Secret {namespace}/{name} ({exc.reason}): grant its "
                "ServiceAccount get, create and patch on it (the chart's Role does)"
            ) from None
        raise KubeError(f"writing Secret {namespace}/{name} failed: {exc.reason}") from exc


async def write_secret(
    namespace: str, name: str, data: dict[str, bytes], resource_version: str | None
) -> None:
    """Create the Secret (``resource_version`` None) or update it only if unchanged since
    read; :class:`Conflict` when another writer came first."""
    await asyncio.to_thread(_write_secret, namespace, name, data, resource_version)


def _ensure_ca_bundle(configuration: str, bundle: bytes) -> int | None:
    api = kubernetes.client.AdmissionregistrationV1Api(_api_client())
    try:
        current: Any = api.read_mutating_webhook_configuration(configuration)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(
            f"reading MutatingWebhookConfiguration {configuration} failed: {exc.reason}"
        ) from exc
    wanted = base64.b64encode(bundle).decode()
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(current.webhooks or []):
        if (webhook.client_config.ca_bundle or "") != wanted:
            # The test keeps a concurrent reordering from patching the wrong entry.
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.name})
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted}
            )
    if ops:
        api.patch_mutating_webhook_configuration(configuration, ops)
    return len(ops) // 2


async def ensure_ca_bundle(configuration: str, bundle: bytes) -> int | None:
    """Set ``caBundle`` of every webhook of a MutatingWebhookConfiguration to ``bundle``;
    how many changed, or None when the configuration does not exist."""
    return await asyncio.to_thread(_ensure_ca_bundle, configuration, bundle)


class UserClient:
    """The kubectl plugin's calls, as the user of a kubeconfig context (synchronous)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        try:
            contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=kubeconfig
            )
            chosen = active
            if context is not None:
                chosen = next((c for c in contexts if c.get("name") == context), None)
                if chosen is None:
                    names = ", ".join(c.get("name", "") for c in contexts)
                    raise KubeError(f"no context {context!r} in the kubeconfig (it has: {names})")
            self.api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except kubernetes.config.ConfigException as exc:
            raise KubeError(
                f"cannot read the kubeconfig ({exc}); set KUBECONFIG or use --kubeconfig"
            ) from exc
        self.context_user = str((chosen.get("context") or {}).get("user") or "")
        self.namespace = str((chosen.get("context") or {}).get("namespace") or "default")

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of the operator's custom objects; None when it does not exist."""
        api = kubernetes.client.CustomObjectsApi(self.api)
        try:
            result = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"reading {plural} {namespace}/{name} failed: {exc.reason}") from exc
        return cast(dict[str, Any], result)

    def list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """The operator's custom objects of a kind in ``namespace`` (None: every namespace)."""
        api = kubernetes.client.CustomObjectsApi(self.api)
        try:
            if namespace is None:
                result: Any = api.list_cluster_custom_object(GROUP, VERSION, plural)
            else:
                result = api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        except ApiException as exc:
            raise KubeError(f"listing {plural} failed: {exc.reason} ({exc.status})") from exc
        return list(result.get("items") or [])

    def annotate(self, plural: str, namespace: str, name: str, key: str, value: str) -> None:
        """Set one annotation (a merge patch of metadata only)."""
        api = kubernetes.client.CustomObjectsApi(self.api)
        body = {"metadata": {"annotations": {key: value}}}
        try:
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
        except ApiException as exc:
            raise KubeError(
                f"annotating {plural} {namespace}/{name} failed: {exc.reason} ({exc.status}); "
                "check that it exists and that you may patch it"
            ) from exc

    def events(
        self, namespace: str, name: str, uid: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The Kubernetes events about one object (core/v1, as ``kubectl describe`` shows)."""
        api = kubernetes.client.CoreV1Api(self.api)
        selector = f"involvedObject.name={name}"
        if uid:
            selector += f",involvedObject.uid={uid}"
        try:
            result = api.list_namespaced_event(namespace, field_selector=selector)
        except ApiException as exc:
            raise KubeError(
                f"listing the events of {namespace}/{name} failed: {exc.reason} ({exc.status}); "
                "check that you may list events in the namespace"
            ) from exc
        return list(self.api.sanitize_for_serialization(result).get("items") or [])

    def whoami(self) -> str:
        """The caller's user name as the API server sees it (SelfSubjectReview), else the
        kubeconfig's user name."""
        api = kubernetes.client.AuthenticationV1Api(self.api)
        try:
            review: Any = api.create_self_subject_review(kubernetes.client.V1SelfSubjectReview())
            username = review.status.user_info.username
        except (ApiException, AttributeError) as exc:
            log.debug("SelfSubjectReview failed (%s); using the kubeconfig's user name", exc)
            username = None
        return str(username or self.context_user or "unknown")
