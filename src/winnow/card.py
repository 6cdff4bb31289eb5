"""The dataset card (``README.md`` of a version), in the shape of a Hugging Face dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("winnow", "templates"),
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render_card(manifest: dict[str, Any], corpus_path: str | Path | None = None) -> str:
    """Render the card for a manifest (the facts in words and tables)."""
    counts = manifest["counts"]
    total = counts["train"] + counts["validation"]
    inputs = [
        {
            "name": f.get("source") or f.get("path") or "input",
            "format": f.get("format") or "",
            "rows": f.get("rows_read"),
            "sha256": f.get("sha256") or item.get("fingerprint"),
        }
        for item in manifest["inputs"]
        for f in item.get("files") or [{}]
    ]
    languages = sorted({x for x in manifest.get("languages", []) if x})
    licenses = sorted({f["license"] for i in manifest["inputs"] for f in i.get("files") or [] if f.get("license")})
    return (
        _environment()
        .get_template("dataset_card.md.jinja")
        .render(
            m=manifest,
            inputs=inputs,
            splits=["train", "validation"] if counts["validation"] else ["train"],
            languages=languages,
            license=licenses[0] if len(licenses) == 1 else None,
            size_category=_size_category(total),
            config_yaml=yaml.safe_dump(manifest["config"], sort_keys=False, allow_unicode=True),
            corpus_path=str(corpus_path or manifest["config"].get("output") or "."),
        )
    )


def _size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "n>1M"
