"""Resource files of a ``batch`` task on AWS, where no runner of ours runs.

The user's image is arbitrary: it may have no AWS CLI, no Python, no credentials of ours. So
the job is an AWS Batch multi-container job (``ecsProperties``), one ECS task of two
containers sharing a task volume, ``VOLUME`` mounted at ``WORK_DIR`` in both:

- ``fetch`` (``FETCH_CONTAINER``): the AWS CLI image the kubernetes reporter uses, run as the
  job's role (the project's, which reads ``resources/<its project>/`` and nothing else),
  fetches each file at the version the run pinned (``aws s3api get-object --version-id``)
  into ``WORK_DIR`` and exits; not essential: its end does not stop the task;
- ``task`` (``TASK_CONTAINER``): the user's image, started only after ``fetch`` exited 0
  (``dependsOn`` ``SUCCESS``), its command wrapped in ``/bin/sh`` to ``cd WORK_DIR`` first
  (a Batch container cannot be given a working directory). A file that cannot be fetched
  ends ``fetch`` non-zero: the task never starts and the job fails.

The job definition is registered once per (image, role, secrets), as for a task without
files; the files and their versions go in each job's ``ecsPropertiesOverride`` (the fetch
container's environment), so a run keeps the versions it pinned. What goes there is paths
and S3 version ids only, checked here (paths as ``check_path``, versions as S3's, every file
under ``resources/<project>/`` of one bucket) and bounded by ``MAX_LIST_CHARS``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stratoflow.adapters.aws.batch_secrets import SHELL, WRAPPER_NAME
from stratoflow.adapters.aws.resources import fetch_list
from stratoflow.errors import InvalidInput

# the image of the fetch container (STRATOFLOW_BATCH_FETCH_IMAGE replaces it): the one the
# kubernetes reporter runs (eks.DEFAULT_REPORTER_IMAGE), an AWS CLI with /bin/sh
DEFAULT_FETCH_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.15.0"
FETCH_CONTAINER = "stratoflow-fetch"
TASK_CONTAINER = "task"
VOLUME = "stratoflow-work"
WORK_DIR = "/stratoflow/work"  # as a kubernetes task's (eks.RESOURCES_DIR)
# the "VERSION PATH" lines in the fetch container's environment: container overrides are
# size-limited (ECS: 8 KiB for all of them), and the task's own command and env go there too
MAX_LIST_CHARS = 4096

# POSIX sh in the AWS CLI image: each pinned version into its path; the first that cannot be
# fetched stops it, saying which (the job's log), and the task container never starts
FETCH_SCRIPT = """set -u
dir=$STRATOFLOW_RESOURCES_DIR
mkdir -p "$dir" || exit 1
while read -r version path; do
    [ -n "$path" ] || continue
    case $path in */*) mkdir -p "$dir/${path%/*}" || exit 1 ;; esac
    if ! aws s3api get-object --bucket "$STRATOFLOW_RESOURCES_BUCKET" \\
        --key "$STRATOFLOW_RESOURCES_PREFIX$path" --version-id "$version" "$dir/$path" >/dev/null
    then
        echo "stratoflow-fetch: resource '$path' version $version (pinned when the run was created) could not be fetched" >&2
        exit 1
    fi
done <<RESOURCES
$STRATOFLOW_RESOURCES
RESOURCES
chmod -R a+rX "$dir" && chmod a+w "$dir"
"""


def refusal(argv: Sequence[str], files: Sequence[Mapping[str, str]], project: str) -> str | None:
    """Why a batch task's files cannot be placed (None: they can)."""
    if not argv:
        return (
            "resources: a batch task with resource files needs a command (it runs in "
            f"{WORK_DIR}, where they are placed; the image's own CMD cannot be moved there)"
        )
    try:
        lines = fetch_list(files, project)[0]
    except InvalidInput as exc:
        return f"resources: {exc}"
    if len(lines) > MAX_LIST_CHARS:
        return (
            f"resources: {len(files)} files whose paths and versions take {len(lines)} "
            f"characters, more than the {MAX_LIST_CHARS} a batch job's fetch container can be "
            "handed: list fewer files or shorter paths, or use a shell or python task "
            "(runner: batch)"
        )
    return None


def in_work_dir(command: Sequence[str]) -> list[str]:
    """The task container's command, run in ``WORK_DIR``: the secrets wrapper
    (``batch_secrets.launch``) with ``cd`` first, any other argv through a small one."""
    step = f"cd {WORK_DIR} || exit 1\n"
    wrapped = len(command) >= 4 and command[0] == SHELL and command[1] == "-c"
    if wrapped and command[3] == WRAPPER_NAME:
        return [SHELL, "-c", step + command[2], *command[3:]]
    return [SHELL, "-c", step + 'exec "$@"\n', WRAPPER_NAME, *command]


def ecs_properties(
    base: Mapping[str, Any], image: str, role_arn: str | None, fetch_image: str
) -> dict[str, Any]:
    """The job definition's ``ecsProperties`` from the runner job definition's
    ``containerProperties`` (``base``: execution role, network, logging, Fargate platform,
    secrets already set): the fetch container and the user's ``image``, run as ``role_arn``."""
    mount = [{"sourceVolume": VOLUME, "containerPath": WORK_DIR, "readOnly": False}]
    shared = {k: base[k] for k in ("logConfiguration",) if k in base}
    fetch = {
        "name": FETCH_CONTAINER,
        "image": fetch_image,
        "essential": False,
        "command": [SHELL, "-c", FETCH_SCRIPT],
        "mountPoints": mount,
        **shared,
    }
    task: dict[str, Any] = {
        "name": TASK_CONTAINER,
        "image": image,
        "essential": True,
        "dependsOn": [{"containerName": FETCH_CONTAINER, "condition": "SUCCESS"}],
        "mountPoints": mount,
        **shared,
    }
    for key in ("resourceRequirements", "secrets", "environment"):
        if base.get(key):
            task[key] = base[key]
    properties: dict[str, Any] = {"containers": [fetch, task], "volumes": [{"name": VOLUME}]}
    if base.get("executionRoleArn"):
        properties["executionRoleArn"] = base["executionRoleArn"]
    if role_arn is not None:
        properties["taskRoleArn"] = role_arn
    if base.get("networkConfiguration"):
        properties["networkConfiguration"] = base["networkConfiguration"]
    platform = (base.get("fargatePlatformConfiguration") or {}).get("platformVersion")
    if platform:
        properties["platformVersion"] = platform
    return {"taskProperties": [properties]}


def override(
    container_overrides: Mapping[str, Any],
    files: Sequence[Mapping[str, str]],
    project: str,
) -> dict[str, Any]:
    """The job's ``ecsPropertiesOverride``: the fetch container's list of pinned versions, the
    task container's command (run in ``WORK_DIR``), environment and resources from
    ``container_overrides`` (as a single-container job would have them)."""
    lines, bucket = fetch_list(files, project)
    fetch_env = [
        {"Name": "STRATOFLOW_RESOURCES", "Value": lines},
        {"Name": "STRATOFLOW_RESOURCES_BUCKET", "Value": bucket},
        {"Name": "STRATOFLOW_RESOURCES_PREFIX", "Value": f"resources/{project}/"},
        {"Name": "STRATOFLOW_RESOURCES_DIR", "Value": WORK_DIR},
    ]
    task = {
        "Name": TASK_CONTAINER,
        "Command": in_work_dir(container_overrides["Command"]),
        "Environment": [
            *container_overrides.get("Environment", []),
            {"Name": "STRATOFLOW_RESOURCES_DIR", "Value": WORK_DIR},
        ],
        "ResourceRequirements": container_overrides["ResourceRequirements"],
    }
    return {
        "TaskProperties": [
            {"Containers": [{"Name": FETCH_CONTAINER, "Environment": fetch_env}, task]}
        ]
    }
