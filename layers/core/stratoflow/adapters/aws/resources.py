"""Resource files on AWS: ``s3://<bucket>/resources/<project>/<path>``, one S3 object per
file, its versions S3's own (the bucket has versioning on; a version is S3's VersionId).

- upload: ``PutObject`` (the SHA-256 of the bytes in the object's metadata); list: the latest
  version of each object under the project's prefix (``ListObjectVersions``); delete: every
  version and delete marker of the key, so nothing of it stays billed;
- pins: ``pins/<sha256 of the run id>.json``, written with ``If-None-Match: *`` (the first
  pins of a run win), read by the dispatcher, which puts the pinned version ids in the attempt
  input; the runner then fetches exactly those versions as the project's role, whose policy
  reads ``resources/<its project>/`` only (``projects.ProjectPlaces.policy``).

The API function manages the files (its role may write and delete under ``resources/``); the
functions that trigger runs read the newest version ids (``HeadObject``) and write pins.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from stratoflow.errors import InvalidInput, NotFound
from stratoflow.resources import (
    MAX_TASK_RESOURCES,
    MAX_VERSIONS,
    ResourceStore,
    ResourceUnavailable,
    ResourceVersion,
    check_path,
    check_prefix,
    check_room,
    check_size,
)
from stratoflow.secrets import check_project

RESOURCES_PREFIX = "resources/"
PINS_PREFIX = "pins/"
_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NotFound", "InvalidArgument"}
_VERSION_ID = re.compile(r"^[A-Za-z0-9._+=-]{1,1024}$")


def fetch_list(files: Sequence[Mapping[str, Any]], project: str) -> tuple[str, str]:
    """What a fetcher in the task's own container set (the Batch fetch container, the pod's
    reporter) is given for the versions a run pinned: "VERSION PATH" lines and the bucket,
    from the dispatcher's ``{path, version, uri}`` entries, each checked to be one of
    ``project``'s files; ``InvalidInput`` naming the problem."""
    if len(files) > MAX_TASK_RESOURCES:
        raise InvalidInput(f"{len(files)} files, more than {MAX_TASK_RESOURCES}")
    prefix = f"{RESOURCES_PREFIX}{project}/"
    buckets: set[str] = set()
    lines = []
    for entry in files:
        try:
            path, version, uri = str(entry["path"]), str(entry["version"]), str(entry["uri"])
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"a file entry lacks {exc}") from None
        check_path(path, "resources")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or key != prefix + path:
            raise InvalidInput(f"{path!r}: {uri} is not project {project!r}'s file")
        if not _VERSION_ID.match(version):
            raise InvalidInput(f"{path!r}: {version[:40]!r} is not an S3 version id")
        buckets.add(bucket)
        lines.append(f"{version} {path}")
    if len(buckets) != 1:
        raise InvalidInput("the files of a task must be in one bucket")
    return "\n".join(lines), buckets.pop()


def resource_key(project: str, path: str) -> str:
    return f"{RESOURCES_PREFIX}{check_project(project)}/{check_path(path)}"


