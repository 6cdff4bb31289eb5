"""Render Hugging Face chat templates as transformers does, and find where the assistant speaks.

A chat template is a Jinja program over ``messages`` (plus ``bos_token``, ``eos_token``,
``add_generation_prompt``) that a model's ``tokenizer_config.json`` ships. :class:`ChatTemplate`
compiles one the way ``transformers.utils.chat_template_utils`` does — an
``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with the
``{% generation %}`` extension and ``loopcontrols``, the globals ``raise_exception``,
``strftime_now``, ``dict`` and ``namespace``, and its own ``tojson`` filter — so that a template
copied from a model card renders the same text, character for character. One difference, on
purpose: printing a variable that does not exist (``{{ bos_token }}`` when no BOS token is set)
is an error here, where transformers prints nothing; testing it (``is defined``, ``if x``)
still works.

:meth:`ChatTemplate.render_spans` also returns the character span of every assistant turn, so a
trainer can put the loss on assistant tokens only:

- A template with ``{% generation %}…{% endgeneration %}`` blocks (transformers'
  ``return_assistant_tokens_mask`` extension) gives its spans directly: each block is a span.
- Any other template is rendered once per assistant turn, cut before that turn with
  ``add_generation_prompt=True`` and cut after it: the turn starts where the first render ends
  and ends where the second does. Both renders must be prefixes of the whole conversation's
  text (a conversation-final ``eos_token`` is allowed, as Phi-3 adds one); a template that
  rewrites earlier turns is not *prefix-stable* and is rejected with a clear error.

A span covers what the model must generate for that turn: everything after the generation
prompt — the content as rendered (trimmed, if the template trims it) **and the end-of-turn
marker the template writes right after it** (``<|im_end|>``, ``<|eot_id|>``, ``</s>``), so the
model learns to stop. Whitespace the template writes after that marker, between turns, is not
part of the span.

>>> t = ChatTemplate.builtin("chatml")
>>> r = t.render_spans([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
>>> r.completion, [r.text[s:e] for s, e in r.spans]
('Hello!<|im_end|>\\n', ['Hello!<|im_end|>'])
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from winnow.errors import ConfigError, InputError

__all__ = ["BUILTINS", "Builtin", "ChatTemplate", "ChatTemplateError", "NotPrefixStableError", "Rendered"]


@dataclass(frozen=True)
class Builtin:
    """A chat format shipped in ``winnow/templates/chat/NAME.jinja``, with its special tokens."""

    file: str
    bos_token: str | None
    eos_token: str | None
    source: str


#: The built-in chat formats. The six model formats are the ``chat_template`` strings of the
#: models' own ``tokenizer_config.json``, unchanged; Vicuna and Alpaca never shipped one, so
#: their files reproduce the prompt code of their training repositories.
BUILTINS: dict[str, Builtin] = {
    "chatml": Builtin(
        "chatml.jinja",
        None,
        "<|im_end|>",
        "teknium/OpenHermes-2.5-Mistral-7B tokenizer_config.json (also transformers' former default template)",
    ),
    "llama-3": Builtin(
        "llama-3.jinja", "<|begin_of_text|>", "<|eot_id|>", "meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json"
    ),
    "mistral": Builtin(
        "mistral.jinja",
        "<s>",
        "</s>",
        "mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json (the 'v1' template that folds the system "
        "prompt into the first user turn)",
    ),
    "gemma": Builtin(
        "gemma.jinja", "<bos>", "<eos>", "google/gemma-7b-it tokenizer_config.json (no system role: it raises)"
    ),
    "phi-3": Builtin(
        "phi-3.jinja", "<s>", "<|endoftext|>", "microsoft/Phi-3-mini-4k-instruct tokenizer_config.json (2024-05)"
    ),
    "zephyr": Builtin("zephyr.jinja", "<s>", "</s>", "HuggingFaceH4/zephyr-7b-beta tokenizer_config.json"),
    "vicuna": Builtin("vicuna.jinja", "<s>", "</s>", "lm-sys/FastChat conversation.py, template vicuna_v1.1"),
    "alpaca": Builtin("alpaca.jinja", "<s>", "</s>", "tatsu-lab/stanford_alpaca train.py, PROMPT_DICT"),
}

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


class ChatTemplateError(InputError):
    """A template failed on a conversation (``raise_exception``, an undefined variable, a
    sandbox violation). The message names the template."""


class NotPrefixStableError(ChatTemplateError):
    """A template renders earlier turns differently once later turns follow, so the prefix
    method cannot tell where an assistant turn starts and ends."""


@dataclass(frozen=True)
class Rendered:
    """One conversation rendered: ``prompt + completion == text``; ``spans`` are the
    ``(start, end)`` character offsets in ``text`` of every assistant turn."""

    text: str
    prompt: str
    completion: str
    spans: list[tuple[int, int]]


class _StrictPrintUndefined(jinja2.Undefined):
    """Undefined that may be tested (``is defined``, ``if x``, ``x | default``) but not printed."""

    __slots__ = ()

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # pragma: no cover


class _AssistantTracker(jinja2.ext.Extension):
    """``{% generation %}…{% endgeneration %}``: records where each block's output lands
    (the same bookkeeping as transformers' ``AssistantTracker``)."""

    tags = {"generation"}  # noqa: RUF012  (jinja's own class attribute)

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        environment.extend(activate_tracker=self.activate_tracker)
        self._tracking: ContextVar[tuple[list[str], list[tuple[int, int]]] | None] = ContextVar(
            "winnow_assistant_tracker", default=None
        )

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller: Callable[[], str]) -> str:
        rv = caller()
        tracking = self._tracking.get()
        if tracking is not None:
            blocks, spans = tracking
            start = len("".join(blocks))
            spans.append((start, start + len(rv)))
        return rv

    @contextmanager
    def activate_tracker(self, blocks: list[str], spans: list[tuple[int, int]]) -> Iterator[None]:
        token = self._tracking.set((blocks, spans))
        try:
            yield
        finally:
            self._tracking.reset(token)


