"""Personal data and secrets: e-mail addresses, phone numbers, IP addresses, credit-card numbers,
IBANs and API keys or private keys, redacted (by default), dropped or tagged.

Detection runs in two steps, so that a batch of clean rows costs a few vectorized scans:

1. Arrow regex kernels (RE2, no look-behind) mark the messages that *may* hold each kind.
2. Only those messages are searched with the exact Python patterns, and each match is
   validated: Luhn for cards, mod-97 for IBANs, octet ranges and address classes for IPs,
   Shannon entropy for generic ``api_key = "…"`` values.

Few false positives matter more than catching everything. By design these are **not** PII:
version numbers (``3.10.2``, and a dotted quad after ``v``/``version``: ``v1.2.3.4``), dates
and times, ISBNs, order and invoice numbers, prices, results of arithmetic and long integers
(a run of digits is a card number only when grouped like one or named as one, and a phone
number only with a ``+`` country code, the North-American ``(415) 555-0187`` shape, or a word
such as "phone"/"tel"/"电话" before it), UUIDs and hashes, loopback/private/link-local IP
addresses (``127.0.0.1``, ``192.168.1.1``: configuration, not a person), and ``user@host`` in an
SSH command (a host without a dotted, alphabetic domain; ``git@github.com`` is not an address
either). Documentation values (``example.com``, ``192.0.2.x``, ``555-01xx``) *are* caught:
they are PII-shaped, and data that uses them stands in for real values.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.errors import ConfigError
from winnow.stages.base import Filter, Verdict, register

#: Every kind, in order of precedence: where two matches overlap, the earlier kind wins
#: (an API key is not also a phone number).
KINDS = ("secret", "credit_card", "iban", "email", "ip_address", "phone")
DEFAULT_PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip_address": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "iban": "<IBAN>",
    "secret": "<SECRET>",
}
#: How a kind is named in reasons.
LABELS = {
    "email": "e-mail address",
    "phone": "phone number",
    "ip_address": "IP address",
    "credit_card": "credit-card number",
    "iban": "IBAN",
    "secret": "secret key",
}
WHERE = {"system": "the system prompt", "user": "the instruction", "assistant": "the response", "tool": "a tool turn"}

# -- step 1: RE2 prefilters (cheap, generous) ---------------------------------------------------

PREFILTERS = {
    "email": r"[A-Za-z0-9._%+\-]@[A-Za-z0-9\-]+\.[A-Za-z]",
    "phone": (
        r"\+\d|\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}"
        r"|(?i:phone|tel|mobile|cell|fax|call|whatsapp|电话|手机|联系)[^\d\n]{0,24}\(?\d{3}"
    ),
    "ip_address": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}",
    "credit_card": r"\d{4}[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d|\d{13}",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "secret": (
        r"sk-[A-Za-z0-9_\-]{20}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30}|xox[abposr]-[A-Za-z0-9]"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
        r"|(?i:key|secret|token|passw\w*)[\"']?\s*[:=]\s*[\"'][A-Za-z0-9_\-+/=.]{16}"
    ),
}

# -- step 2: exact patterns and validators (Python, candidates only) ----------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+\-])([A-Za-z0-9][A-Za-z0-9._%+\-]*)@((?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))(?![\w\-])"
)
#: File extensions that follow an "@" in asset names (``icon@2x.png``), not top-level domains.
_NOT_TLD = {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "ts", "css", "py", "json", "md"}
#: Local parts that are not people: SSH remotes (``git@github.com``).
_NOT_LOCAL = {"git"}

_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,5}(?![\w])")
_PHONE_NANP = re.compile(r"(?<![\w.\-/:])(?:\(\d{3}\) ?|\d{3}[.\- ])\d{3}[.\- ]\d{4}(?![\w\-/:]|\.\d)")
_PHONE_WORD = re.compile(
    r"(?i:phone|tel|telephone|mobile|cell|fax|call|whatsapp|电话|手机|联系方式|联系电话)"
    r"(?:[ \t]*(?:number|no\.?|#|号码))?[ \t]*[:：]?[ \t]*(?:at|on)?[ \t]*"
    r"(\(?\d[\d \-.()]{5,16}\d)(?![\w.])"
)

_IPV4 = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"(?i:\bv|version|ver\.?|release|build|python|node|section|chapter|step|§|==|@)\s*$")
_IPV6 = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?![\w:])")
#: Not personal: configuration and reserved addresses (RFC 1918, loopback, link-local…). The
#: documentation ranges (192.0.2.0/24, 2001:db8::/32) are kept on purpose: data uses them as
#: stand-ins for real addresses.
_NOT_PERSONAL = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "ff00::/8",
    )
]

_CARD = re.compile(r"(?<![\w\-.])(\d(?:[ \-]?\d){12,18})(?![\w\-]|\.\d)")
_CARD_GROUPS = re.compile(r"^(?:\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ \-])\d{6}\2\d{4,5})$")
_CARD_WORD = re.compile(r"(?i:card|visa|mastercard|amex|american express|discover|credit|debit|卡号|信用卡|银行卡)")
#: Issuer prefixes of the major networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay).
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9]|2)|35|3[068])")

_IBAN = re.compile(r"(?<![\w])([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?![\w])")
#: IBAN lengths by country (the common ones; others need 15–34).
_IBAN_LENGTH = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
    "GB": 22, "GR": 27, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SE": 24, "SK": 24,
}  # fmt: skip

_SECRET_PREFIXED = re.compile(
    r"(?<![\w\-])(?:sk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,})(?![\w\-])"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z]+ )*PRIVATE KEY-----)?", re.S)
_SECRET_ASSIGNED = re.compile(
    r"(?i:api[_\-]?key|apikey|secret(?:[_\-]?key)?|access[_\-]?key|auth[_\-]?token|access[_\-]?token|token"
    r"|password|passwd|client[_\-]?secret)[\"']?\s*[:=]\s*[\"']([A-Za-z0-9_\-+/=.]{16,})[\"']"
)
_PLACEHOLDER_VALUE = re.compile(r"(?i)your|xxxx|example|placeholder|changeme|dummy|<|^[A-Z_]+$")


@dataclass(frozen=True)
class Match:
    kind: str
    start: int
    end: int


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    code = value.replace(" ", "")
    want = _IBAN_LENGTH.get(code[:2])
    if (want and len(code) != want) or not 15 <= len(code) <= 34:
        return False
    moved = code[4:] + code[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


#: Well-known public DNS resolvers: service addresses in networking how-tos, not anyone's.
_PUBLIC_SERVICES = {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "208.67.222.222", "208.67.220.220"}


def _personal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if str(ip) in _PUBLIC_SERVICES:
        return False
    return not any(ip.version == net.version and ip in net for net in _NOT_PERSONAL)


def _emails(text: str) -> list[tuple[int, int]]:
    return [
        m.span()
        for m in _EMAIL.finditer(text)
        if m.group(3).lower() not in _NOT_TLD and m.group(1).lower() not in _NOT_LOCAL
    ]


def _phones(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _PHONE_INTL.finditer(text):
        if 8 <= sum(ch.isdigit() for ch in m.group()) <= 15:
            out.append(m.span())
    out += [m.span() for m in _PHONE_NANP.finditer(text)]
    for m in _PHONE_WORD.finditer(text):
        value = m.group(1)
        if 7 <= sum(ch.isdigit() for ch in value) <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            out.append(m.span(1))
    return out


def _ips(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _IPV4.finditer(text):
        if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            continue
        if _personal(m.group(1)):
            out.append(m.span(1))
    for m in _IPV6.finditer(text):
        value = m.group(1)
        groups = [g for g in value.split(":") if g]
        # three hex groups at least, so "a::b" in code and times such as 10:30:00 are not addresses
        if len(groups) >= 3 and ("::" in value or len(groups) == 8) and _personal(value):
            out.append(m.span(1))
    return out


def _cards(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _CARD.finditer(text):
        value = m.group(1)
        digits = re.sub(r"\D", "", value)
        if not (13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn(digits)):
            continue
        if len(set(digits)) < 2:
            continue
        grouped = bool(_CARD_GROUPS.match(value))
        named = bool(_CARD_WORD.search(text, max(0, m.start() - 40), m.start()))
        if grouped or named:
            out.append(m.span(1))
    return out


def _ibans(text: str) -> list[tuple[int, int]]:
    return [m.span(1) for m in _IBAN.finditer(text) if iban_ok(m.group(1))]


def _secrets(text: str) -> list[tuple[int, int]]:
    out = [m.span() for m in _SECRET_PREFIXED.finditer(text) if re.search(r"\d", m.group())]
    out += [m.span() for m in _PRIVATE_KEY.finditer(text)]
    for m in _SECRET_ASSIGNED.finditer(text):
        value = m.group(1)
        if _PLACEHOLDER_VALUE.search(value):
            continue
        classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
        if classes >= 2 and entropy(value) >= 3.5:
            out.append(m.span(1))
    return out


FINDERS: dict[str, Callable[[str], list[tuple[int, int]]]] = {
    "email": _emails,
    "phone": _phones,
    "ip_address": _ips,
    "credit_card": _cards,
    "iban": _ibans,
    "secret": _secrets,
}


def find(text: str, kinds: list[str]) -> list[Match]:
    """Validated matches in ``text``, without overlaps (the earlier kind in ``KINDS`` wins),
    in text order."""
    taken: list[Match] = []
    for kind in KINDS:
        if kind not in kinds:
            continue
        for start, end in FINDERS[kind](text):
            if all(end <= t.start or start >= t.end for t in taken):
                taken.append(Match(kind, start, end))
    return sorted(taken, key=lambda m: m.start)


def redact(text: str, matches: list[Match], placeholders: dict[str, str]) -> str:
    parts, last = [], 0
    for m in matches:
        parts += [text[last : m.start], placeholders[m.kind]]
        last = m.end
    return "".join(parts) + text[last:]


@register
class PiiFilter(Filter):
    """Redact, drop or tag rows with personal data or secrets.

    Looks for e-mail addresses, phone numbers, IP addresses (v4 and v6), credit-card numbers
    (Luhn-checked), IBANs (mod-97-checked) and secrets (OpenAI ``sk-…``, AWS ``AKIA…``, GitHub
    ``ghp_…``, Slack ``xox…`` keys, PEM private keys, high-entropy ``api_key = "…"`` values).
    Versions, dates, times, ISBNs, order numbers, prices, long integers, UUIDs and hashes are not
    matched; documentation values (``example.com``, ``192.0.2.x``, ``555-01xx``) are. In
    ``redact`` and ``tag`` mode every kept row gets a ``pii`` column: the kind of every match, in
    text order (empty when none), so ``pc.value_counts(pc.list_flatten(...))`` counts them.

    Args:
        mode: ``redact`` (keep the row, replace each match with its placeholder), ``drop`` the
            row, or ``tag`` (keep the row unchanged; only the ``pii`` column).
        kinds: which kinds to look for (null: all): email, phone, ip_address, credit_card,
            iban, secret.
        roles: whose turns are searched (and redacted): any of system, user, assistant, tool.
        placeholders: replacement text per kind, over the defaults (``<EMAIL>``, ``<PHONE>``,
            ``<IP_ADDRESS>``, ``<CREDIT_CARD>``, ``<IBAN>``, ``<SECRET>``).

    >>> stage = PiiFilter(kinds=["email", "secret"], placeholders={"email": "[email]"})
    >>> stage.mode, stage.kinds
    ('redact', ['email', 'secret'])
    """

    name = "pii"

    def __init__(
        self,
        mode: Literal["redact", "drop", "tag"] = "redact",
        kinds: list[str] | None = None,
        roles: list[str] | None = None,
        placeholders: dict[str, str] | None = None,
    ) -> None:
        if mode not in ("redact", "drop", "tag"):
            raise ConfigError(f"pii: mode must be redact, drop or tag, got {mode!r}", "mode")
        for key, values, valid in (
            ("kinds", kinds, KINDS),
            ("roles", roles, WHERE),
            ("placeholders", placeholders, KINDS),
        ):
            bad = [v for v in values or [] if v not in valid]
            if bad:
                raise ConfigError(f"pii: unknown {key[:-1]} '{bad[0]}' in `{key}`; choose from {', '.join(valid)}", key)
        self.mode = mode
        self.kinds = kinds
        self.roles = list(WHERE) if roles is None else roles
        self.placeholders = placeholders

    @cached_property
    def _kinds(self) -> list[str]:
        return [k for k in KINDS if self.kinds is None or k in self.kinds]

    @cached_property
    def _placeholders(self) -> dict[str, str]:
        return {**DEFAULT_PLACEHOLDERS, **(self.placeholders or {})}

    @cached_property
    def _prefilter(self) -> str:
        return "|".join(f"(?:{PREFILTERS[k]})" for k in self._kinds)

    def setup(self) -> None:
        _ = self._prefilter, self._placeholders

    def scan(self, messages: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, list[list[Match]], np.ndarray]:
        """Find matches in every searched turn.

        Returns the flat contents of all turns, the matches per flat turn (only for turns with
        a candidate; others empty) and, per flat turn, the row it belongs to.
        """
        if isinstance(messages, pa.ChunkedArray):
            messages = messages.combine_chunks()
        flat = pc.list_flatten(messages)
        parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
        content = pc.fill_null(flat.field("content"), "")
        found: list[list[Match]] = [[] for _ in range(len(flat))]
        if not len(flat) or not self._kinds:
            return content, found, parents
        searched = pc.fill_null(pc.is_in(flat.field("role"), pa.array(self.roles, pa.string())), False)
        maybe = pc.and_(searched, pc.fill_null(pc.match_substring_regex(content, self._prefilter), False))
        where = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
        if len(where):
            for i, text in zip(where.tolist(), content.take(pa.array(where)).to_pylist()):
                found[i] = find(text, self._kinds)
        return content, found, parents

    def annotate(self, batch: pa.Table) -> pa.Table:
        if self.mode == "drop":
            return batch
        messages = batch.column("messages").combine_chunks()
        content, found, parents = self.scan(messages)
        per_row: list[list[str]] = [[] for _ in range(batch.num_rows)]
        for i, matches in enumerate(found):
            per_row[int(parents[i])] += [m.kind for m in matches]
        column = pa.array(per_row, pa.list_(pa.string()))
        if self.mode == "redact":
            changed = [i for i, matches in enumerate(found) if matches]
            if changed:
                texts = content.take(pa.array(changed)).to_pylist()
                new = [redact(t, found[i], self._placeholders) for i, t in zip(changed, texts)]
                mask = np.zeros(len(content), bool)
                mask[changed] = True
                content = pc.replace_with_mask(content, pa.array(mask), pa.array(new, pa.string()))
                flat = pc.list_flatten(messages)
                offsets = pc.subtract(messages.offsets, messages.offsets[0])
                rebuilt = pa.ListArray.from_arrays(
                    offsets,
                    pa.StructArray.from_arrays([flat.field("role"), content], names=["role", "content"]),
                    mask=pc.is_null(messages),
                )
                batch = batch.set_column(
                    batch.column_names.index("messages"), "messages", rebuilt.cast(batch.schema.field("messages").type)
                )
        if "pii" in batch.column_names:
            return batch.set_column(batch.column_names.index("pii"), "pii", column)
        return batch.append_column("pii", column)

    def reasons(self, batch: pa.Table) -> Verdict:
        n = batch.num_rows
        if self.mode != "drop":  # rows are kept: what was found is counted as events
            verb = "redacted" if self.mode == "redact" else "found"
            found_kinds = pc.list_flatten(batch.column("pii")).to_pylist()
            events = Counter(f"{verb} {LABELS[k]}" for k in found_kinds)
            return Verdict(pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), events)
        messages = batch.column("messages").combine_chunks()
        _, found, parents = self.scan(messages)
        roles = pc.list_flatten(messages).field("role").to_pylist() if any(found) else []
        kinds: list[Counter[str]] = [Counter() for _ in range(n)]
        where: list[dict[str, None]] = [{} for _ in range(n)]
        for i, matches in enumerate(found):
            if matches:
                row = int(parents[i])
                kinds[row].update(m.kind for m in matches)
                where[row][WHERE.get(roles[i], f"a {roles[i]} turn")] = None
        reasons: list[str | None] = []
        counted: list[str | None] = []
        for row_kinds, row_where in zip(kinds, where):
            if not row_kinds:
                reasons.append(None)
                counted.append(None)
                continue
            ordered = [k for k in KINDS if k in row_kinds]
            what = ", ".join(LABELS[k] + (f" ×{row_kinds[k]}" if row_kinds[k] > 1 else "") for k in ordered)
            reasons.append(f"pii: {what} in {' and '.join(row_where)}")
            counted.append(f"pii: {ordered[0]}")
        return Verdict(pa.array(reasons, pa.string()), pa.array(counted, pa.string()))
