"""``stratoflow resources upload LOCAL_FILE [PATH] | list [PREFIX] | download PATH [-o FILE]
[--version V] | versions PATH | delete PATH``: a project's resource files, through the API.

A path is checked before anything is sent (exit 2 naming the problem), and so is the size of
an upload. ``download`` writes the bytes to ``-o FILE`` (created 0600, never over an existing
file unless ``--force``) or to stdout. Exit 3 when the API cannot be reached, as every client
command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from stratoflow.cli_common import (
    client,
    invalid,
    project_output_api,
    show,
)
from stratoflow.errors import InvalidInput
from stratoflow.resources import MAX_RESOURCE_BYTES, check_path, check_prefix


def _checked(path: str, field: str = "path", prefix: bool = False) -> str:
    try:
        return check_prefix(path, field) if prefix else check_path(path, field)
    except InvalidInput as exc:
        invalid(str(exc))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


@click.group("resources")
def resources() -> None:
    """A project's resource files: tasks list them in `resources: [path, ...]`."""


@resources.command("upload")
@click.argument("local_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("path", required=False)
@project_output_api
def resources_upload(
    local_file: Path, path: str | None, project: str, output: str, api: str
) -> None:
    """Upload LOCAL_FILE as a new version of PATH (default: the file's name)."""
    target = _checked(path if path is not None else local_file.name)
    try:
        with local_file.open("rb") as fh:
            data = fh.read(MAX_RESOURCE_BYTES + 1)
    except OSError as exc:
        invalid(f"local_file: cannot read {local_file}: {exc.strerror}")
    if len(data) > MAX_RESOURCE_BYTES:
        invalid(
            f"local_file: {local_file} is larger than {MAX_RESOURCE_BYTES:,} bytes "
            f"({MAX_RESOURCE_BYTES >> 20} MiB), the most a resource file may be"
        )
    body = client(api).call(
        "PUT",
        "/resources/file",
        params={"project": project, "path": target},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    show(
        body,
        output,
        f"uploaded: {project}/{target} version {body['version']} ({_size(body['size'])})",
    )


@resources.command("list")
@click.argument("prefix", required=False, default="")
@project_output_api
def resources_list(prefix: str, project: str, output: str, api: str) -> None:
    """The project's files (newest version of each), optionally under PREFIX."""
    _checked(prefix, "prefix", prefix=True)
    body = client(api).call("GET", "/resources", params={"project": project, "prefix": prefix})
    lines = [
        f"{r['path']}\tv{r['version']}\t{_size(r['size'])}\t{r['created_at']}"
        for r in body["resources"]
    ]
    show(body, output, "\n".join(lines))


@resources.command("versions")
@click.argument("path")
@project_output_api
def resources_versions(path: str, project: str, output: str, api: str) -> None:
    """Every version of PATH, newest first."""
    _checked(path)
    body = client(api).call("GET", "/resources/versions", params={"project": project, "path": path})
    lines = [
        f"{v['version']}\t{_size(v['size'])}\t{v['created_at']}\tsha256:{v['sha256']}"
        for v in body["versions"]
    ]
    show(body, output, "\n".join(lines))


@resources.command("download")
@click.argument("path")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (default: stdout)")  # fmt: skip
@click.option("--version", "version", default=None, help="A version (default: the newest)")
@click.option("--force", is_flag=True, help="Replace the -o file if it exists")
@project_output_api
def resources_download(
    path: str,
    out: Path | None,
    version: str | None,
    force: bool,
    project: str,
    output: str,
    api: str,
) -> None:
    """Download PATH (the newest version, or --version)."""
    _checked(path)
    params = {"project": project, "path": path}
    if version is not None:
        params["version"] = version
    response = client(api).response(
        "GET", "/resources/file", params=params, headers={"Accept": "application/octet-stream"}
    )
    data = response.content
    got = response.headers.get("X-Resource-Version", "")
    if out is None:
        if output == "json":
            invalid("--output json needs -o FILE (the bytes cannot go to stdout with it)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except FileExistsError:
        invalid(f"-o: {out} exists; pass --force to replace it")
    except OSError as exc:
        invalid(f"-o: cannot write {out}: {exc.strerror}")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    body = {"project": project, "path": path, "version": got, "size": len(data), "file": str(out)}
    show(body, output, f"downloaded: {project}/{path} version {got} to {out} ({_size(len(data))})")


@resources.command("delete")
@click.argument("path")
@project_output_api
def resources_delete(path: str, project: str, output: str, api: str) -> None:
    """Delete PATH and all its versions."""
    _checked(path)
    body = client(api).call("DELETE", "/resources/file", params={"project": project, "path": path})
    show(body, output, f"deleted: {project}/{path}")
