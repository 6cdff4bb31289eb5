"""The run report: ``report.html`` in every version — self-contained, no network, no script.

Charts are drawn with matplotlib and inlined as SVG (text as paths, so no font is needed to
read them). Everything is computed from the version folder itself: the kept rows in ``data/``,
the removed rows in ``rejected/``, the stage tables (e.g. dedup ``clusters/``) and the manifest.
For large corpora the histograms read at most ``SAMPLE_ROWS`` rows per side and say so.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow import text

SAMPLE_ROWS = 100_000
SAMPLES_PER_STAGE = 3
_COLORS = {"before": "#9aa7b8", "after": "#2f6f9f", "removed": "#c8553d"}


def render_report(folder: Path, manifest: dict[str, Any]) -> str:
    """The HTML report of the version being written in ``folder``."""
    kept = _read(sorted((folder / "data").glob("*.parquet")))
    removed = _read(sorted((folder / "rejected").glob("*.parquet")))
    before = pa.concat_tables([_canonical(kept), _canonical(removed)], promote_options="default")
    charts = [
        ("Rows through the stages", _funnel_chart(manifest["stages"])),
        *[(title, svg) for title, svg in _mix_charts(before, kept)],
        ("Lengths (characters)", _length_chart(before, kept)),
    ]
    clusters = _read(sorted((folder / "clusters").glob("*.parquet")))
    if clusters.num_rows:
        charts.append(("Duplicate clusters", _cluster_chart(clusters)))
    for mix in sorted((folder / "mix").glob("*.parquet")):
        charts.append(_balance_chart(pq.read_table(mix)))
    if "root_verb" in kept.column_names:
        charts.append(("Instructions by root verb and its object (top 20 verbs)", _verb_noun_chart(kept)))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("winnow", "templates"),
        autoescape=True,  # row text is data, never markup
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.jinja").render(
        m=manifest,
        charts=[(title, svg) for title, svg in charts if svg],
        samples=_removed_samples(removed),
        sampled=max(before.num_rows, kept.num_rows) >= SAMPLE_ROWS,
        config=json.dumps(manifest["config"], indent=2, ensure_ascii=False),
    )


# -- data --------------------------------------------------------------------------------------


def _read(files: list[Path]) -> pa.Table:
    """Up to SAMPLE_ROWS rows from the files, in order (row groups are read until enough)."""
    tables, rows = [], 0
    for f in files:
        pf = pq.ParquetFile(f)
        for group in range(pf.num_row_groups):
            t = pf.read_row_group(group)
            tables.append(t)
            rows += t.num_rows
            if rows >= SAMPLE_ROWS:
                return pa.concat_tables(tables, promote_options="default").slice(0, SAMPLE_ROWS)
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def _canonical(t: pa.Table) -> pa.Table:
    keep = [c for c in ("id", "messages", "task_type", "lang") if c in t.column_names]
    return t.select(keep)


def _column_counts(t: pa.Table, column: str) -> Counter[str]:
    if column not in t.column_names or t.num_rows == 0:
        return Counter()
    values = pc.fill_null(t.column(column).cast(pa.string()), "(none)")
    return Counter({r["values"]: r["counts"] for r in pc.value_counts(values).to_pylist()})


def _lengths(t: pa.Table, role: str) -> np.ndarray:
    if t.num_rows == 0 or "messages" not in t.column_names:
        return np.zeros(0)
    return pc.utf8_length(text.role_text(t.column("messages"), [role])).to_numpy(zero_copy_only=False)


def _removed_samples(removed: pa.Table) -> list[dict[str, Any]]:
    """A few removed rows per stage (the first ones, in source order), with their reasons."""
    if removed.num_rows == 0:
        return []
    out = []
    for stage in dict.fromkeys(removed.column("stage").to_pylist()):
        rows = removed.filter(pc.equal(removed.column("stage"), stage)).slice(0, SAMPLES_PER_STAGE)
        for r in rows.to_pylist():
            turns = r["messages"] or []
            out.append(
                {
                    "stage": stage,
                    "reason": r["reason"],
                    "source": f"{r['source']}#{r['source_index']}",
                    "instruction": _clip(" ".join(m["content"] for m in turns if m["role"] == "user")),
                    "response": _clip(" ".join(m["content"] for m in turns if m["role"] == "assistant")),
                }
            )
    return out


def _clip(s: str, n: int = 300) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# -- charts ------------------------------------------------------------------------------------


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: it is inlined in HTML


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt.subplots(figsize=(width, height))


def _funnel_chart(stages: list[dict[str, Any]]) -> str:
    fig, ax = _figure(7, 0.45 * len(stages) + 0.8)
    names = [s["stage"] for s in stages]
    out = [s["rows_out"] for s in stages]
    gone = [s["removed"] for s in stages]
    y = np.arange(len(stages))[::-1]
    ax.barh(y, out, color=_COLORS["after"], label="kept")
    ax.barh(y, gone, left=out, color=_COLORS["removed"], label="removed")
    for yi, o, g in zip(y, out, gone):
        ax.text(o + g, yi, f"  {o:,} kept" + (f", {g:,} removed" if g else ""), va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlabel("rows")
    ax.set_xlim(0, max([o + g for o, g in zip(out, gone)] + [1]) * 1.35)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _svg(fig)


def _mix_charts(before: pa.Table, after: pa.Table) -> list[tuple[str, str]]:
    charts = []
    for column, title in (("task_type", "Task types, before and after"), ("lang", "Languages, before and after")):
        b, a = _column_counts(before, column), _column_counts(after, column)
        if set(b) <= {"(none)"}:
            continue  # nothing tagged this column yet
        keys = [k for k, _ in (b + a).most_common(20)]
        fig, ax = _figure(7, 0.32 * len(keys) + 0.9)
        y = np.arange(len(keys))[::-1]
        ax.barh(y + 0.2, [b[k] for k in keys], height=0.4, color=_COLORS["before"], label="before")
        ax.barh(y - 0.2, [a[k] for k in keys], height=0.4, color=_COLORS["after"], label="after")
        ax.set_yticks(y, keys)
        ax.set_xlabel("rows")
        ax.legend(loc="lower right", frameon=False)
        charts.append((title, _svg(fig)))
    return charts


def _length_chart(before: pa.Table, after: pa.Table) -> str:
    fig, axes = _figure(8, 2.6)
    axes.remove()
    for i, (role, label) in enumerate((("user", "instructions"), ("assistant", "responses"))):
        ax = fig.add_subplot(1, 2, i + 1)
        lb, la = _lengths(before, role), _lengths(after, role)
        top = max(float(np.percentile(lb, 99)) if len(lb) else 1.0, 10.0)
        bins = np.linspace(0, top, 40)
        ax.hist(np.clip(lb, 0, top), bins=bins, color=_COLORS["before"], label="before")
        ax.hist(np.clip(la, 0, top), bins=bins, color=_COLORS["after"], label="after", alpha=0.85)
        ax.set_title(f"{label} (median {int(np.median(la)) if len(la) else 0} after)", fontsize=9)
        ax.set_xlabel("characters (99th percentile and up in the last bin)")
        ax.spines[["top", "right"]].set_visible(False)
        if i == 0:
            ax.set_ylabel("rows")
            ax.legend(frameon=False)
    return _svg(fig)


def _balance_chart(mix: pa.Table) -> tuple[str, str]:
    """The balance stage's groups: rows before, target and after, with the entropy in the title."""
    meta = {k.decode(): v.decode() for k, v in (mix.schema.metadata or {}).items()}
    rows = mix.to_pylist()
    fig, ax = _figure(7, 0.32 * len(rows) + 0.9)
    y = np.arange(len(rows))[::-1]
    ax.barh(y + 0.2, [r["before"] for r in rows], height=0.4, color=_COLORS["before"], label="before")
    ax.barh(y - 0.2, [r["after"] for r in rows], height=0.4, color=_COLORS["after"], label="after")
    ax.set_yticks(y, [str(r["group"]) for r in rows])
    ax.set_xlabel("rows")
    ax.legend(loc="lower right", frameon=False)
    entropy = ""
    before, after = _meta_number(meta, "entropy_before"), _meta_number(meta, "entropy_after")
    if before is not None and after is not None:
        entropy = f" — entropy {before:.2f} → {after:.2f} bits"
    return f"Balanced mix{entropy}", _svg(fig)


