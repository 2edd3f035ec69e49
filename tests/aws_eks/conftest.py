"""A small in-memory Kubernetes API on 127.0.0.1, over HTTPS with a throwaway CA.

It stands in for an EKS control plane, which cannot run here: it keeps Jobs, Secrets and
ServiceAccounts by namespace and name, answers POST/GET/PUT/DELETE the way the real API does
for the calls the launcher makes (201, 409 AlreadyExists, 404 NotFound, list with a fieldSelector on
metadata.name), and records every request with its headers, so tests see what went over
the wire. TLS is real: the server presents a certificate issued by a CA made with trustme,
and the launcher must trust exactly that CA (from eks:DescribeCluster) to reach it.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeKube:
    url: str
    ca_pem: str
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    # (method, kind) -> status to answer instead (e.g. ("POST", "jobs"): 422)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)

    def jobs(self) -> list[dict[str, Any]]:
        return [obj for (kind, _, _), obj in self.objects.items() if kind == "jobs"]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))


def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                  "reason": reason, "message": message}  # fmt: skip


def _answer(
    kube: FakeKube, method: str, path: str, query: dict[str, list[str]], body: Any
) -> tuple[int, Any]:
    parts = path.strip("/").split("/")
    # /apis/batch/v1/jobs (cluster-wide list)
    if parts == ["apis", "batch", "v1", "jobs"] and method == "GET":
        if ("GET", "jobs") in kube.fail:
            return _status(
                kube.fail[("GET", "jobs")], "Forbidden", "jobs is forbidden at cluster scope"
            )
        selector = query.get("fieldSelector", [""])[0]
        wanted = selector.removeprefix("metadata.name=") if selector else None
        items = [o for o in kube.jobs() if wanted is None or o["metadata"]["name"] == wanted]
        return 200, {"kind": "JobList", "items": items}
    # /api/v1/pods (cluster-wide) or /api/v1/namespaces/NS/pods: lists, by labelSelector
    if method == "GET" and (
        parts == ["api", "v1", "pods"]
        or (len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods")
    ):
        if ("GET", "pods") in kube.fail and len(parts) == 3:
            return _status(kube.fail[("GET", "pods")], "Forbidden", "pods at cluster scope")
        namespace = parts[3] if len(parts) == 5 else None
        wanted = dict(
            pair.split("=", 1) for pair in query.get("labelSelector", [""])[0].split(",") if pair
        )
        items = [
            obj
            for (kind, ns, _), obj in kube.objects.items()
            if kind == "pods"
            and (namespace is None or ns == namespace)
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return 200, {"kind": "PodList", "items": items}
    # /apis/batch/v1/namespaces/NS/jobs[/NAME], /api/v1/namespaces/NS/secrets[/NAME] or
    # /api/v1/namespaces/NS/serviceaccounts[/NAME]
    if parts[:3] == ["apis", "batch", "v1"]:
        rest = parts[3:]
    elif parts[:2] == ["api", "v1"]:
        rest = parts[2:]
    else:
        return _status(404, "NotFound", f"no route {path}")
    if (
        len(rest) < 3
        or rest[0] != "namespaces"
        or rest[2] not in ("jobs", "secrets", "serviceaccounts")
    ):
        return _status(404, "NotFound", f"no route {path}")
    namespace, kind = rest[1], rest[2]
    name = rest[3] if len(rest) > 3 else None
    if (method, kind) in kube.fail:
        code = kube.fail[(method, kind)]
        return _status(code, "Invalid" if code == 422 else "Error", f"{kind} refused by the test")
    key = (kind, namespace, name or (body or {}).get("metadata", {}).get("name", ""))
    if method == "POST" and name is None:
        if key in kube.objects:
            return _status(409, "AlreadyExists", f'{kind} "{key[2]}" already exists')
        created = json.loads(json.dumps(body))
        created["metadata"]["uid"] = str(uuid.uuid4())
        created["metadata"]["namespace"] = namespace
        kube.objects[key] = created
        return 201, created
    if method == "GET" and name is not None:
        found = kube.objects.get(key)
        return (200, found) if found else _status(404, "NotFound", f'{kind} "{name}" not found')
    if method == "PUT" and name is not None:
        if key not in kube.objects:
            return _status(404, "NotFound", f'{kind} "{name}" not found')
        kube.objects[key] = {
            **body,
            "metadata": {**body["metadata"], "uid": kube.objects[key]["metadata"]["uid"]},
        }
        return 200, kube.objects[key]
    if method == "DELETE" and name is not None:
        gone = kube.objects.pop(key, None)
        if gone is None:
            return _status(404, "NotFound", f'{kind} "{name}" not found')
        if kind == "jobs":  # the garbage collector: Secrets owned by the Job go with it
            for other, obj in list(kube.objects.items()):
                owners = obj["metadata"].get("ownerReferences", [])
                if any(o["uid"] == gone["metadata"]["uid"] for o in owners):
                    del kube.objects[other]
        return 200, {"kind": "Status", "status": "Success"}
    return _status(405, "MethodNotAllowed", f"{method} {path}")


@pytest.fixture(scope="session")
def cluster_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def fake_kube(cluster_ca: trustme.CA) -> Iterator[FakeKube]:
    """A fake Kubernetes API over HTTPS on 127.0.0.1; stops at the end of the test."""
    server_cert = cluster_ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    lock = threading.Lock()
    holder: dict[str, FakeKube] = {}

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            split = urlsplit(self.path)
            kube = holder["kube"]
            with lock:
                kube.requests.append(
                    Recorded(
                        self.command, split.path, parse_qs(split.query), dict(self.headers), body
                    )
                )
                status, payload = _answer(
                    kube, self.command, split.path, parse_qs(split.query), body
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    holder["kube"] = FakeKube(
        url=f"https://127.0.0.1:{server.server_address[1]}",
        ca_pem=cluster_ca.cert_pem.bytes().decode(),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["kube"]
    finally:
        server.shutdown()
        server.server_close()


def ca_data(pem: str) -> str:
    """certificateAuthority.data as eks:DescribeCluster returns it: base64 of the PEM."""
    return base64.b64encode(pem.encode()).decode()
