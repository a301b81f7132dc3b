"""The output of a data-set run: one JSON record per finished input.

:class:`ResultsFile` appends each record as one line, written in one system
call and flushed at once, so killing the process loses no finished result
(at worst the line being written is cut short). Opening an existing file
**resumes** it: the records already there are read (:attr:`previous`, by
id), so the caller can skip those inputs, and a last line cut short by a
kill is dropped (the file is cut back to its last complete line before
anything is appended). A line that is not a record anywhere else, or an id
that appears twice, is an error: the file is not the output of one run, and
nothing is appended to it.

:func:`record_of` is the line of one outcome: :meth:`RunOutcome.record`
with the input's ``index`` (its seed is ``run_seed(seed, index)``) after
its ``id``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from ppl.errors import ArgumentError

from .outcome import RunOutcome

__all__ = ["RecordStream", "ResultsFile", "read_records", "record_of"]


def record_of(outcome: RunOutcome, top: int = 5) -> dict:
    """The record of ``outcome``: ``id``, ``index``, then :meth:`RunOutcome.record` ``(top)``."""
    record = outcome.record(top)
    return {"id": record.pop("id"), "index": outcome.index, **record}


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def _record(text: bytes, where: str) -> dict:
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"{where}: not a JSON record ({exc}); not appending to a file "
                            "that is not the output of a data-set run") from None
    if not isinstance(record, dict) or "id" not in record:
        raise ArgumentError(f"{where}: not a record (a JSON object with an \"id\"); not appending to a "
                            "file that is not the output of a data-set run")
    id_ = record["id"]
    if isinstance(id_, bool) or not isinstance(id_, (str, int)):
        raise ArgumentError(f"{where}: a record's id is a string or an integer, got {json.dumps(id_)}")
    return record


def read_records(path: str | Path) -> tuple[dict[Any, dict], int]:
    """The records of the file ``path`` by id, and the length in bytes of
    its complete part: everything but a last line cut short (one without
    its newline that is not a whole record). A file that does not exist
    has no records."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, 0
    except OSError as exc:
        raise ArgumentError(f"{path}: cannot be read ({exc})") from None
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].split(b"\n")[:-1]
    tail = data[complete:]
    if tail.strip():
        try:
            _record(tail, "")
            lines, complete = lines + [tail], len(data)  # whole, only its newline is missing
        except ArgumentError:
            pass  # cut short by a kill: dropped
    records: dict[Any, dict] = {}
    first: dict[Any, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = _record(text, f"{path}:{number}")
        if record["id"] in records:
            raise ArgumentError(f"{path}:{number}: id {json.dumps(record['id'])} is already on line "
                                f"{first[record['id']]}; not appending to a file with repeated ids")
        records[record["id"]], first[record["id"]] = record, number
    return records, complete


class ResultsFile:
    """An append-only JSONL file of records; opening it resumes it.

    ``previous`` holds the records already in the file, by id. Use as a
    context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.previous, complete = read_records(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            if os.fstat(self._fd).st_size > complete:  # a last line cut short by a kill
                os.ftruncate(self._fd, complete)
            if complete and os.pread(self._fd, 1, complete - 1) != b"\n":  # a whole last line
                os.write(self._fd, b"\n")
        except OSError as exc:
            raise ArgumentError(f"{self.path}: cannot be written ({exc})") from None

    def append(self, record: dict) -> None:
        """Write ``record`` as one line, at once (one ``write`` call)."""
        if record["id"] in self.previous:
            raise ArgumentError(f"{self.path}: id {record['id']!r} is already in the file")
        data = _line(record)
        written = os.write(self._fd, data)
        while written < len(data):  # a regular file takes it whole; a pipe may not
            written += os.write(self._fd, data[written:])
        self.previous[record["id"]] = record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ResultsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecordStream:
    """Records as JSON lines on a text stream (stdout): nothing to resume."""

    def __init__(self, stream: TextIO, write=None):
        self.stream, self.previous = stream, {}
        self._write = write

    def append(self, record: dict) -> None:
        line = _line(record).decode("utf-8")
        if self._write is not None:
            self._write(line.rstrip("\n"))
        else:
            self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()

    def __enter__(self) -> "RecordStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
