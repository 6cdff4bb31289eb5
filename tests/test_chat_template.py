"""Chat templates render as transformers does, and the assistant spans are exact."""

from __future__ import annotations

import json

import pytest

from winnow.chat_template import BUILTINS, ChatTemplate, ChatTemplateError, NotPrefixStableError
from winnow.errors import ConfigError, InputError

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
# A system prompt and two turns, the second answer padded with spaces (templates differ in
# whether they trim it).
CONVERSATION = [
    SYSTEM,
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
]
NO_SYSTEM = CONVERSATION[1:]

# Expected text of CONVERSATION (NO_SYSTEM for gemma, which has no system role) with each
# built-in's default tokens, derived from the published templates (sources in
# winnow.chat_template.BUILTINS) and checked against transformers' apply_chat_template below.
EXPECTED = {
    "chatml": (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n"
    ),
    "llama-3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
    ),
    "mistral": (
        "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]"
        "    I am an assistant   </s>"
    ),
    "gemma": (
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
    ),
    "phi-3": (
        "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
        "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|endoftext|>"
    ),
    "zephyr": (
        "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
        "<|user|>\nWho are you</s>\n<|assistant|>\n   I am an assistant   </s>\n"
    ),
    "vicuna": (
        "<s>You are a helpful assistant USER: Hello ASSISTANT: Hi there</s>USER: Who are you ASSISTANT:"
        "    I am an assistant   </s>"
    ),
    "alpaca": (
        "<s>You are a helpful assistant\n\n### Instruction:\nHello\n\n### Response:Hi there</s>\n\n"
        "### Instruction:\nWho are you\n\n### Response:   I am an assistant   </s>"
    ),
}

# What each built-in's assistant spans must hold for CONVERSATION: the text after the generation
# prompt — content as rendered plus the end-of-turn marker. Phi-3 closes the conversation with
# eos_token, which the last span keeps (the model must learn to emit it).
SPANS = {
    "chatml": ["Hi there<|im_end|>", "   I am an assistant   <|im_end|>"],
    "llama-3": ["Hi there<|eot_id|>", "I am an assistant<|eot_id|>"],
    "mistral": [" Hi there</s>", "    I am an assistant   </s>"],
    "gemma": ["Hi there<end_of_turn>", "I am an assistant<end_of_turn>"],
    "phi-3": ["Hi there<|end|>", "   I am an assistant   <|end|>\n<|endoftext|>"],
    "zephyr": ["Hi there</s>", "   I am an assistant   </s>"],
    "vicuna": [" Hi there</s>", "    I am an assistant   </s>"],
    "alpaca": ["Hi there</s>", "   I am an assistant   </s>"],
}

# Outputs published by other projects for the conversation below + a last user turn, rendered
# with add_generation_prompt=True: ggml-org/llama.cpp tests/test-chat-template.cpp (chatml =
# teknium/OpenHermes-2.5-Mistral-7B, mistral = "Mistral-7B-Instruct-v0.2 (mistralai 'v1' template
# with a system prompt)", bos_token "") and EricLBuehler/mistral.rs (google/gemma-7b-it, which
# has no system role, so its conversation starts at the user turn).
PUBLISHED = [
    (
        "chatml",
        {},
        True,
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        "mistral",
        {"bos_token": ""},
        True,
        " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]"
        "    I am an assistant   </s> [INST] Another question [/INST]",
    ),
    (
        "gemma",
        {},
        False,
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
        "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
    ),
]


def conversation_for(name: str) -> list[dict[str, str]]:
    return NO_SYSTEM if name == "gemma" else CONVERSATION


