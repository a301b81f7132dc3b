"""The JSONL output of data-set runs (``ppl.runtime.many.output``): one line
per record, written at once; opening a file resumes it; a last line cut
short by a kill is dropped; anything else that is not a record is refused."""

from __future__ import annotations

import json
import sys

import pytest
from ppl.runtime.many.output import RecordStream, ResultsFile, read_records, record_of
from support.toy_programs import toy_lm

import ppl


def lines(path):
    return path.read_text().splitlines()


def test_records_are_appended_one_line_each(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    with ResultsFile(path) as out:
        assert out.previous == {}
        out.append({"id": "a", "status": "ok", "text": "two\nlines"})
        assert lines(path) == ['{"id": "a", "status": "ok", "text": "two\\nlines"}']  # on disk at once
        out.append({"id": 2, "status": "error", "log_Z": None})
    assert [json.loads(x)["id"] for x in lines(path)] == ["a", 2]


def test_opening_again_resumes(tmp_path):
    path = tmp_path / "out.jsonl"
    with ResultsFile(path) as out:
        out.append({"id": "a", "v": 1})
        out.append({"id": 7, "v": 2})
    with ResultsFile(path) as out:
        assert out.previous == {"a": {"id": "a", "v": 1}, 7: {"id": 7, "v": 2}}
        out.append({"id": "b", "v": 3})
        with pytest.raises(ppl.PPLError, match="id 'a' is already in the file"):
            out.append({"id": "a", "v": 4})
    assert len(lines(path)) == 3


def test_a_last_line_cut_short_is_dropped(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "top": [{"va')
    assert set(read_records(path)[0]) == {1, 2}
    with ResultsFile(path) as out:
        assert set(out.previous) == {1, 2}
        assert path.read_text() == '{"id": 1}\n{"id": 2}\n'  # cut back before appending
        out.append({"id": 3})
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n{"id": 3}\n'


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}')
    with ResultsFile(path) as out:
        assert set(out.previous) == {1, 2}
        out.append({"id": 3})
    assert lines(path) == ['{"id": 1}', '{"id": 2}', '{"id": 3}']


@pytest.mark.parametrize("text,message", [
    ('{"id": 1}\nnot json\n{"id": 2}\n', r"out.jsonl:2: not a JSON record"),
    ('{"id": 1}\n[1, 2]\n', r"out.jsonl:2: not a record \(a JSON object with an \"id\"\)"),
    ('{"status": "ok"}\n', r"out.jsonl:1: not a record"),
    ('{"id": 1.5}\n', r"out.jsonl:1: a record's id is a string or an integer, got 1.5"),
    ('{"id": 1}\n{"id": 1}\n', r"out.jsonl:2: id 1 is already on line 1"),
])
def test_a_file_that_is_not_one_runs_records_is_refused(tmp_path, text, message):
    path = tmp_path / "out.jsonl"
    path.write_text(text)
    with pytest.raises(ppl.PPLError, match=message):
        ResultsFile(path)
    assert path.read_text() == text  # untouched


def test_record_of_an_outcome(tmp_path):
    from support.toy_programs import Scored

    lm = toy_lm()
    outcomes = sorted(ppl.map(Scored, [{}, {}], lm=lm, n_particles=4, expand=2, seed=1, ids=["x", "y"]),
                      key=lambda o: o.index)
    record = record_of(outcomes[1], top=2)
    assert list(record)[:3] == ["id", "index", "args"] and record["id"] == "y" and record["index"] == 1
    assert record == {"id": "y", "index": 1, **{k: v for k, v in outcomes[1].record(2).items() if k != "id"}}
    assert len(record["top"]) <= 2
    path = tmp_path / "out.jsonl"
    with ResultsFile(path) as out:
        out.append(record)
    assert json.loads(path.read_text()) == record


def test_records_on_a_stream(capsys):
    with RecordStream(sys.stdout) as out:
        out.append({"id": 1, "v": "é"})
    assert capsys.readouterr().out == '{"id": 1, "v": "é"}\n'
