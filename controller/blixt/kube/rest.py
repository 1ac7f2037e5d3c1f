"""Raw JSON requests through a `kubernetes` ApiClient.

The generated API classes turn objects into models and drop fields their
models do not know (every CRD field, and any field newer than the client);
blixt keeps objects as the plain JSON dicts the apiserver sends. Going through
ApiClient.param_serialize and call_api still reuses the client's connection
pool, TLS settings and authentication, including token refresh hooks."""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

DEFAULT_TIMEOUT = 30.0
MERGE_PATCH = "application/merge-patch+json"


class ApiError(ApiException):
    """A non-2xx answer, with the apiserver's Status decoded. Still an
    ApiException, so callers may catch either."""

    def __init__(self, method: str, path: str, status: int, reason: str, body: bytes):
        text = body.decode("utf-8", "replace")
        super().__init__(status=status, reason=reason, body=text)
        self.method = method
        self.path = path
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = {}
        self.status_object: dict[str, Any] = decoded if isinstance(decoded, dict) else {}

    @property
    def message(self) -> str:
        return self.status_object.get("message") or self.body or ""

    @property
    def status_reason(self) -> str:
        """The Status reason, e.g. NotFound, Conflict, Expired, Gone."""
        return self.status_object.get("reason") or self.reason or ""

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.status} {self.status_reason}: {self.message}"


def _send(api: ApiClient, method: str, path: str, query: Mapping[str, Any] | None,
          body: Any, content_type: str | None, timeout: Any):
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    method, url, headers, body, _ = api.param_serialize(
        method, path, query_params=list((query or {}).items()), header_params=headers,
        body=body, auth_settings=["BearerToken"])
    return api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)


def request(api: ApiClient, method: str, path: str, *, query: Mapping[str, Any] | None = None,
            body: Any = None, content_type: str | None = "application/json",
            timeout: Any = DEFAULT_TIMEOUT) -> Any:
    """One request; the decoded JSON answer, or ApiError on a non-2xx status.
    Connection failures raise urllib3 exceptions unchanged."""
    resp = _send(api, method, path, query, body if body is not None else None,
                 content_type if body is not None else None, timeout)
    data = resp.read()
    if not 200 <= resp.status <= 299:
        raise ApiError(method, path, resp.status, resp.reason, data)
    return json.loads(data) if data else None


def open_stream(api: ApiClient, path: str, query: Mapping[str, Any], timeout: Any) -> urllib3.HTTPResponse:
    """A GET whose body is read as it arrives (a watch). The caller owns the
    response and must close it; a non-2xx answer raises ApiError."""
    resp = _send(api, "GET", path, query, None, None, timeout)
    if not 200 <= resp.status <= 299:
        raise ApiError("GET", path, resp.status, resp.reason, resp.read())
    return resp.response


def iter_json_lines(resp: urllib3.HTTPResponse) -> Iterator[Any]:
    """The JSON documents of a watch body, one per line. The apiserver
    flushes one event per HTTP chunk, so each arrives without waiting for
    more data."""
    pending = b""
    for chunk in resp.stream(64 * 1024, decode_content=True):
        pending += chunk
        while True:
            line, sep, rest = pending.partition(b"\n")
            if not sep:
                break
            pending = rest
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def describe_error(e: BaseException) -> str:
    """A one-line reason for a failed request, without urllib3's wrapping."""
    if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason is not None:
        e = e.reason
    if isinstance(e, urllib3.exceptions.NewConnectionError):
        return str(e).rsplit(": ", 1)[-1]  # e.g. "[Errno 111] Connection refused"
    if isinstance(e, ApiError):
        return str(e)
    if isinstance(e, ApiException):  # status 0: the REST layer's wrapping of a TLS failure
        return " ".join(f"{e.status or ''} {e.reason}".split())
    return " ".join(f"{type(e).__name__}: {e}".split())
