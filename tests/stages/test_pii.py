from __future__ import annotations

import time

import pyarrow.compute as pc
import pytest

from tests import engine_util
from tests.conftest import ROOT, SHARED_DATA, conversation, needs_shared, table
from winnow.errors import ConfigError
from winnow.formats import InputSpec, open_input
from winnow.stages import from_config
from winnow.stages.pii import KINDS, PiiFilter, entropy, find, iban_ok, luhn

PII = [
    ("email", "Write to dana.whitfield@example.com today.", "dana.whitfield@example.com"),
    ("phone", "Call +1 202-555-0142 now.", "+1 202-555-0142"),
    ("phone", "Call +44 20 7946 0958 now.", "+44 20 7946 0958"),
    ("phone", "Office: (415) 555-0187.", "(415) 555-0187"),
    ("phone", "电话:13812345678", "13812345678"),
    ("ip_address", "ssh to 192.0.2.45 please", "192.0.2.45"),
    ("ip_address", "server at 2001:db8::1 is down", "2001:db8::1"),
    ("credit_card", "card 4111 1111 1111 1111 expires soon", "4111 1111 1111 1111"),
    ("credit_card", "my visa is 4111111111111111", "4111111111111111"),
    ("iban", "IBAN GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
    ("secret", 'API_KEY = "sk-FAKE0000example0000notarealkey0000"', "sk-FAKE0000example0000notarealkey0000"),
    ("secret", "aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "token ghp_" + "a1B2" * 9, "ghp_" + "a1B2" * 9),
    ("secret", "slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
    ("secret", 'api_key = "9fQ2xL7pRt3ZkW8vN1bY"', "9fQ2xL7pRt3ZkW8vN1bY"),
    ("secret", "-----BEGIN RSA PRIVATE KEY-----\nMIIab\n-----END RSA PRIVATE KEY-----", None),
]
NOT_PII = [
    "Python 3.10.2 and 3.9.18",
    "v1.2.3.4 was released; see version 1.2.3.4",
    "Issue date 2024-05-01, due 12/05/2023, at 10:30:00 or 7:45 pm",
    "ISBN 978-0-306-40615-7",
    "Invoice INV-2024-0518, order #123456789012, order 58213",
    "Price: $1,234.56 or 24.99 each",
    "2**64 = 18446744073709551616 and 4508 - 9345 + 2131 = -2706",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "timestamp 1714567890123",
    "ssh user@server; ssh -p 22 admin@10.0.0.5; git clone git@github.com:a/b.git",
    "icon@2x.png and std::vector<int> and a::b::c",
    "ping 127.0.0.1, 192.168.1.1, or Google DNS 8.8.8.8",
    "MAC 00:1A:2B:3C:4D:5E, ratio 1:2:3",
    'password = "mysecretpassword"; API_KEY = "YOUR_API_KEY_HERE"',
    "1234 5678 9012 3456 is not Luhn-valid",
    "risk-free rate, call me at 5pm",
]


@pytest.mark.parametrize("kind,text,value", PII)
def test_finds_each_kind(kind: str, text: str, value: str | None) -> None:
    matches = find(text, list(KINDS))
    assert [m.kind for m in matches] == [kind]
    if value is not None:
        assert text[matches[0].start : matches[0].end] == value


@pytest.mark.parametrize("text", NOT_PII)
def test_near_misses_are_not_pii(text: str) -> None:
    assert find(text, list(KINDS)) == []


def test_validators() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")
    assert entropy("aaaa") == 0 and entropy("abcd") == 2


def test_redact_is_the_default_keeps_rows_and_writes_kinds() -> None:
    t = table([("Mail a@example.com or call +1 202-555-0142.", "Done: a@example.com"), ("Hi", "Hello")])
    out = PiiFilter().process(t)
    assert out.rejected.num_rows == 0 and out.counts == {}
    messages = out.kept.column("messages").to_pylist()
    assert messages[0][0]["content"] == "Mail <EMAIL> or call <PHONE>."
    assert messages[0][1]["content"] == "Done: <EMAIL>"
    assert messages[1] == t.column("messages").to_pylist()[1]
    assert out.kept.column("pii").to_pylist() == [["email", "phone", "email"], []]
    counts = pc.value_counts(pc.list_flatten(out.kept.column("pii"))).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == {"email": 2, "phone": 1}
    assert out.kept.column("id").to_pylist() == t.column("id").to_pylist()


def test_placeholders_kinds_and_roles() -> None:
    t = table([conversation("ip 192.0.2.1", "mail x@example.org", system="admin@example.net")])
    out = PiiFilter(placeholders={"email": "[mail]"}, roles=["assistant"]).process(t)
    msgs = out.kept.column("messages").to_pylist()[0]
    assert [m["content"] for m in msgs] == ["admin@example.net", "ip 192.0.2.1", "mail [mail]"]
    out = PiiFilter(kinds=["ip_address"]).process(t)
    assert [m["content"] for m in out.kept.column("messages").to_pylist()[0]][1] == "ip <IP_ADDRESS>"
    assert out.kept.column("pii").to_pylist() == [["ip_address"]]


def test_drop_mode_reasons_and_kinds() -> None:
    t = table([("Key sk-FAKE0000example0000notarealkey0000", "Mail a@example.com and b@example.com"), ("3.10.2", "ok")])
    out = PiiFilter(mode="drop").process(t)
    assert out.rejected.column("reason").to_pylist() == [
        "pii: secret key, e-mail address ×2 in the instruction and the response"
    ]
    assert out.counts == {"pii: secret": 1}
    assert "pii" not in out.kept.column_names


def test_tag_mode_keeps_text() -> None:
    t = table([("q", "mail a@example.com")])
    out = PiiFilter(mode="tag").process(t)
    assert out.kept.column("messages").equals(t.column("messages"))
    assert out.kept.column("pii").to_pylist() == [["email"]]


@pytest.mark.parametrize(
    "params,key",
    [
        ({"mode": "mask"}, "mode"),
        ({"kinds": ["ssn"]}, "kinds"),
        ({"roles": ["bot"]}, "roles"),
        ({"placeholders": {"x": "y"}}, "placeholders"),
    ],
)
def test_bad_parameters_name_the_key(params: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_config({"pii": params})
    assert err.value.key == key


@pytest.mark.parametrize("mode", ["redact", "drop"])
def test_same_result_for_any_batch_size_and_worker_count(mode: str, tmp_path) -> None:
    t = table([("q", text) for _, text, _ in PII] + [("q", text) for text in NOT_PII])
    runs = [
        engine_util.run(t, [PiiFilter(mode=mode)], tmp_path / str(i), size, w)
        for i, (size, w) in enumerate([(100, 1), (1, 1), (7, 2)])
    ]
    for kept, rejected, _ in runs[1:]:
        assert kept.equals(runs[0][0]) and rejected.equals(runs[0][1])


SAMPLE_FILES = ("alpaca.jsonl", "sharegpt.json", "openai.jsonl", "dolly.jsonl", "prompt_completion.csv")


def test_sample_data_pii_is_exactly_the_planted_rows() -> None:
    found = {}
    for name in SAMPLE_FILES:
        t = open_input(InputSpec(path=str(ROOT / "sample_data" / name))).to_table()
        out = PiiFilter(mode="drop").process(t)
        for row in out.rejected.select(["source_index", "reason"]).to_pylist():
            found[(name, row["source_index"])] = row["reason"]
    assert found == {
        ("alpaca.jsonl", 69): "pii: e-mail address, phone number in the response",
        ("sharegpt.json", 21): "pii: IP address ×4 in the instruction and the response",
        ("openai.jsonl", 13): "pii: e-mail address ×2, phone number ×2 in the instruction and the response",
        ("dolly.jsonl", 14): "pii: e-mail address ×2, phone number ×2 in the instruction and the response",
        ("prompt_completion.csv", 13): "pii: secret key ×2 in the instruction and the response",
    }
    # the near-misses and the controls: versions, dates, ISBN, times, prices, order numbers
    for name, index in [("alpaca.jsonl", 65), ("openai.jsonl", 49), ("dolly.jsonl", 36), ("prompt_completion.csv", 30)]:
        assert (name, index) not in found


@needs_shared
def test_real_arithmetic_and_identity_data_has_no_pii() -> None:
    for path in (
        "natural_instructions/task085_unnatural_addsub_arithmetic.json",
        "llamafactory/identity.json",
        "dolly/dolly_15k_head.jsonl",
    ):
        t = open_input(InputSpec(path=str(SHARED_DATA / path))).to_table()
        assert PiiFilter(mode="drop").process(t).rejected.num_rows == 0, path


@needs_shared
def test_speed_on_real_rows() -> None:
    t = open_input(InputSpec(path=str(SHARED_DATA / "llamafactory/alpaca_en_demo.json"))).to_table()
    stage = PiiFilter()
    stage.process(t.slice(0, 10))
    started = time.perf_counter()
    stage.process(t)
    assert time.perf_counter() - started < 2.0


def test_redactions_are_counted_as_events(tmp_path) -> None:
    from tests import engine_util

    t = table([("Mail me at jane.doe@example.com", "Sure, or call +1 555 0100 123"), ("nothing here", "ok")])
    _, _, out = engine_util.run(t, [PiiFilter()], tmp_path)
    assert sum(out.stats[1].events.values()) >= 2
    assert any(k.startswith("redacted e-mail") for k in out.stats[1].events)
