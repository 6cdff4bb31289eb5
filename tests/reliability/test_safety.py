"""Safe by construction: no code from YAML, templates or expressions; no paths from data; no
network at run time."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import winnow as wn
from tests.reliability._util import env, make_jsonl
from winnow.errors import ConfigError, InputError, WinnowError
from winnow.export import FORMATS, export_corpus
from winnow.pipeline import Pipeline, load_yaml

MARKER = "/tmp/winnow-pwned-marker"


@pytest.fixture(autouse=True)
def _no_marker() -> None:
    if os.path.exists(MARKER):
        os.remove(MARKER)
    yield
    assert not os.path.exists(MARKER), "hostile input executed code"


@pytest.mark.parametrize(
    "text",
    [
        f"!!python/object/apply:os.system ['touch {MARKER}']",
        f"name: x\ninputs: !!python/object/apply:os.system ['touch {MARKER}']\n",
        "x: !!python/name:os.system\n",
        "x: !!python/object/new:subprocess.Popen [['touch', '/tmp/winnow-pwned-marker']]\n",
        "x: !!binary aGVsbG8=\ny: !!set {a, b}\n",  # safe tags are fine, they build data
    ],
)
def test_yaml_never_builds_python_objects(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        Pipeline.from_yaml(path)
    try:
        data = load_yaml(text)
    except ConfigError as e:
        assert "invalid YAML" in str(e) or "could not determine a constructor" in str(e)
    else:  # only plain data came back
        assert all(isinstance(v, (bytes, set, str, dict, list)) for v in data.values())


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[-1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__.os.popen('touch /tmp/winnow-pwned-marker').read() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].system('touch /tmp/winnow-pwned-marker') }}",
    "{{ request }}",
    "{{ config }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ raise_exception.__globals__ }}",
    "{{ '{0.__class__}'.format(messages) }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(messages) }}",
    "{{ '%s'|format(messages.__class__) }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ messages[0].content.__class__.__mro__ }}",
    "{{ (messages|first).items.__self__.__class__ }}",
    "{% for m in messages %}{{ m.__class__.__init__.__globals__ }}{% endfor %}",
    "{{ dict.__class__ }}{{ dict.mro() }}",
    "{{ strftime_now.__globals__ }}",
    "{{ messages.append(1) }}{{ messages.clear() }}",
    "{% set x = messages.pop() %}{{ x }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_template_sandbox_escapes_fail(template: str) -> None:
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    for on_error in ("raise", "drop"):
        stage = wn.stages.from_config({"template": {"template": {"chat_template": template}, "on_error": on_error}})
        try:
            result = wn.Pipeline(stages=[stage]).run(rows, output=None, progress=False, workers=1)
        except WinnowError as e:  # a clear, user-facing refusal
            assert "chat template" in str(e) or "template" in str(e)
            continue
        # rendered without escaping: nothing but plain text, and no internals leaked
        for text in result.to_arrow().column("text").to_pylist() if result.to_arrow().num_rows else []:
            for leak in ("<class", "__globals__", "<function", "<module", "subprocess", "Popen", "builtins"):
                assert leak not in text, (template, text)
        if on_error == "drop":
            assert result.to_arrow().num_rows + result.rejected(format="arrow").num_rows == 1


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch /tmp/winnow-pwned-marker')",
        "open('/etc/passwd')",
        "response.__class__",
        "(lambda: 1)()",
        "[x for x in turns]",
        "eval('1')",
        "exec('import os')",
        "getattr(response, 'upper')",
        "response.upper()",
        "_x == 1",
        "globals()",
        "len(response) > 1 and __builtins__",
        "().__class__.__bases__[0].__subclasses__()",
        "response[0]",
        "f'{response}' == 'x'",
        "1 if response else 2",
        "(x := 1)",
        "len(response) ** 99999999",
        "'a' * 10**12 == response",
    ],
)
def test_expression_filter_refuses_code(expression: str) -> None:
    with pytest.raises(ConfigError):
        wn.stages.ExpressionFilter(keep=expression)


def test_expression_filter_does_not_eval() -> None:
    """Strings in the data are data: a row holding Python code is compared, never run."""
    rows = [{"instruction": "__import__('os').system('touch /tmp/winnow-pwned-marker')", "input": "", "output": "x"}]
    stage = wn.stages.ExpressionFilter(keep="instruction == \"__import__('os')\" or len(response) > 0")
    result = wn.Pipeline(stages=[stage]).run(rows, output=None, progress=False, workers=1)
    assert result.to_arrow().num_rows == 1


HOSTILE = ["../../../../tmp/winnow-escape", "/etc/passwd", "..", "a/../../b", "C:\\Windows\\x", "~/x", "\x00"]


@pytest.mark.parametrize("to", [t for t in FORMATS])
def test_export_writes_only_inside_its_folder(tmp_path: Path, to: str) -> None:
    records = []
    for i, bad in enumerate(HOSTILE * 2):
        records.append(
            {
                "id": bad + str(i),
                "source": bad,
                "source_index": i,
                "task_type": bad,
                "lang": bad,
                "messages": [{"role": "user", "content": f"q{i} {bad}"}, {"role": "assistant", "content": f"a {bad}"}],
                "meta": json.dumps({"path": bad, "file": bad, "name": bad, "dataset": bad, "images": [bad]}),
            }
        )
    corpus = tmp_path / "corpus"
    wn.Pipeline(stages=[], split={"validation": 0.3}).run(records, output=corpus, progress=False, workers=1)
    out = tmp_path / "export"
    watched = tmp_path
    before = {p for p in watched.rglob("*")} - {p for p in out.rglob("*")}
    kwargs = {"chat_template": "chatml"} if to == "axolotl" else {}
    with contextlib.suppress(WinnowError):
        export_corpus(corpus, out, to, **kwargs)
    after = {p for p in watched.rglob("*")}
    new_outside = {p for p in after - before if out not in p.parents and p != out}
    assert not new_outside, new_outside
    assert not Path("/tmp/winnow-escape").exists()
    for p in out.rglob("*"):
        assert p.resolve().is_relative_to(out.resolve())
        assert not p.is_symlink()


def test_runs_offline(tmp_path: Path) -> None:
    """A whole run (every built-in stage that needs no files, template and language included)
    and an export, with every socket connection refused, in a fresh process: nothing reaches
    for the network (no tokenizer or model downloads, no telemetry)."""
    src = make_jsonl(tmp_path / "in.jsonl", 300)
    stages = [
        {"exact_dedup": {}},
        {"minhash_dedup": {}},
        {"language": {}},
        {"length": {}},
        {"quality": {}},
        {"refusal": {}},
        {"pii": {}},
        {"template": {}},
        {"rephrase": {}},
        {"expression": {"keep": "len(response) > 0"}},
    ]
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"inputs": [{"path": str(src)}], "stages": stages, "output": str(tmp_path / "c")}))
    script = textwrap.dedent(
        f"""
        import socket, sys
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network access is blocked in this test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from winnow.cli import main
        try:
            main(["run", {str(pipeline)!r}, "--workers", "1", "--no-progress"])
        except SystemExit as e:
            assert not e.code, e.code
        try:
            main(["export", {str(tmp_path / "c")!r}, "--to", "trl", {str(tmp_path / "e")!r}])
        except SystemExit as e:
            assert not e.code, e.code
        print("ATTEMPTS", len(attempts), attempts[:3])
        """
    )
    e = env()
    e.update({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"})
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=e, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ATTEMPTS 0 " in proc.stdout, proc.stdout
    assert wn.Corpus(tmp_path / "c").versions() == ["v1"]


@pytest.mark.slow
def test_hub_input_fails_clearly_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one input that needs the network says so in one line when there is none."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(InputError, match="hf://"):
        wn.formats.open_input(wn.formats.InputSpec(hf_dataset="nobody/no-such-dataset-xyz"))