def _meta_number(meta: dict[str, str], key: str) -> float | None:
    try:
        return float(meta[key])
    except (KeyError, ValueError):
        return None


def _verb_noun_chart(kept: pa.Table) -> str:
    """The self-instruct view: the most common root verbs, each split by its top objects."""
    pairs = Counter(
        (v, n) for v, n in zip(kept.column("root_verb").to_pylist(), kept.column("root_noun").to_pylist()) if v
    )
    verbs: Counter[str] = Counter()
    for (v, _), c in pairs.items():
        verbs[v] += c
    top = [v for v, _ in verbs.most_common(20)]
    fig, ax = _figure(8, 0.34 * len(top) + 1.0)
    y = np.arange(len(top))[::-1]
    left = np.zeros(len(top))
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    for slot in range(4):  # the four most common objects of each verb, then the rest
        widths, labels = [], []
        for v in top:
            nouns = sorted(((c, n) for (vv, n), c in pairs.items() if vv == v and n), reverse=True)
            widths.append(nouns[slot][0] if slot < len(nouns) else 0)
            labels.append(nouns[slot][1] if slot < len(nouns) else "")
        ax.barh(y, widths, left=left, color=palette(slot), height=0.7)
        for yi, x, w, label in zip(y, left, widths, labels):
            if w and label:
                ax.text(x + w / 2, yi, label, ha="center", va="center", fontsize=7, color="white")
        left += widths
    rest = np.array([verbs[v] for v in top]) - left
    ax.barh(y, rest, left=left, color=_COLORS["before"], height=0.7)
    ax.set_yticks(y, top)
    ax.set_xlabel("instructions (coloured: the verb's four most common objects; grey: the rest)")
    return _svg(fig)


def _cluster_chart(clusters: pa.Table) -> str:
    sizes = Counter(Counter(clusters.column("cluster").to_pylist()).values())
    keys = sorted(sizes)
    fig, ax = _figure(min(7, 1.2 + 0.35 * len(keys)), 2.4)
    ax.bar([str(k) for k in keys], [sizes[k] for k in keys], color=_COLORS["after"], width=0.6)
    ax.set_xlabel("rows in the cluster")
    ax.set_ylabel("clusters")
    if len(keys) > 20:
        ax.set_xticks(ax.get_xticks()[:: max(1, len(keys) // 20)])
    return _svg(fig)