class _TemplateDict:
    # transformers' limited `dict` global: no attribute access to break out through.
    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    # transformers' namespace: no underscore-prefixed attributes.
    def __init__(*args: Any, **kwargs: Any) -> None:
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}"
            )


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    # transformers' override: no HTML escaping, and json.dumps' own options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _environment(now: Callable[[], datetime]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_AssistantTracker, jinja2.ext.loopcontrols],
        undefined=_StrictPrintUndefined,
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: now().strftime(fmt)
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


def _token(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


class ChatTemplate:
    """A Hugging Face chat template, compiled lazily in a sandbox, with its special tokens.

    ``special_tokens`` are the variables transformers passes besides the messages (its
    ``special_tokens_map``: ``bos_token``, ``eos_token``, ``pad_token``…); a token left None is
    not defined for the template. ``now`` is what ``strftime_now`` reports (default: the clock).
    """

    def __init__(
        self,
        source: str,
        name: str = "<string>",
        bos_token: str | None = None,
        eos_token: str | None = None,
        special_tokens: Mapping[str, str | None] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(source, str):
            raise ConfigError(f"chat template {name} must be a string, got {type(source).__name__}")
        self.source = source
        self.name = name
        tokens = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        if bos_token is not None:
            tokens["bos_token"] = bos_token
        if eos_token is not None:
            tokens["eos_token"] = eos_token
        self.special_tokens = tokens
        self.now = now or datetime.now
        self._compiled: jinja2.Template | None = None

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def builtin(cls, name: str, **kwargs: Any) -> ChatTemplate:
        """A built-in format (:data:`BUILTINS`) with its default BOS/EOS (override by keyword)."""
        if name not in BUILTINS:
            raise ConfigError(f"unknown chat template '{name}'; built-in: {', '.join(BUILTINS)}", "name")
        info = BUILTINS[name]
        source = resources.files("winnow").joinpath(f"templates/chat/{info.file}").read_text(encoding="utf-8")
        kwargs.setdefault("bos_token", info.bos_token)
        kwargs.setdefault("eos_token", info.eos_token)
        return cls(source, name=name, **kwargs)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> ChatTemplate:
        """A ``.jinja`` file, a ``tokenizer_config.json`` (or ``chat_template.json``), or a model
        folder holding one of them. Tokens read from the file yield to those given by keyword."""
        p = Path(path)
        if p.is_dir():
            for candidate in ("chat_template.jinja", "tokenizer_config.json", "chat_template.json"):
                if (p / candidate).is_file():
                    found = cls.from_path(p / candidate, **kwargs)
                    if candidate == "chat_template.jinja" and (p / "tokenizer_config.json").is_file():
                        # A model saved by transformers ≥ 4.43 keeps its tokens beside the template.
                        config = _read_json(p / "tokenizer_config.json")
                        config_tokens = {k: v for k, v in _config_tokens(config).items() if v is not None}
                        found.special_tokens = {**config_tokens, **found.special_tokens}
                    return found
            raise ConfigError(f"{p} has no chat_template.jinja, tokenizer_config.json or chat_template.json", "path")
        if not p.is_file():
            raise ConfigError(f"chat template file {p} does not exist", "path")
        if p.suffix != ".json":
            return cls(p.read_text(encoding="utf-8"), name=str(p), **kwargs)
        config = _read_json(p)
        template = config.get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
            if "default" not in named:
                raise ConfigError(
                    f"{p}: chat_template is a list without a 'default' entry (has: {', '.join(map(str, named))}); "
                    "copy the one you want into a .jinja file",
                    "path",
                )
            template = named["default"]
        if not isinstance(template, str):
            raise ConfigError(f"{p} has no chat_template string", "path")
        tokens: dict[str, str | None] = {**_config_tokens(config), **dict(kwargs.pop("special_tokens", None) or {})}
        for key in ("bos_token", "eos_token"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        return cls(template, name=str(p), special_tokens=tokens, **kwargs)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **kwargs: Any) -> ChatTemplate:
        """From the YAML map of the ``template`` stage: ``{name: chatml}``, ``{path: FILE}`` or
        ``{chat_template: "..."}``."""
        kind = check_spec(spec)
        if kind == "name":
            return cls.builtin(str(spec["name"]), **{k: v for k, v in kwargs.items() if v is not None})
        if kind == "path":
            return cls.from_path(str(spec["path"]), **kwargs)
        return cls(str(spec["chat_template"]), name="<chat_template string>", **kwargs)

    # -- rendering ----------------------------------------------------------------------------
    @property
    def compiled(self) -> jinja2.Template:
        if self._compiled is None:
            try:
                self._compiled = _environment(self.now).from_string(self.source)
            except jinja2.exceptions.TemplateSyntaxError as e:
                raise ConfigError(f"chat template {self.name} does not compile: {e} (line {e.lineno})") from None
        return self._compiled

    @property
    def has_generation_blocks(self) -> bool:
        return bool(_GENERATION_TAG.search(self.source))

    def fingerprint(self) -> str:
        """A hash of the template and its tokens (what the rendered text depends on)."""
        payload = json.dumps([self.source, sorted(self.special_tokens.items())], ensure_ascii=False)
        return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False, **extra: Any) -> str:
        """The conversation as the template writes it (``apply_chat_template(tokenize=False)``)."""
        return self._render(messages, add_generation_prompt, extra, None)

    def _render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool,
        extra: Mapping[str, Any],
        spans: list[tuple[int, int]] | None,
    ) -> str:
        context = {
            **self.special_tokens,
            **extra,
            "messages": _plain_messages(messages),
            "add_generation_prompt": add_generation_prompt,
        }
        template = self.compiled
        try:
            if spans is None:
                return template.render(**context)
            blocks: list[str] = []
            with template.environment.activate_tracker(blocks, spans):  # type: ignore[attr-defined]
                for block in template.generate(**context):
                    blocks.append(block)
            return "".join(blocks)
        except jinja2.exceptions.SecurityError as e:
            raise ChatTemplateError(f"chat template {self.name} tried something the sandbox forbids: {e}") from None
        except jinja2.exceptions.UndefinedError as e:
            hint = ""
            if any(t in str(e) for t in ("bos_token", "eos_token")):
                hint = " (set bos_token / eos_token for this template)"
            raise ChatTemplateError(f"chat template {self.name} uses an undefined value: {e}{hint}") from None
        except jinja2.exceptions.TemplateError as e:
            raise ChatTemplateError(f"chat template {self.name} raised: {e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise ChatTemplateError(f"chat template {self.name} failed: {type(e).__name__}: {e}") from None

    def render_spans(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **extra: Any
    ) -> Rendered:
        """``text``, ``prompt``/``completion`` and the span of every assistant turn.

        When the conversation ends with an assistant turn, ``prompt`` is everything before that
        turn (it ends with the generation prompt) and ``completion`` is that turn to the end.
        Otherwise there is nothing to complete: with ``add_generation_prompt`` the text ends with
        the generation prompt (ready to sample), ``prompt == text`` and ``completion == ""``.
        """
        messages = list(messages)
        ends_with_assistant = bool(messages) and messages[-1].get("role") == "assistant"
        gen = add_generation_prompt and not ends_with_assistant
        turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        spans: list[tuple[int, int]] = []
        if self.has_generation_blocks:
            text = self._render(messages, gen, extra, spans)
            if len(spans) != len(turns):  # blocks that do not match the turns: measure instead
                spans = self._prefix_spans(messages, turns, text, extra)
        else:
            text = self._render(messages, gen, extra, None)
            spans = self._prefix_spans(messages, turns, text, extra)
        cut = spans[-1][0] if ends_with_assistant and spans else len(text)
        return Rendered(text, text[:cut], text[cut:], spans)

    def _prefix_spans(
        self, messages: list[Mapping[str, Any]], turns: list[int], text: str, extra: Mapping[str, Any]
    ) -> list[tuple[int, int]]:
        eos = self.special_tokens.get("eos_token") or ""
        spans: list[tuple[int, int]] = []
        for i in turns:
            before = self._render(messages[:i], True, extra, None)
            if not text.startswith(before):
                raise NotPrefixStableError(self._unstable(i, "with the turns before it and add_generation_prompt"))
            after = text if i == len(messages) - 1 else self._render(messages[: i + 1], False, extra, None)
            if not text.startswith(after):
                # Some templates close the whole conversation with eos_token (Phi-3).
                if eos and after.endswith(eos) and text.startswith(after[: -len(eos)]):
                    after = after[: -len(eos)]
                else:
                    raise NotPrefixStableError(self._unstable(i, "up to and including it"))
            start = len(before)
            if len(after) < start:
                raise NotPrefixStableError(self._unstable(i, "up to and including it (shorter than its prompt)"))
            if spans and start < spans[-1][1]:
                raise NotPrefixStableError(self._unstable(i, "after the previous assistant turn"))
            spans.append((start, start + len(text[start : len(after)].rstrip())))
        return spans

    def _unstable(self, turn: int, how: str) -> str:
        return (
            f"chat template {self.name} is not prefix-stable: the conversation rendered {how} (message {turn}) "
            "is not a prefix of the whole conversation, so the assistant spans cannot be measured; "
            "add {% generation %}…{% endgeneration %} around the assistant content in the template"
        )


def check_spec(spec: Any) -> str:
    """Which of ``name``/``path``/``chat_template`` a template map uses (exactly one)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"template must be a map like {{name: chatml}}, {{path: FILE}} or {{chat_template: '...'}}, got {spec!r}",
            "template",
        )
    keys = [k for k in ("name", "path", "chat_template") if k in spec]
    unknown = [k for k in spec if k not in ("name", "path", "chat_template")]
    if unknown or len(keys) != 1:
        raise ConfigError(
            "template takes exactly one of name (built-in: " + ", ".join(BUILTINS) + "), path (a .jinja file or "
            f"tokenizer_config.json) or chat_template (the template itself), got {dict(spec)!r}",
            "template",
        )
    value = spec[keys[0]]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"template.{keys[0]} must be a non-empty string, got {value!r}", "template")
    if keys[0] == "name" and value not in BUILTINS:
        raise ConfigError(f"unknown chat template '{value}'; built-in: {', '.join(BUILTINS)}", "template")
    return keys[0]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}", "path") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object", "path")
    return data


def _config_tokens(config: Mapping[str, Any]) -> dict[str, str | None]:
    """The special tokens of a tokenizer_config.json, as transformers passes them to templates."""
    names = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    tokens: dict[str, str | None] = {name: _token(config.get(name)) for name in names}
    extra = config.get("additional_special_tokens")
    if isinstance(extra, list):
        tokens["additional_special_tokens"] = [t for t in map(_token, extra) if t is not None]  # type: ignore[assignment]
    return tokens


def _plain_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fresh plain dicts, with keys whose value is None dropped (as transformers does), except
    ``content``, which a template may always read: None becomes ""."""
    out = []
    for m in messages:
        d = {str(k): v for k, v in m.items() if v is not None}
        d.setdefault("content", "")
        out.append(d)
    return out
