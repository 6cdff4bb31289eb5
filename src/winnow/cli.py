"""The ``winnow`` command: a thin layer over the library.

Errors the user can fix print as one line and exit 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winnow import __version__
from winnow.corpus import parse_ref
from winnow.errors import WinnowError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="winnow")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option("-v", "--verbose", count=True, help="Log what winnow decides (-v) or everything (-vv).")
def cli(debug: bool, verbose: int) -> None:
    """Curate instruction-tuning data into a clean, versioned Parquet corpus.

    \b
    Example:
      winnow run pipelines/quickstart.yaml
      winnow inspect corpus/quickstart@v1
    """
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)])


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Corpus folder to write versions to (replaces the pipeline's `output:`).",
)
@click.option("--workers", "-w", type=click.IntRange(min=1), help="Worker processes [default: all cores].")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows per batch; the output is the same for any value.",
)
@click.option("--force", is_flag=True, help="Write a new version even if nothing changed.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def run(
    pipeline: Path, output: Path | None, workers: int | None, batch_size: int, force: bool, no_progress: bool
) -> None:
    """Run a pipeline YAML and write a new corpus version.

    \b
    Example:
      winnow run pipelines/quickstart.yaml --output corpus/try --workers 2
    """
    from winnow.pipeline import Pipeline

    p = Pipeline.from_yaml(pipeline)
    if output is not None:
        p.output = output
    started = time.perf_counter()
    result = p.run(
        workers=workers,
        batch_size=batch_size,
        force=force,
        progress=not no_progress and sys.stderr.isatty(),
    )
    elapsed = time.perf_counter() - started
    if result.up_to_date:
        out.print(
            f"[bold]up to date[/]: {result.path} already holds this pipeline's output "
            f"(fingerprint {result.fingerprint[:12]}); nothing written. Use --force to write anyway."
        )
        _print_trained(result.trained)
        return
    for source in result.sources:
        d = source.describe()
        for f in d.get("files", []):
            why = f" ({f['format_reason']})" if f.get("format_reason") else ""
            err.print(
                f"[dim]input[/] {f.get('path')}: {f.get('file_type')}, format {f.get('format')}{why}, "
                f"{f.get('rows_read') or 0:,} rows"
            )
    out.print(funnel_table([s.to_dict() for s in result.stats], title=f"{p.name}"))
    if result.corpus is not None and result.version is not None:
        m = result.corpus.manifest(result.version)
        c = m["counts"]
        out.print(
            f"[bold green]wrote[/] {result.path}  ({c['train']:,} train, {c['validation']:,} validation, "
            f"{c['rejected']:,} rejected) in {elapsed:.1f} s"
        )
    _print_trained(result.trained)


def _print_trained(trained: Any) -> None:
    """One line for the ``train:`` section of a pipeline, when it ran."""
    if trained is None:
        return
    loss = (
        f"validation loss {trained.eval_loss_initial:.3f} → {trained.eval_loss_final:.3f}"
        if trained.eval_loss_initial is not None and trained.eval_loss_final is not None
        else f"train loss {trained.train_loss:.3f}"
    )
    out.print(f"[bold green]trained[/] {trained.steps} steps, {loss}; checkpoint in {escape(str(trained.output))}")


@cli.command()
@click.argument("name", required=False)
def stages(name: str | None) -> None:
    """List the registered stages, or one stage's parameters.

    \b
    Example:
      winnow stages
      winnow stages length
    """
    from winnow.stages.base import registry, stage_class

    if name:
        cls = stage_class(name)
        table = Table(title=f"{cls.name} ({cls.kind} stage) — {_first_line(cls.__doc__)}", title_justify="left")
        for col in ("parameter", "type", "default", "meaning"):
            table.add_column(col, overflow="fold")
        for p in cls.params():
            table.add_row(p.name, p.annotation, repr(p.default), p.doc)
        out.print(table)
        return
    table = Table(title="stages (use one in a pipeline as `- NAME: {params}`)", title_justify="left")
    for col in ("stage", "kind", "parameters", "what it does"):
        table.add_column(col, overflow="fold")
    for stage_name, cls in registry().items():
        params = ", ".join(f"{p.name}={p.default!r}" for p in cls.params())
        table.add_row(stage_name, cls.kind, params, _first_line(cls.__doc__))
    out.print(table)


@cli.command()
@click.argument("corpus")
@click.option("--rows", "-n", type=click.IntRange(min=0), default=3, show_default=True, help="Rows to show (a page).")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Which page of rows.")
@click.option("--rejected", is_flag=True, help="Show removed rows with their stage and reason.")
@click.option("--stage", help="With --rejected: only rows this stage removed.")
@click.option("--reason", help="With --rejected: only rows whose reason contains this text.")
@click.option("--where", help="Only rows for which this expression holds, e.g. \"task_type == 'code'\".")
@click.option("--sample", type=click.IntRange(min=1), help="A seeded random sample of this many rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the facts and rows as JSON for scripts.")
def inspect(
    corpus: str,
    rows: int,
    page: int,
    rejected: bool,
    stage: str | None,
    reason: str | None,
    where: str | None,
    sample: int | None,
    seed: int,
    as_json: bool,
) -> None:
    """Show a corpus version: counts, schema, funnel and rows, kept or removed.

    CORPUS is a corpus folder, optionally with a version: corpus/quickstart@v2.

    \b
    Example:
      winnow inspect corpus/quickstart@v1 --rows 5
      winnow inspect corpus/quickstart --rejected --stage minhash_dedup --rows 10 --page 2
      winnow inspect corpus/quickstart --where "len(response) < 20" --sample 5 --seed 1 --json
    """
    import random

    import pyarrow.compute as pc

    from winnow.corpus import Corpus
    from winnow.errors import ConfigError

    path, version = parse_ref(corpus)
    c = Corpus(path)
    m = c.manifest(version)
    if (stage or reason) and not rejected:
        raise ConfigError("--stage and --reason filter removed rows: add --rejected")
    table = c.rejected(m["version"], stage=stage, format="arrow") if rejected else c.load(m["version"], format="arrow")
    if reason:
        table = table.filter(pc.match_substring(table.column("reason"), reason, ignore_case=True))
    if where:
        table = select_rows(table, where)
    matching = table.num_rows
    if sample:
        table = table.take(sorted(random.Random(seed).sample(range(matching), min(sample, matching))))
    else:
        table = table.slice((page - 1) * rows, rows)
    shown = table.to_pylist()
    if as_json:
        facts = {k: m[k] for k in ("version", "fingerprint", "counts", "schema", "stages")}
        click.echo(
            json.dumps({**facts, "matching": matching, "rows": shown}, ensure_ascii=False, indent=2, default=str)
        )
        return
    out.print(
        f"[bold]{escape(str(path))}[/] @ {m['version']}  (of {', '.join(c.versions())}; created {m['created']}, "
        f"parent {m.get('parent') or '—'}, fingerprint {m['fingerprint'][:12]})"
    )
    cnt = m["counts"]
    out.print(
        f"rows: {cnt['train']:,} train, {cnt['validation']:,} validation, {cnt['rejected']:,} rejected "
        f"of {cnt['input']:,} read"
    )
    if not (rejected or where or sample):
        out.print("schema: " + ", ".join(f"{f['name']}: {f['type']}" for f in m["schema"]))
        out.print(funnel_table(m["stages"], title="funnel"))
    out.print(f"[dim]{matching:,} {'removed rows' if rejected else 'rows'} match; showing {len(shown)}[/]")
    for row in shown:
        out.print(_row_panel(row))


@cli.command()
@click.argument("corpus")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
def log(corpus: str, as_json: bool) -> None:
    """The versions of a corpus, newest first, with what changed in the config.

    \b
    Example:
      winnow log corpus/quickstart
    """
    from winnow import history
    from winnow.corpus import Corpus

    entries = history.log(Corpus(parse_ref(corpus)[0]))
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], ensure_ascii=False, indent=2))
        return
    table = Table(title=corpus, title_justify="left")
    for col in ("version", "created", "fingerprint", "parent", "rows", "removed", "changes since parent"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            e.version,
            e.created,
            e.fingerprint[:12],
            e.parent or "—",
            f"{e.rows:,}",
            f"{e.rejected:,}",
            escape("\n".join(e.changes)),
        )
    out.print(table)


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--show", type=click.IntRange(min=0), default=0, help="Sample rows of each kind (added, removed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON.")
def diff(a: str, b: str, show: int, seed: int, as_json: bool) -> None:
    """What changed between two versions: rows (by id), config, funnel, task and language mix.

    A and B are corpus@version references; they may be versions of different pipelines.

    \b
    Example:
      winnow diff corpus/quickstart@v1 corpus/quickstart@v2 --show 3
    """
    from winnow import history

    d = history.diff(a, b, show=show, seed=seed)
    if as_json:
        click.echo(json.dumps(d.to_dict(), ensure_ascii=False, indent=2, default=str))
        return
    out.print(
        f"[bold]{escape(d.a)}[/] → [bold]{escape(d.b)}[/]: [green]+{len(d.added):,} added[/], "
        f"[red]-{len(d.removed):,} removed[/], {d.unchanged:,} unchanged"
    )
    out.print("config: " + escape("; ".join(d.config)))
    table = Table(title="funnel", title_justify="left")
    for col in ("stage", "A out", "A removed", "B out", "B removed", "B top reasons"):
        table.add_column(col, overflow="fold")
    for stage_name, x, y in d.funnel:
        cells = [f"{v[k]:,}" if v else "—" for v in (x, y) for k in ("rows_out", "removed")]
        reasons = "; ".join(f"{r} ({n:,})" for r, n in (y or {}).get("reasons", {}).items())
        table.add_row(stage_name, *cells, escape(reasons))
    out.print(table)
    for column, mix in d.mix.items():
        if set(mix) <= {"None"}:
            continue  # nothing tagged this column
        t = Table(title=f"{column} mix", title_justify="left")
        for col in (column, "A", "B", "change"):
            t.add_column(col, justify="left" if col == column else "right")
        for value, (na, nb) in list(mix.items())[:15]:
            t.add_row(escape(value), f"{na:,}", f"{nb:,}", f"{nb - na:+,}")
        out.print(t)
    for kind, rows in d.samples.items():
        for row in rows:
            note = f"  [italic]{escape(row['note'])}[/]" if row.get("note") else ""
            out.print(f"[bold]{kind}[/]{note}\n" + _row_panel(row))


@cli.command()
@click.argument("corpus")
@click.argument("row_id")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def trace(corpus: str, row_id: str, as_json: bool) -> None:
    """A row's history: its source file and position, and in each version whether it was kept
    (and in which split) or which stage removed it and why.

    \b
    Example:
      winnow trace corpus/quickstart 3ec31ff0168780dc1a70df9b66be1250
    """
    from winnow import history

    row, steps = history.trace(corpus, row_id)
    if as_json:
        payload = {"row": row, "versions": [s.__dict__ for s in steps]}
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
        return
    assert row is not None
    out.print(_row_panel({k: v for k, v in row.items() if k not in ("stage", "reason")}))
    table = Table(title="in each version", title_justify="left")
    for col in ("version", "where", "stage", "reason"):
        table.add_column(col, overflow="fold")
    for s in steps:
        table.add_row(s.version, s.where, s.stage or "", escape(s.reason or ""))
    out.print(table)


def select_rows(table: Any, where: str) -> Any:
    """Rows for which a ``--where`` expression holds (the sandboxed syntax of the ``expression`` stage)."""
    import pyarrow.compute as pc

    from winnow.stages.filters import ExpressionFilter

    verdict = ExpressionFilter(keep=where).reasons(table)
    return table.filter(pc.is_null(verdict.reasons))


@cli.command()
@click.argument("corpus")
@click.argument("out_dir", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "to",
    required=True,
    metavar="FORMAT",
    help="trl, axolotl, llama-factory, openai, alpaca, sharegpt or hf.",
)
@click.option(
    "--layout",
    help="trl: messages (default), prompt-completion or text; llama-factory: sharegpt (default) or alpaca.",
)
@click.option("--file-format", help="trl: jsonl (default) or parquet.")
@click.option("--name", help="llama-factory: the dataset's name in dataset_info.json [default: the corpus folder's].")
@click.option(
    "--chat-template",
    help="axolotl: the config's chat_template [default: tokenizer_default_fallback_chatml].",
)
@click.option("--force", is_flag=True, help="Write into a non-empty OUT, replacing the files of an earlier export.")
def export(
    corpus: str,
    out_dir: Path,
    to: str,
    layout: str | None,
    file_format: str | None,
    name: str | None,
    chat_template: str | None,
    force: bool,
) -> None:
    """Write a corpus version into the folder OUT in the shape a trainer reads.

    CORPUS is a corpus folder, optionally with a version: corpus/quickstart@v2. OUT gets
    train/validation files named the way the target expects, export.json (corpus, version,
    fingerprint, counts) and, for rows the target cannot hold, rejected.jsonl with the reason.

    \b
    Example:
      winnow export corpus/quickstart@v1 --to trl out/trl
      winnow export corpus/quickstart --to llama-factory out/lf --layout alpaca
      winnow export corpus/quickstart --to openai out/openai
    """
    from winnow.export import export_corpus, load_hint

    result = export_corpus(
        corpus,
        out_dir,
        to,
        layout=layout,
        file_format=file_format,
        name=name,
        chat_template=chat_template,
        force=force,
    )
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    c = result.counts
    rejected = f", {c['rejected']:,} rejected" if c["rejected"] else ""
    out.print(
        f"[bold green]wrote[/] {escape(str(result.path))}  ({result.format}/{result.layout}: {c['train']:,} train, "
        f"{c['validation']:,} validation{rejected}) from {escape(str(result.corpus))}@{result.version} "
        f"(fingerprint {result.fingerprint[:12]})",
        soft_wrap=True,
    )
    out.print("files: " + ", ".join(f["path"] for f in result.files) + ", export.json", soft_wrap=True)
    out.print(escape(load_hint(result)), soft_wrap=True)


@cli.command()
@click.argument("corpus")
@click.option(
    "--model", "-m", required=True, help="A local Hugging Face causal-LM folder, or 'tiny' (a small Llama built here)."
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the checkpoint, metrics.jsonl, loss.png and train_run.json.",
)
@click.option(
    "--template",
    help="Chat template: a built-in (chatml, llama-3, …) or a file [default: the tokenizer's own; tiny: chatml].",
)
@click.option(
    "--max-len",
    type=click.IntRange(min=8),
    default=1024,
    show_default=True,
    help="Longest sequence in tokens; longer rows are dropped and counted.",
)
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the train split [default: 1].")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps (instead of --epochs).")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help="Peak learning rate [default: 1e-3 for tiny, 2e-5 otherwise].",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Sequences per micro-batch."
)
@click.option(
    "--grad-accum", type=click.IntRange(min=1), default=1, show_default=True, help="Micro-batches per optimizer step."
)
@click.option("--packing", is_flag=True, help="Pack rows into --max-len sequences, attention kept within each row.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds init, shuffling and the tiny tokenizer.")
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    help="Validation loss every N steps [default: ~10 times a run; 0: start and end].",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=0.03,
    show_default=True,
    help="Warmup: a fraction of the steps (< 1) or a number of steps.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to train (auto: cuda when available, with bf16 autocast).",
)
@click.option(
    "--attn",
    "attn_implementation",
    type=click.Choice(["sdpa", "eager", "flash_attention_2"]),
    default="sdpa",
    show_default=True,
    help="Attention kernel.",
)
@click.option("--force", is_flag=True, help="Replace an earlier run in --output.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train(
    corpus: str,
    model: str,
    output: Path,
    template: str | None,
    max_len: int,
    epochs: float | None,
    steps: int | None,
    lr: float | None,
    batch_size: int,
    grad_accum: int,
    packing: bool,
    seed: int,
    eval_every: int | None,
    warmup: float,
    device: str,
    attn_implementation: str,
    force: bool,
    no_progress: bool,
) -> None:
    """Fine-tune a causal LM on a corpus version (loss on assistant tokens only).

    CORPUS is a corpus folder, optionally with a version: corpus/quickstart@v2. OUTPUT gets a
    checkpoint that AutoModelForCausalLM.from_pretrained loads, metrics.jsonl, loss.png and
    train_run.json (corpus version and fingerprint, config, row and token counts). Needs
    pip install 'winnow[train]'. Nothing is downloaded.

    \b
    Example:
      winnow train corpus/quickstart --model tiny --output runs/tiny --steps 50
      winnow train corpus/quickstart@v1 --model models/my-llama --output runs/ft --epochs 2 --packing
    """
    from winnow.errors import ConfigError
    from winnow.training import TrainConfig
    from winnow.training import train as run_training

    if epochs is not None and steps is not None:
        raise ConfigError("give --epochs or --steps, not both")
    config = TrainConfig(
        corpus=corpus,
        model=model,
        output=str(output),
        template=template,
        max_len=max_len,
        epochs=1.0 if epochs is None else epochs,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        packing=packing,
        seed=seed,
        eval_every=eval_every,
        warmup=warmup,
        device=device,
        attn_implementation=attn_implementation,
        force=force,
    )
    result = run_training(config=config, progress=not no_progress and sys.stderr.isatty())
    r, c = result.run["results"], result.counts["train"]
    dropped = ", ".join(
        f"{c[k]:,} {what}"
        for k, what in (
            ("dropped_too_long", f"longer than {max_len} tokens"),
            ("dropped_no_trainable", "with no assistant token"),
            ("dropped_template_error", "rejected by the template"),
            ("dropped_extra_bos", "with a BOS inside"),
        )
        if c[k]
    )
    out.print(
        f"rows: {c['used']:,} of {c['rows']:,} trained on"
        + (f" (dropped {dropped})" if dropped else "")
        + f"; {c['trained_tokens']:,} of {c['total_tokens']:,} tokens are assistant tokens",
        soft_wrap=True,
    )
    losses = f"train loss {r['train_loss_first']:.3f} → {r['train_loss_last']:.3f}"
    if result.eval_loss_initial is not None and result.eval_loss_final is not None:
        losses += f", validation loss {result.eval_loss_initial:.3f} → {result.eval_loss_final:.3f}"
    out.print(
        f"{result.steps:,} steps: {losses}; {result.tokens_per_second:,.0f} tokens/s "
        f"({result.trained_tokens_per_second:,.0f} trained tokens/s)",
        soft_wrap=True,
    )
    cv = result.run["corpus"]
    out.print(
        f"[bold green]wrote[/] {escape(str(result.output))} from {escape(cv['path'])}@{cv['version']} "
        f"(fingerprint {str(cv['fingerprint'])[:12]}) in {result.seconds:.1f} s",
        soft_wrap=True,
    )


def funnel_table(stats: Sequence[dict[str, Any]], title: str = "") -> Table:
    """Rows in and out per stage, time, and the top reasons for removal."""
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    for col in ("in", "out", "removed", "time"):
        table.add_column(col, justify="right")
    table.add_column("top reasons", overflow="fold")
    changed = any(s.get("events") for s in stats)
    if changed:
        table.add_column("changed rows", overflow="fold")
    for s in stats:
        reasons = list(s.get("reasons", {}).items())[:3]
        events = ["; ".join(f"{r} ({n:,})" for r, n in list(s.get("events", {}).items())[:3])] if changed else []
        table.add_row(
            s["stage"],
            f"{s['rows_in']:,}",
            f"{s['rows_out']:,}",
            f"{s['removed']:,}",
            f"{s['seconds']:.2f}s",
            "; ".join(f"{r} ({n:,})" for r, n in reasons),
            *events,
        )
    return table


def _row_panel(row: dict[str, Any]) -> str:
    turns = "\n".join(f"  [bold]{m['role']}[/]: {escape(_clip(m['content']))}" for m in row.get("messages") or [])
    why = f"\n  [red]{escape(row['stage'])}: {escape(row['reason'])}[/]" if row.get("reason") else ""
    return f"[dim]{row['id']}  {escape(str(row.get('source')))}#{row.get('source_index')}[/]{why}\n{turns}"


def _clip(text: str, n: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _first_line(doc: str | None) -> str:
    """The first paragraph of a docstring, as one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _watch_ctrl_c()
    try:
        cli.main(args=args, prog_name="winnow", standalone_mode=False)
        # the command has done its work and said so: a Ctrl-C while the interpreter exits would
        # only turn a success into exit status 130
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except click.exceptions.Abort as e:
        # click turns Ctrl-C into Abort (after a blank line closing the terminal's ^C)
        if isinstance(e.__cause__, KeyboardInterrupt):
            _interrupted(args)
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except WinnowError as e:
        if debug:
            raise
        if _ctrl_c_seen:
            _interrupted(args)
        err.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted(args)
    except Exception:
        if _ctrl_c_seen and not debug:
            _interrupted(args)
        raise