def test_every_builtin_has_a_reference() -> None:
    assert set(EXPECTED) == set(BUILTINS) == set(SPANS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_renders_the_reference_text(name: str) -> None:
    assert ChatTemplate.builtin(name).render(conversation_for(name)) == EXPECTED[name]


@pytest.mark.parametrize(("name", "tokens", "system", "expected"), PUBLISHED)
def test_builtin_matches_outputs_published_elsewhere(name: str, tokens: dict, system: bool, expected: str) -> None:
    messages = [*CONVERSATION, {"role": "user", "content": "Another question"}]
    messages = messages if system else messages[1:]
    assert ChatTemplate.builtin(name, **tokens).render(messages, add_generation_prompt=True) == expected


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_spans_cover_each_assistant_turn_and_its_end_marker(name: str) -> None:
    r = ChatTemplate.builtin(name).render_spans(conversation_for(name))
    assert r.text == EXPECTED[name]
    assert r.prompt + r.completion == r.text
    assert [r.text[s:e] for s, e in r.spans] == SPANS[name]
    assert r.completion.startswith(SPANS[name][-1])  # the completion is the last turn...
    assert not r.completion[len(SPANS[name][-1]) :].strip()  # ...and at most whitespace after it
    assert r.prompt.endswith(ChatTemplate.builtin(name).render(conversation_for(name)[:-1], True)[-8:])


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_single_turn_prompt_is_the_generation_prompt(name: str) -> None:
    t = ChatTemplate.builtin(name)
    messages = [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}]
    r = t.render_spans(messages)
    assert r.prompt == t.render(messages[:1], add_generation_prompt=True)
    assert r.prompt + r.completion == r.text
    assert len(r.spans) == 1 and r.text[r.spans[0][0] :].lstrip().startswith("7")


def test_a_row_without_a_final_answer_ends_with_the_generation_prompt() -> None:
    t = ChatTemplate.builtin("chatml")
    r = t.render_spans(CONVERSATION[:2])
    assert r.text == r.prompt == t.render(CONVERSATION[:2], add_generation_prompt=True)
    assert r.text.endswith("<|im_start|>assistant\n") and r.completion == "" and r.spans == []
    plain = t.render_spans(CONVERSATION[:2], add_generation_prompt=False)
    assert plain.text == plain.prompt == t.render(CONVERSATION[:2]) and plain.completion == ""
    # earlier assistant turns still get their spans
    r = t.render_spans(CONVERSATION[:4])
    assert [r.text[s:e] for s, e in r.spans] == ["Hi there<|im_end|>"] and r.completion == ""


def test_generation_blocks_give_the_spans() -> None:
    source = (
        "{% for m in messages %}<{{ m['role'] }}>"
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<end>{% endgeneration %}"
        "{% else %}{{ m['content'] }}<end>{% endif %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    r = ChatTemplate(source, name="gen").render_spans(NO_SYSTEM)
    assert [r.text[s:e] for s, e in r.spans] == ["Hi there<end>", "   I am an assistant   <end>"]
    assert r.completion == "   I am an assistant   <end>\n"


def test_a_template_that_is_not_prefix_stable_is_named() -> None:
    # Hides the content of every assistant turn but the last (as reasoning templates do).
    source = (
        "{% for m in messages %}<{{ m['role'] }}>"
        "{% if m['role'] != 'assistant' or loop.last %}{{ m['content'] }}{% endif %}<end>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    with pytest.raises(NotPrefixStableError, match="chat template hiding is not prefix-stable"):
        ChatTemplate(source, name="hiding").render_spans(NO_SYSTEM)


def test_custom_template_string_and_tokens() -> None:
    t = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}", bos_token="<B>"
    )
    assert t.render(NO_SYSTEM[:2]) == "<B>[user] Hello[assistant] Hi there"


def test_tokenizer_config_json(tmp_path) -> None:
    config = {
        "bos_token": {"content": "<s>", "lstrip": False, "__type": "AddedToken"},
        "eos_token": "</s>",
        "chat_template": [
            {
                "name": "default",
                "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
            },
            {"name": "tool_use", "template": "tools!"},
        ],
    }
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps(config))
    assert ChatTemplate.from_path(path).render(NO_SYSTEM[:2]) == "<s>Hello</s>Hi there</s>"
    assert ChatTemplate.from_path(tmp_path).render(NO_SYSTEM[:2]) == "<s>Hello</s>Hi there</s>"  # a model folder
    assert ChatTemplate.from_path(path, eos_token="<E>").render(NO_SYSTEM[:1]) == "<s>Hello<E>"
    config["chat_template"] = [{"name": "tool_use", "template": "x"}]
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="without a 'default' entry"):
        ChatTemplate.from_path(path)


