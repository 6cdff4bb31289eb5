"""Row filters: each answers, per row, keep (null) or the reason to drop."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from winnow import text
from winnow.stages.base import Filter, Verdict, register


def measure(values: pa.Array, unit: str) -> pa.Array:
    """Length of each string in ``unit``, ignoring leading and trailing whitespace."""
    values = pc.utf8_trim_whitespace(values)
    if unit == "words":
        return pc.list_value_length(pc.utf8_split_whitespace(values))
    return pc.utf8_length(values)


@register
class LengthFilter(Filter):
    """Drop rows whose instruction or response is shorter or longer than the limits.

    The instruction is every user turn, the response every assistant turn, joined. Whitespace
    at the ends does not count, so a response of spaces has length 0. A limit left null is off.

    Args:
        min_instruction: fewest units in the instruction.
        max_instruction: most units in the instruction.
        min_response: fewest units in the response (1 drops empty answers).
        max_response: most units in the response.
        unit: ``chars`` or ``words`` (whitespace-separated; text without spaces, such as
            Chinese, has few words: measure it in chars).

    >>> LengthFilter(min_response=2, max_response=4000)
    LengthFilter(min_instruction=None, max_instruction=None, min_response=2, max_response=4000, unit='chars')
    """

    name = "length"

    def __init__(
        self,
        min_instruction: int | None = None,
        max_instruction: int | None = None,
        min_response: int | None = 1,
        max_response: int | None = None,
        unit: Literal["chars", "words"] = "chars",
    ) -> None:
        self.min_instruction = min_instruction
        self.max_instruction = max_instruction
        self.min_response = min_response
        self.max_response = max_response
        self.unit = unit

    def reasons(self, batch: pa.Table) -> Verdict:
        messages = batch.column("messages")
        n = batch.num_rows
        reasons = pa.nulls(n, pa.string())
        kinds = pa.nulls(n, pa.string())
        # Checked in reverse order of priority, so the first rule a row breaks is the one named.
        checks = [
            ("instruction", "user", self.max_instruction, pc.greater, "more than", "too long"),
            ("instruction", "user", self.min_instruction, pc.less, "fewer than", "too short"),
            ("response", "assistant", self.max_response, pc.greater, "more than", "too long"),
            ("response", "assistant", self.min_response, pc.less, "fewer than", "too short"),
        ]
        for part, role, limit, compare, words, kind in checks:
            if limit is None:
                continue
            size = measure(text.role_text(messages, [role]), self.unit)
            bad = compare(size, limit)
            why = pc.binary_join_element_wise(
                f"{part} has ", size.cast(pa.string()), f" {self.unit}, {words} {limit}", ""
            )
            reasons = pc.if_else(bad, why, reasons)
            kinds = pc.if_else(bad, pa.scalar(f"{part} {kind}"), kinds)
        return Verdict(reasons, kinds)