#: set by the SIGINT handler: once Ctrl-C was pressed, whatever error ends the command is its
#: consequence (a KeyboardInterrupt inside a C extension's import can surface as an ImportError)
_ctrl_c_seen = False


def _watch_ctrl_c() -> None:
    def on_sigint(signum: int, frame: Any) -> None:
        global _ctrl_c_seen
        _ctrl_c_seen = True
        signal.default_int_handler(signum, frame)

    with contextlib.suppress(ValueError):  # not the main thread (an embedding): Python's handler stays
        signal.signal(signal.SIGINT, on_sigint)


def _interrupted(args: Sequence[str]) -> None:
    """Say what Ctrl-C left behind, and leave at once.

    Drafts and locks were released while the exception unwound. The interpreter's own exit
    handlers are skipped: with a process pool whose workers were just ended, concurrent.futures'
    handler can wait forever or print a traceback. What they would have done that still matters —
    releasing the pool's named semaphores — is done here.
    """
    from winnow.corpus import published_here

    command = next((a for a in args if not a.startswith("-")), "")
    written = published_here()
    if written:  # e.g. a pipeline's `train:` step, after its version was published
        err.print(f"interrupted after writing {escape(str(written[-1]))} (complete)", soft_wrap=True)
    elif command == "train":
        err.print(
            "interrupted: the training run in --output is incomplete; rerun with --force to replace it", soft_wrap=True
        )
    else:
        err.print("interrupted: nothing was written")
    sys.stdout.flush()
    sys.stderr.flush()
    _release_semaphores()
    os._exit(130)


def _release_semaphores() -> None:
    """Run multiprocessing's own clean-ups of priority ≥ 0: they unlink the pool's named
    semaphores and tell its resource tracker (the joins it would also do can hang)."""
    from multiprocessing import util

    with contextlib.suppress(Exception):
        util._run_finalizers(0)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
