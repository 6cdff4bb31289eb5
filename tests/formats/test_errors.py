"""Bad input: one clear InputError naming the file and the line/row, or a rejected row."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow import schema
from winnow.errors import ConfigError, InputError
from winnow.formats import InputSpec, open_input

from ._helpers import ALPACA, ingest, write_jsonl


def raises(path: Path | str, match: str, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        ingest(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert re.search(match, message), message
    assert "\n" not in message
    return message


def rejected(path: Path, **kwargs: Any) -> pa.Table:
    src = open_input(InputSpec(path=str(path), on_error="skip", **kwargs))
    tables = [b.rejected for b in src.batches(100)]
    return pa.concat_tables(tables)


def lines_file(tmp_path: Path, *lines: str, name: str = "x.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps(ALPACA[0])


def test_malformed_json_line(tmp_path: Path) -> None:
    path = lines_file(tmp_path, GOOD, '{"instruction": "a", "output": }', "{broken", GOOD)
    msg = raises(path, r", line 2: invalid JSON \(Expecting value at column 32\); expected one JSON object per line")
    assert msg.startswith(f"{path}, line 2:")
    rej = rejected(path)
    assert rej.schema == schema.REJECTED_SCHEMA
    got = rej.to_pylist()
    assert [r["source_index"] for r in got] == [1, 2]
    assert got[0]["reason"] == msg
    assert got[0]["stage"] == "ingest" and got[0]["messages"] == []
    assert json.loads(got[0]["meta"]) == {"raw": '{"instruction": "a", "output": }'}
    assert got[0]["id"] != got[1]["id"]
    assert got[0]["id"] == schema.row_id(str(path), 1, [{"role": "raw", "content": '{"instruction": "a", "output": }'}])
    kept = open_input(InputSpec(path=str(path), on_error="skip")).to_table()
    assert kept.column("source_index").to_pylist() == [0, 3]  # indexes never shift


def test_malformed_first_line_still_reads_as_jsonl(tmp_path: Path) -> None:
    path = lines_file(tmp_path, '{"instruction": ', GOOD, name="x.json")
    raises(path, r"line 1: invalid JSON")
    assert rejected(path).num_rows == 1


def test_record_not_an_object(tmp_path: Path) -> None:
    path = lines_file(tmp_path, GOOD, "[1, 2]")
    raises(path, r"line 2: the record is an array, not an object; expected one JSON object per line")
    array = tmp_path / "a.json"
    array.write_text(json.dumps([ALPACA[0], "text"]))
    raises(array, r"record 1: the record is a string, not an object")


def test_missing_required_field(tmp_path: Path) -> None:
    path = lines_file(tmp_path, GOOD, json.dumps({"instruction": "only"}))
    raises(path, r"line 2: no 'output' field \(fields: 'instruction'\); expected 'output' \(alpaca\)")
    assert rejected(path).num_rows == 1


def test_empty_conversation(tmp_path: Path) -> None:
    path = lines_file(
        tmp_path,
        json.dumps({"conversations": [{"from": "human", "value": "hi"}]}),
        json.dumps({"conversations": []}),
    )
    raises(path, r"line 2: empty conversation; expected at least one message in 'conversations' \(sharegpt\)")


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"messages": [{"role": "user", "content": 5}]}, r"line 2: message 0 content is a int"),
        (
            {"messages": [{"role": "wizard", "content": "x"}]},
            r"line 2: message 0 has role 'wizard'; expected one of",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            r"part 0 has type 'image_url'",
        ),
        ({"messages": "hello"}, r"line 2: 'messages' is a string; expected 'messages' to be a list"),
        ({"messages": [{"role": "user", "content": "x"}], "extra": 1, "instruction": 5}, None),
    ],
)
def test_wrong_types_openai(tmp_path: Path, record: dict[str, Any], match: str | None) -> None:
    path = lines_file(tmp_path, json.dumps({"messages": [{"role": "user", "content": "ok"}]}), json.dumps(record))
    if match is None:
        assert ingest(path).num_rows == 2
    else:
        raises(path, match)
        assert rejected(path).num_rows == 1


def test_wrong_types_sharegpt_and_alpaca(tmp_path: Path) -> None:
    path = lines_file(
        tmp_path,
        json.dumps({"conversations": [{"from": "human", "value": "x"}]}),
        json.dumps({"conversations": 7}),
    )
    raises(path, r"line 2: 'conversations' is a int; expected 'conversations' to be a list of messages")
    path = lines_file(tmp_path, json.dumps({"conversations": [{"from": "alien", "value": "x"}]}))
    raises(path, r"line 1: message 0 has 'from' 'alien'")
    path = lines_file(tmp_path, json.dumps({"instruction": "i", "output": 3}))
    raises(path, r"line 1: 'output' is a int; expected 'output' to be a string \(alpaca\)")


def test_file_not_found(tmp_path: Path) -> None:
    raises(tmp_path / "nope.jsonl", r"file not found")


def test_glob_or_folder_matching_nothing(tmp_path: Path) -> None:
    raises(str(tmp_path / "*.jsonl"), r"the glob matched no files")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("hi")
    raises(tmp_path / "empty", r"the folder holds no supported files")


@pytest.mark.parametrize(("name", "text"), [("e.jsonl", ""), ("b.jsonl", "\n  \n\n"), ("a.json", "[]")])
def test_empty_input(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    raises(path, r"empty input \(no records\)", on_error="skip")


def test_undetectable_format(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl", [{"foo": 1, "bar": 2}])
    msg = raises(path, r"cannot detect the record format from the fields 'foo', 'bar'", on_error="skip")
    assert "alpaca" in msg and "sharegpt" in msg and "columns" in msg


def test_not_gzip(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl.gz", ALPACA)
    raises(path, r"not a gzip file", on_error="skip")


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(("".join(json.dumps(r) + "\n" for r in ALPACA * 50)).encode())
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    raises(path, r"corrupt gzip data")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD.encode() + b'\n{"instruction": "caf\xe9", "output": "x"}\n')
    raises(path, r"line 2: invalid UTF-8 \(invalid continuation byte at byte \d+\); expected UTF-8 text")
    got = rejected(path).to_pylist()
    assert "\\xe9" in json.loads(got[0]["meta"])["raw"]
    whole = tmp_path / "bad.json"
    whole.write_bytes(b'[\n{"instruction": "a", "output": "b"},\n{"instruction": "\xff", "output": "b"}\n]')
    raises(whole, r"line 3: invalid UTF-8")


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("instruction,input,output\na,,b\nonly,two\nc,,d\n")
    raises(path, r", row 1: found 2 fields \(line 3\); expected 3 like the header row")
    assert rejected(path).num_rows == 1
    assert ingest(path, on_error="skip").num_rows == 2


def test_json_document_decode_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "a" "output": "b"}\n]')
    raises(path, r", line 3: invalid JSON \(Expecting ',' delimiter at column 23\)", on_error="skip")


def test_parquet_row_error_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"instruction": "a", "output": "b"}, {"instruction": "a", "output": None}]),
        path,
    )
    raises(path, r", row 1: 'output' is null")


def test_columns_missing_field_lists_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"q": "x", "a": "y"}, {"q": "x"}])
    raises(
        path,
        r"line 2: no 'a' field \(fields: 'q'\); expected 'a' as response",
        columns={"instruction": "q", "response": "a"},
    )


def test_bad_spec_is_config_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    with pytest.raises(ConfigError, match="not a record format"):
        open_input(InputSpec(path=str(path), format="alpacca"))
    with pytest.raises(ConfigError, match="on_error"):
        open_input(InputSpec(path=str(path), on_error="ignore"))
    with pytest.raises(ConfigError, match="exactly one"):
        open_input(InputSpec())
    with pytest.raises(ConfigError, match="columns"):
        open_input(InputSpec(path=str(path), format="columns"))