def pins_key(run_id: str) -> str:
    return f"{PINS_PREFIX}{hashlib.sha256(run_id.encode()).hexdigest()}.json"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Resources(ResourceStore):
    """Resource files in the stack's bucket (see the module's doc)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def uri(self, project: str, path: str) -> str:
        return f"s3://{self.bucket}/{resource_key(project, path)}"

    # ------------------------------------------------------------ reading
    def _versions_under(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every version (not delete markers) of every key under ``prefix``, S3's order:
        by key, newest first."""
        for page in self._s3.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            yield from page.get("Versions", [])

    def _version(self, project: str, item: Mapping[str, Any]) -> ResourceVersion:
        key = str(item["Key"])
        return ResourceVersion(
            path=key[len(f"{RESOURCES_PREFIX}{project}/") :],
            version=str(item["VersionId"]),
            size=int(item.get("Size", item.get("ContentLength", 0))),
            sha256=str((item.get("Metadata") or {}).get("sha256", "")),
            created_at=item["LastModified"],
        )

    def files(self, project: str, prefix: str = "") -> list[ResourceVersion]:
        check_prefix(prefix)
        base = f"{RESOURCES_PREFIX}{check_project(project)}/"
        found = [
            self._version(project, item)
            for item in self._versions_under(base + prefix)
            if item.get("IsLatest")
        ]
        return sorted(found, key=lambda v: v.path)

    def versions(self, project: str, path: str) -> list[ResourceVersion]:
        """Newest first, each with its SHA-256 (a HeadObject per version: a listing does not
        carry an object's metadata; at most MAX_VERSIONS of them)."""
        key = resource_key(project, path)
        found = [self._version(project, i) for i in self._versions_under(key) if i["Key"] == key]
        if not found:
            raise NotFound(f"resource {path!r} not found in project {project!r}")
        found = [replace(v, sha256=self._digest(key, v.version)) for v in found[:MAX_VERSIONS]]
        return sorted(found, key=lambda v: v.created_at, reverse=True)

    def _digest(self, key: str, version: str) -> str:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key, VersionId=version)
        except ClientError as exc:
            if _code(exc) in _MISSING:  # deleted meanwhile
                return ""
            raise
        return str((head.get("Metadata") or {}).get("sha256", ""))

    def get(
        self, project: str, path: str, version: str | None = None
    ) -> tuple[ResourceVersion, bytes]:
        key = resource_key(project, path)
        extra = {"VersionId": version} if version is not None else {}
        try:
            found = self._s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                what = f"has no version {version!r}" if version else "not found"
                raise NotFound(f"resource {path!r} {what} in project {project!r}") from None
            raise
        data = found["Body"].read()
        info = ResourceVersion(
            path=path,
            version=str(found.get("VersionId") or version or ""),
            size=len(data),
            sha256=str((found.get("Metadata") or {}).get("sha256", "")),
            created_at=found["LastModified"],
        )
        return info, data

    def newest(self, project: str, paths: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for path in paths:
            try:
                head = self._s3.head_object(Bucket=self.bucket, Key=resource_key(project, path))
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    continue
                raise
            version = head.get("VersionId")
            if not version or version == "null":
                raise ResourceUnavailable(
                    f"resource {path!r}: the bucket {self.bucket} keeps no versions "
                    "(VersioningConfiguration: Enabled is part of the stack)"
                )
            found[path] = str(version)
        return found

    # ------------------------------------------------------------ writing
    def put(self, project: str, path: str, data: bytes) -> ResourceVersion:
        check_size(len(data))
        key = resource_key(project, path)
        existing = sum(1 for i in self._versions_under(key) if i["Key"] == key)
        files: int | None = None
        if existing == 0:
            files = sum(
                1
                for i in self._versions_under(f"{RESOURCES_PREFIX}{project}/")
                if i.get("IsLatest")
            )
        check_room(project, path, versions=existing, files=files)
        digest = hashlib.sha256(data).hexdigest()
        put = self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/octet-stream",
            Metadata={"sha256": digest},
        )
        version = put.get("VersionId")
        if not version or version == "null":
            raise ResourceUnavailable(
                f"the bucket {self.bucket} keeps no versions: resource files need "
                "VersioningConfiguration: Enabled (template.yaml sets it)"
            )
        head = self._s3.head_object(Bucket=self.bucket, Key=key, VersionId=version)
        return ResourceVersion(path, str(version), len(data), digest, head["LastModified"])

    def delete(self, project: str, path: str) -> None:
        key = resource_key(project, path)
        doomed: list[dict[str, str]] = []
        for page in self._s3.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=key
        ):
            doomed.extend(
                {"Key": key, "VersionId": str(item["VersionId"])}
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                if item["Key"] == key
            )
        if not doomed:
            raise NotFound(f"resource {path!r} not found in project {project!r}")
        for start in range(0, len(doomed), 1000):
            answer = self._s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ResourceUnavailable(
                    f"resource {path!r}: {len(answer['Errors'])} versions could not be deleted "
                    f"({first.get('Code')}); delete it again"
                )

    # ------------------------------------------------------------ pins
    def _record_pins(self, run_id: str, project: str, pins: Mapping[str, str]) -> dict[str, str]:
        record = {"run_id": run_id, "project": project, "pins": dict(sorted(pins.items()))}
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=pins_key(run_id),
                Body=json.dumps(record).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            found = self.pins(run_id)
            return dict(pins) if found is None else found
        return dict(pins)

    def pins(self, run_id: str) -> dict[str, str] | None:
        try:
            found = self._s3.get_object(Bucket=self.bucket, Key=pins_key(run_id))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        record = json.loads(found["Body"].read())
        if record.get("run_id") != run_id:
            raise ResourceUnavailable(f"the resource pins of run {run_id!r} are not its own")
        return {str(k): str(v) for k, v in record["pins"].items()}