def test_jinja_file(tmp_path) -> None:
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{{ m.content }}|{% endfor %}")
    assert ChatTemplate.from_spec({"path": str(path)}).render(NO_SYSTEM[:2]) == "Hello|Hi there|"


def test_transformers_helpers_are_there() -> None:
    t = ChatTemplate(
        "{{ messages | tojson }}|{{ strftime_now('%Y') }}|{% set ns = namespace(n=0) %}"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}"
        "{{ ns.n }}|{{ dict(a=1) | tojson }}",
        now=lambda: __import__("datetime").datetime(2024, 7, 26),
    )
    assert t.render([{"role": "user", "content": "é<b>"}]) == '[{"role": "user", "content": "é<b>"}]|2024|1|{"a": 1}'


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ raise_exception('no tools here') }}", "chat template t raised: no tools here"),
        ("{{ nothing_like_this }}", "chat template t uses an undefined value: 'nothing_like_this' is undefined"),
        ("{{ bos_token }}", "set bos_token / eos_token"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "chat template t tried something the sandbox forbids"),
        ("{{ cycler.__init__.__globals__ }}", "chat template t tried something the sandbox forbids"),
        ("{% set ns = namespace() %}{% set ns._x = 1 %}", "sandbox forbids"),
        ("{{ messages.append(1) }}", "sandbox forbids"),
    ],
)
def test_errors_are_clear_and_the_sandbox_holds(source: str, message: str) -> None:
    with pytest.raises(ChatTemplateError, match=message.replace("(", r"\(").replace("/", "/")) as e:
        ChatTemplate(source, name="t").render(NO_SYSTEM)
    assert isinstance(e.value, InputError)


def test_a_template_that_does_not_compile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="chat template broken does not compile"):
        ChatTemplate("{% for m in messages %}", name="broken").render([])


def test_gemma_refuses_a_system_role() -> None:
    with pytest.raises(ChatTemplateError, match="gemma raised: System role not supported"):
        ChatTemplate.builtin("gemma").render(CONVERSATION)


def test_alpaca_with_and_without_input() -> None:
    t = ChatTemplate.builtin("alpaca")
    with_input = [
        {"role": "user", "content": "Translate.\n\nBonjour", "instruction": "Translate.", "input": "Bonjour"},
        {"role": "assistant", "content": "Hello"},
    ]
    # tatsu-lab/stanford_alpaca train.py PROMPT_DICT["prompt_input"] + output + eos
    assert t.render(with_input) == (
        "<s>Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate.\n\n### Input:\nBonjour\n\n### Response:Hello</s>"
    )
    no_input = [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue"}]
    # PROMPT_DICT["prompt_no_input"] + output + eos
    assert t.render(no_input) == (
        "<s>Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a color.\n\n### Response:Blue</s>"
    )


# -- against transformers itself ----------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers", reason="transformers (the train extra) is not installed")
    tokenizers = pytest.importorskip("tokenizers")

    def make(template: ChatTemplate):
        backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
        tokens = {k: v for k, v in template.special_tokens.items() if k in ("bos_token", "eos_token")}
        return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=template.source, **tokens)

    return make


@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_same_text_as_transformers(hf_tokenizer, name: str, add_generation_prompt: bool) -> None:
    t = ChatTemplate.builtin(name)
    tok = hf_tokenizer(t)
    for messages in (conversation_for(name), conversation_for(name)[:-1], NO_SYSTEM[:2]):
        ours = t.render(messages, add_generation_prompt=add_generation_prompt)
        theirs = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert ours == theirs, (name, messages)
