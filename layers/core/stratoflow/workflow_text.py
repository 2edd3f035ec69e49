"""A workflow file's text, read within the document's size limit and refused when it is not
UTF-8, without the model: ``stratoflow apply`` sends the text to the server, which validates
it, so reading it here does not import pydantic and the model (docs/benchmarks.md, "the CLI's
start-up"). The model's loader uses the same limit and checks (``stratoflow.model``)."""

from __future__ import annotations

from pathlib import Path

from stratoflow.errors import InvalidInput, Problem

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
"""A workflow file's size in UTF-8 bytes (a 10,000-task file is about 700 KB)."""


def too_big(source: str | None) -> InvalidInput:
    return InvalidInput(
        [
            Problem(
                "", f"the document is over {MAX_DOCUMENT_BYTES} bytes (limit max_document_bytes)"
            )
        ],
        source=source,
    )


def decode_source(data: bytes, *, source: str | None = None) -> str:
    """UTF-8 bytes of a workflow file as text; refuses oversized or non-UTF-8 input, naming
    the byte offset (and line) of the first bad byte."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise too_big(source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise InvalidInput(
            [Problem("", f"not UTF-8: byte 0x{bad} at byte offset {exc.start}", line)],
            source=source,
        ) from None


def read_workflow_text(path: str | Path) -> str:
    """A workflow file's text: at most ``MAX_DOCUMENT_BYTES`` are read (a FIFO or
    ``/dev/zero`` does not fill memory), and bytes that are not UTF-8 are refused with their
    offset."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    return decode_source(data, source=str(file))
