"""Kubernetes Events about objects, from one node's agent.

What differs between nodes (a Service that does not fit one node's maps)
cannot be a condition every agent writes on the same object; an Event
carries the node in its source, shows in `kubectl describe` and
`kubectl get events`, and expires on its own. Writing one is best effort:
a failure is logged, never raised into the reconcile.
"""

from __future__ import annotations

import logging
import uuid

from kubernetes.client import ApiClient

from blixt.timestamps import utc_now

from . import rest

log = logging.getLogger(__name__)

API_VERSIONS = {"Gateway": "gateway.networking.k8s.io/v1", "Service": "v1"}


class EventRecorder:
    def __init__(self, api: ApiClient, component: str, host: str):
        self.api = api
        self.component = component
        self.host = host

    def record(self, obj: dict, kind: str, kind_type: str, reason: str, message: str) -> bool:
        """kind_type: Normal or Warning. True if the API server took it."""
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name") or ""
        now = utc_now()
        body = {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {"apiVersion": API_VERSIONS.get(kind, ""), "kind": kind, "namespace": ns,
                               "name": name, "uid": meta.get("uid") or "",
                               "resourceVersion": meta.get("resourceVersion") or ""},
            "reason": reason, "message": message[:1024], "type": kind_type,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component, "reportingInstance": f"{self.component}-{self.host}",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            rest.request(self.api, "POST", f"/api/v1/namespaces/{ns}/events", body=body)
            return True
        except Exception as e:  # the dataplane matters more than the report
            log.warning("could not record event %s on %s %s/%s: %s", reason, kind, ns, name,
                        rest.describe_error(e))
            return False
