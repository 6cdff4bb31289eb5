"""The run report: ``report.html`` in every version — self-contained, no network, no script.

Charts are drawn with matplotlib and inlined as SVG (text as paths, so no font is needed to
read them). Everything is computed from the version folder itself: the kept rows in ``data/``,
the removed rows in ``rejected/``, the stage tables (e.g. dedup ``clusters/``) and the manifest.
The rows are read one batch at a time and only the columns the charts need, so a report costs
the same memory for any corpus size; counts are exact, and the length histograms use the first
``LENGTH_ROWS`` rows of each side (and say so).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow import text

#: rows per side whose lengths feed the histograms (4 bytes a row and role)
LENGTH_ROWS = 1_000_000
SAMPLES_PER_STAGE = 3
_COLORS = {"before": "#9aa7b8", "after": "#2f6f9f", "removed": "#c8553d"}
_BATCH_ROWS = 10_000
_ROLES = ("user", "assistant")


def render_report(folder: Path, manifest: dict[str, Any]) -> str:
    """The HTML report of the version being written in ``folder``."""
    kept = _tally(sorted((folder / "data").glob("*.parquet")), want_samples=False)
    removed = _tally(sorted((folder / "rejected").glob("*.parquet")), want_samples=True)
    before = kept.plus(removed)
    charts = [
        ("Rows through the stages", _funnel_chart(manifest["stages"])),
        *[(title, svg) for title, svg in _mix_charts(before, kept)],
        ("Lengths (characters)", _length_chart(before, kept)),
    ]
    clusters = _cluster_sizes(sorted((folder / "clusters").glob("*.parquet")))
    if clusters:
        charts.append(("Duplicate clusters", _cluster_chart(clusters)))
    for mix in sorted((folder / "mix").glob("*.parquet")):
        charts.append(_balance_chart(pq.read_table(mix)))
    if kept.verb_nouns:
        charts.append(("Instructions by root verb and its object (top 20 verbs)", _verb_noun_chart(kept.verb_nouns)))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("winnow", "templates"),
        autoescape=True,  # row text is data, never markup
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.jinja").render(
        m=manifest,
        charts=[(title, svg) for title, svg in charts if svg],
        samples=removed.samples,
        length_rows=LENGTH_ROWS if max(before.rows, kept.rows) > LENGTH_ROWS else None,
        config=json.dumps(manifest["config"], indent=2, ensure_ascii=False),
    )


# -- data --------------------------------------------------------------------------------------


@dataclass
class _Tally:
    """What the charts need from one side of a run (kept or removed rows)."""

    rows: int = 0
    counts: dict[str, Counter[str]] = field(default_factory=lambda: {"task_type": Counter(), "lang": Counter()})
    #: per role, the lengths of the first LENGTH_ROWS rows, in batches
    lengths: dict[str, list[np.ndarray]] = field(default_factory=lambda: {r: [] for r in _ROLES})
    verb_nouns: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def plus(self, other: _Tally) -> _Tally:
        return _Tally(
            self.rows + other.rows,
            {c: self.counts[c] + other.counts[c] for c in self.counts},
            {r: self.lengths[r] + other.lengths[r] for r in _ROLES},
        )

    def length(self, role: str) -> np.ndarray:
        return np.concatenate(self.lengths[role]) if self.lengths[role] else np.zeros(0, np.int32)


#: what the charts read, and what the samples of removed rows add
_COLUMNS = ("messages", "task_type", "lang", "root_verb", "root_noun")
_SAMPLE_COLUMNS = ("stage", "reason", "source", "source_index")


def _tally(files: list[Path], want_samples: bool) -> _Tally:
    """One pass over ``files``, a batch of rows and only the needed columns at a time."""
    tally = _Tally()
    samples: dict[str, list[dict[str, Any]]] = {}
    wanted = _COLUMNS + _SAMPLE_COLUMNS if want_samples else _COLUMNS
    for f in files:
        pf = pq.ParquetFile(f)
        columns = [c for c in wanted if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            names = batch.schema.names
            for column, counter in tally.counts.items():
                if column in names:
                    counter.update(_value_counts(batch.column(column)))
            if tally.rows < LENGTH_ROWS and "messages" in names:
                head = batch.column("messages").slice(0, LENGTH_ROWS - tally.rows)
                for role in _ROLES:
                    tally.lengths[role].append(
                        pc.utf8_length(text.role_text(head, [role])).to_numpy(zero_copy_only=False).astype(np.int32)
                    )
            if "root_verb" in names and "root_noun" in names:
                pairs = pa.table({"v": batch.column("root_verb"), "n": batch.column("root_noun")})
                named = pairs.filter(pc.fill_null(pc.not_equal(pairs["v"], ""), False))
                counted = named.group_by(["v", "n"]).aggregate([([], "count_all")])
                tally.verb_nouns.update(
                    dict(zip(zip(counted["v"].to_pylist(), counted["n"].to_pylist()), counted["count_all"].to_pylist()))
                )
            if want_samples and "stage" in names:
                _removed_samples(batch, samples)
            tally.rows += batch.num_rows
    tally.samples = [r for rows in samples.values() for r in rows]
    return tally


def _value_counts(values: pa.Array) -> Counter[str]:
    values = pc.fill_null(values.cast(pa.string()), "(none)")
    return Counter({r["values"]: r["counts"] for r in pc.value_counts(values).to_pylist()})


def _removed_samples(batch: pa.RecordBatch, samples: dict[str, list[dict[str, Any]]]) -> None:
    """Add the batch's first removed rows of each stage (source order) to ``samples``, up to
    SAMPLES_PER_STAGE per stage."""
    stages = batch.column("stage")
    for stage in pc.unique(stages).to_pylist():
        taken = samples.setdefault(stage, [])
        need = SAMPLES_PER_STAGE - len(taken)
        if need <= 0:
            continue
        rows = batch.filter(pc.equal(stages, stage)).slice(0, need).to_pylist()
        for r in rows:
            turns = r.get("messages") or []
            taken.append(
                {
                    "stage": stage,
                    "reason": r.get("reason"),
                    "source": f"{r.get('source')}#{r.get('source_index')}",
                    "instruction": _clip(" ".join(m["content"] or "" for m in turns if m["role"] == "user")),
                    "response": _clip(" ".join(m["content"] or "" for m in turns if m["role"] == "assistant")),
                }
            )


def _cluster_sizes(files: list[Path]) -> Counter[int]:
    """How many duplicate clusters have each size (a cluster's rows share its ``cluster`` id)."""
    if not files:
        return Counter()
    ids = pa.concat_arrays([c for f in files for c in pq.read_table(f, columns=["cluster"]).column(0).chunks])
    sizes, clusters = np.unique(pc.value_counts(ids).field("counts").to_numpy(), return_counts=True)
    return Counter(dict(zip(sizes.tolist(), clusters.tolist())))


def _clip(s: str, n: int = 300) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# -- charts ------------------------------------------------------------------------------------


def _label(value: Any, n: int = 40) -> str:
    """A value from the data as a chart label: one line, no control characters (no font has a
    glyph for them), clipped."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    return _clip(text, n)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: it is inlined in HTML


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "path",
            "svg.hashsalt": "winnow",  # clip-path ids from content, not random: same charts, same bytes
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
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


def _mix_charts(before: _Tally, after: _Tally) -> list[tuple[str, str]]:
    charts = []
    for column, title in (("task_type", "Task types, before and after"), ("lang", "Languages, before and after")):
        b, a = before.counts[column], after.counts[column]
        if set(b) <= {"(none)"}:
            continue  # nothing tagged this column yet
        keys = [k for k, _ in (b + a).most_common(20)]
        fig, ax = _figure(7, 0.32 * len(keys) + 0.9)
        y = np.arange(len(keys))[::-1]
        ax.barh(y + 0.2, [b[k] for k in keys], height=0.4, color=_COLORS["before"], label="before")
        ax.barh(y - 0.2, [a[k] for k in keys], height=0.4, color=_COLORS["after"], label="after")
        ax.set_yticks(y, [_label(k) for k in keys])
        ax.set_xlabel("rows")
        ax.legend(loc="lower right", frameon=False)
        charts.append((title, _svg(fig)))
    return charts


def _length_chart(before: _Tally, after: _Tally) -> str:
    fig, axes = _figure(8, 2.6)
    axes.remove()
    for i, (role, label) in enumerate((("user", "instructions"), ("assistant", "responses"))):
        ax = fig.add_subplot(1, 2, i + 1)
        lb, la = before.length(role), after.length(role)
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
    ax.set_yticks(y, [_label(r["group"]) for r in rows])
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


def _verb_noun_chart(pairs: Counter[tuple[str, str | None]]) -> str:
    """The self-instruct view: the most common root verbs, each split by its top objects."""
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
            labels.append(_label(nouns[slot][1]) if slot < len(nouns) else "")
        ax.barh(y, widths, left=left, color=palette(slot), height=0.7)
        for yi, x, w, label in zip(y, left, widths, labels):
            if w and label:
                ax.text(x + w / 2, yi, label, ha="center", va="center", fontsize=7, color="white")
        left += widths
    rest = np.array([verbs[v] for v in top]) - left
    ax.barh(y, rest, left=left, color=_COLORS["before"], height=0.7)
    ax.set_yticks(y, [_label(v) for v in top])
    ax.set_xlabel("instructions (coloured: the verb's four most common objects; grey: the rest)")
    return _svg(fig)


def _cluster_chart(sizes: Counter[int]) -> str:
    keys = sorted(sizes)
    fig, ax = _figure(min(7, 1.2 + 0.35 * len(keys)), 2.4)
    ax.bar([str(k) for k in keys], [sizes[k] for k in keys], color=_COLORS["after"], width=0.6)
    ax.set_xlabel("rows in the cluster")
    ax.set_ylabel("clusters")
    if len(keys) > 20:
        ax.set_xticks(ax.get_xticks()[:: max(1, len(keys) // 20)])
    return _svg(fig)
