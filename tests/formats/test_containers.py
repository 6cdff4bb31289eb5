"""File types, sniffing, discovery (globs, folders, URLs, saved datasets) and batching."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import zstandard

from winnow import schema
from winnow.errors import InputError
from winnow.formats import InputSpec, open_input

from ._helpers import ALPACA, ingest, rows, write_jsonl


def _check_alpaca(table: pa.Table, source: str) -> None:
    assert table.schema == schema.SCHEMA
    got = rows(table)
    assert [r["source_index"] for r in got] == [0, 1, 2]
    assert {r["source"] for r in got} == {source}
    assert got[0]["messages"] == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert got[0]["id"] == schema.row_id(source, 0, got[0]["messages"])
    assert json.loads(got[0]["meta"]) == {"input": "2 and 3"}


def test_jsonl_blank_lines_skipped_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [json.dumps(r) for r in ALPACA]
    path.write_bytes(("\r\n".join([lines[0], "", "  ", lines[1], lines[2]]) + "\r\n").encode())
    _check_alpaca(ingest(path), str(path))


def test_json_array_named_jsonl_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "array.jsonl"
    path.write_text(json.dumps(ALPACA, indent=4))
    src = open_input(InputSpec(path=str(path)))
    _check_alpaca(src.to_table(), str(path))
    assert src.describe()["files"][0]["file_type"] == "json"


def test_jsonl_named_json_is_sniffed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "lines.json", ALPACA)
    src = open_input(InputSpec(path=str(path)))
    _check_alpaca(src.to_table(), str(path))
    assert src.describe()["files"][0]["file_type"] == "jsonl"


def test_json_column_oriented(tmp_path: Path) -> None:
    path = tmp_path / "cols.json"
    path.write_text(json.dumps({k: [r[k] for r in ALPACA] for k in ALPACA[0]}))
    _check_alpaca(ingest(path), str(path))


def test_json_object_with_records_under_a_key(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 2, "data": ALPACA}, indent=2))
    table = ingest(path)
    got = rows(table)
    assert len(got) == 3
    assert json.loads(got[1]["meta"]) == {"input": "", "version": 2}  # header fields kept per row


def test_single_pretty_printed_record(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"conversations": [{"from": "human", "value": "hi"}]}, indent=2))
    assert [m["role"] for m in rows(ingest(path))[0]["messages"]] == ["user"]


def test_csv_and_tsv(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(ALPACA)
    path = tmp_path / "a.csv"
    pacsv.write_csv(table, path)
    _check_alpaca(ingest(path), str(path))
    tsv = tmp_path / "a.tsv"
    tsv.write_text(
        "instruction\tinput\toutput\n" + "".join(f"{r['instruction']}\t{r['input']}\t{r['output']}\n" for r in ALPACA)
    )
    _check_alpaca(ingest(tsv), str(tsv))


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ALPACA), path)
    src = open_input(InputSpec(path=str(path)))
    _check_alpaca(src.to_table(), str(path))
    assert src.describe()["files"][0]["file_type"] == "parquet"


@pytest.mark.parametrize("kind", ["file", "stream", "feather"])
def test_arrow(tmp_path: Path, kind: str) -> None:
    table = pa.Table.from_pylist(ALPACA)
    path = tmp_path / "a.data"  # no telling extension: content decides
    if kind == "file":
        with pa.ipc.new_file(path, table.schema) as w:
            w.write_table(table)
    elif kind == "stream":
        with pa.ipc.new_stream(path, table.schema) as w:
            w.write_table(table)
    else:
        feather.write_feather(table, path)  # v2: an Arrow IPC file
    _check_alpaca(ingest(path), str(path))


def test_gzip_and_zstd(tmp_path: Path) -> None:
    data = "".join(json.dumps(r) + "\n" for r in ALPACA).encode()
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    _check_alpaca(ingest(gz), str(gz))
    zst = tmp_path / "a.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(data))
    src = open_input(InputSpec(path=str(zst)))
    _check_alpaca(src.to_table(), str(zst))
    assert src.describe()["files"][0]["compression"] == "zstd"
    csv_gz = tmp_path / "a.csv.gz"
    csv_gz.write_bytes(
        gzip.compress(b"instruction,input,output\nAdd the numbers.,2 and 3,5\nSay hi.,,hi\nName a color.,,Blue.\n")
    )
    _check_alpaca(ingest(csv_gz), str(csv_gz))


def test_glob_and_folder_sorted(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    write_jsonl(folder / "b.jsonl", ALPACA[1:])
    write_jsonl(folder / "a.jsonl", ALPACA[:1])
    write_jsonl(folder / "sub" / "c.jsonl", ALPACA[:1])
    (folder / "README.md").write_text("not data")
    got = rows(ingest(folder))
    assert [(Path(r["source"]).name, r["source_index"]) for r in got] == [
        ("a.jsonl", 0),
        ("b.jsonl", 0),
        ("b.jsonl", 1),
        ("c.jsonl", 0),
    ]
    globbed = rows(ingest(str(folder / "*.jsonl")))
    assert [r["source"] for r in globbed] == [
        str(folder / "a.jsonl"),
        str(folder / "b.jsonl"),
        str(folder / "b.jsonl"),
    ]
    named = rows(ingest(str(folder / "*.jsonl"), name="mine"))
    assert [r["source"] for r in named] == ["mine/a.jsonl", "mine/b.jsonl", "mine/b.jsonl"]


def test_memory_url() -> None:
    with fsspec.open("memory://winnow-test/x.jsonl", "wb") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ALPACA).encode())
    _check_alpaca(ingest("memory://winnow-test/x.jsonl"), "memory://winnow-test/x.jsonl")
    assert rows(ingest("memory://winnow-test/*.jsonl"))[0]["source"] == "memory://winnow-test/x.jsonl"


def test_save_to_disk_dataset_and_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ALPACA)
    ds.save_to_disk(str(tmp_path / "ds"))
    _check_alpaca(ingest(tmp_path / "ds"), str(tmp_path / "ds"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    src = open_input(InputSpec(path=str(tmp_path / "dd"), split="test"))
    assert src.to_table().num_rows == 1
    assert len(src.fingerprint()) == 64


def test_hf_dataset_from_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    (tmp_path / "hub").mkdir()
    write_jsonl(tmp_path / "hub" / "train.jsonl", ALPACA)
    src = open_input(InputSpec(hf_dataset=str(tmp_path / "hub")))
    table = src.to_table()
    assert table.num_rows == 3
    assert table.column("source")[0].as_py() == f"hf://{tmp_path / 'hub'}/train"
    assert src.describe()["kind"] == "hf_dataset"


def test_batch_size_invariance(tmp_path: Path) -> None:
    records = [*ALPACA, {"instruction": "x"}, "not an object", *ALPACA]
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    src = open_input(InputSpec(path=str(path), on_error="skip"))
    by_size = {}
    for size in (1, 2, 1000):
        batches = list(src.batches(size))
        assert all(b.rows.num_rows <= size for b in batches)
        by_size[size] = (
            pa.concat_tables([b.rows for b in batches]),
            pa.concat_tables([b.rejected for b in batches]),
        )
    assert by_size[1][0].equals(by_size[1000][0]) and by_size[2][0].equals(by_size[1000][0])
    assert by_size[1][1].equals(by_size[1000][1])
    assert by_size[1000][0].num_rows == 6 and by_size[1000][1].num_rows == 2
    assert by_size[1000][0].column("source_index").to_pylist() == [0, 1, 2, 5, 6, 7]


def test_describe_and_fingerprint(tmp_path: Path, alpaca_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    import hashlib

    src = open_input(InputSpec(path=str(alpaca_file)))
    with caplog.at_level(logging.INFO, logger="winnow.formats.source"):
        src.to_table()
    assert "alpaca" in caplog.text and "alpaca.jsonl" in caplog.text
    info = src.describe()
    json.dumps(info)
    f = info["files"][0]
    digest = hashlib.sha256(alpaca_file.read_bytes()).hexdigest()
    assert (f["sha256"], f["bytes"], f["format"], f["rows_read"], f["rows_rejected"]) == (
        digest,
        alpaca_file.stat().st_size,
        "alpaca",
        3,
        0,
    )
    assert src.fingerprint() == digest
    assert "instruction" in f["format_reason"]


def test_fingerprint_of_several_files_is_their_bytes_in_order(tmp_path: Path) -> None:
    import hashlib

    a = write_jsonl(tmp_path / "a.jsonl", ALPACA[:1])
    b = write_jsonl(tmp_path / "b.jsonl", ALPACA[1:])
    src = open_input(InputSpec(path=str(tmp_path / "*.jsonl")))
    assert src.fingerprint() == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()


def test_file_type_override(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("instruction|output\nSay hi.|hi\n")  # no comma or tab: sniffing gives up
    with pytest.raises(InputError, match="cannot tell the file type"):
        open_input(InputSpec(path=str(path)))
    src = open_input(InputSpec(path=str(path), file_type="csv"))
    assert src.describe()["files"][0]["file_type"] == "csv"
    # csv's default comma delimiter sees one column named "instruction|output": not detectable
    with pytest.raises(InputError, match="cannot detect the record format"):
        src.to_table()


def test_lone_surrogates_and_nul_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"instruction": "bad \\ud800 here\\u0000", "output": "ok \\ud83d\\ude00"}\n')
    got = rows(ingest(path))[0]
    assert got["messages"][0]["content"] == "bad \ufffd here\x00"
    assert got["messages"][1]["content"] == "ok \U0001f600"
    assert "U+FFFD" in json.loads(got["meta"])["_ingest_note"]
