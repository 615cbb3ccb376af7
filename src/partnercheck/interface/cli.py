"""The ``partnercheck`` command line: a thin click layer over the library.

Every known failure (a missing file, an unreadable source, a missing or incompatible model,
a bad rules or config file) becomes one line on stderr and exit code 1; bad options exit 2
(click's convention). Progress bars go to stderr and only when it is a terminal.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
from collections import Counter

import click

from .. import __version__
from ..errors import PartnercheckError
from ..labels import LABELS
from ..reading.sources import FORMATS, Columns, Source, SourceError
from ..running.outputs import RowWriter, format_for, line_safe_name
from ..settings import read_config


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:
            if isinstance(exc, PartnercheckError):
                raise click.ClickException(str(exc)) from None
            if os.environ.get("PARTNERCHECK_DEBUG"):
                raise
            raise click.ClickException(f"internal error: {exc.__class__.__name__}: {exc}") from None


def _quiet_broken_pipe():
    # The reader went away (`| head`): stop quietly, as Unix tools do.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="partnercheck")
def cli():
    """Tell a genuine partnership proposal from a sales pitch dressed up as one.

    Every message gets one verdict, partnership, pitch, other or unsure, with the
    rules and words behind it.

    \b
    Examples:
      partnercheck classify message.eml
      partnercheck explain message.eml
      partnercheck label inbox.mbox -o labels.csv
      partnercheck filter < message.eml
      partnercheck train labels.csv -o my-model.model
    """


# ---------------------------------------------------------------------- shared options

def source_options(func):
    """--format and the table column options, shared by every command that reads mail."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS, case_sensitive=False),
                     help="Read SOURCE as this format instead of guessing."),
        click.option("--body-column", help="Table exports: the column with the message text."),
        click.option("--subject-column", help="Table exports: the column with the subject."),
        click.option("--from-column", help="Table exports: the column with the sender."),
        click.option("--label-column", help="Table exports: the column with the true label."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def model_options(func):
    """--model and --rules, shared by every command that classifies."""
    func = click.option("--rules", "rules_file", type=click.Path(dir_okay=False),
                        help="An extra rules file of your own, on top of the config file's.")(func)
    func = click.option("-m", "--model", "model_option", metavar="PATH",
                        help="Model file (default: $PARTNERCHECK_MODEL, the config file's, your personal model, or the shipped one).")(func)
    return func


def _is_one_of(output: str, paths) -> bool:
    """Whether the file ``output`` is one of ``paths`` (under any name)."""
    return os.path.exists(output) and any(os.path.exists(p) and os.path.samefile(p, output) for p in paths)


def _folder_holding(output: str, sources) -> str | None:
    """The SOURCE folder that ``output`` would be written into, if any (under any name, however
    deep): there it would replace a message, or be read as one the next time."""
    target = os.path.realpath(output)
    for source in sources:
        if source != "-" and os.path.isdir(source):
            folder = os.path.realpath(source)
            if os.path.commonpath([folder, target]) == folder:
                return source
    return None


def _check_output(output: str, force: bool, sources=()) -> None:
    """Refuse, before any work, a model path that cannot or may not be written."""
    if _is_one_of(output, sources):
        raise click.ClickException(f"{output} is what the model is trained from; writing the model there would replace it")
    if (folder := _folder_holding(output, sources)) is not None:
        raise click.ClickException(f"{output} is inside {folder}, which the model is trained from; "
                                   "write the model elsewhere")
    if os.path.isdir(output):
        raise click.ClickException(f"{output} is a folder; give the model file's path")
    if os.path.exists(output) and not force:
        raise click.ClickException(f"{output} exists; add --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise click.ClickException(f"cannot write {output}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.ClickException(f"cannot write {output}: no permission to write in {folder}")


def _columns(kwargs) -> Columns:
    return Columns(body=kwargs.pop("body_column"), subject=kwargs.pop("subject_column"),
                   sender=kwargs.pop("from_column"), label=kwargs.pop("label_column"))


def _stdin_once(sources) -> None:
    """Refuse ``-`` named twice: standard input is read once, and a second reading would
    find it at its end and label an empty message that was never sent."""
    if list(sources).count("-") > 1:
        raise click.UsageError("- (standard input) is named more than once; it can be read only once")


def _load(model_option: str | None, rules_file: str | None):
    """Model, its path and the user's policy, as the options and config say."""
    from ..deciding.model import cached_model
    from ..deciding.policy import load_policy
    from ..settings import model_path

    config = read_config()
    path = model_path(model_option, config)
    return cached_model(path), path, load_policy(config, rules_file)


# ---------------------------------------------------------------------------- inspect

@cli.command()
@click.argument("source")
@source_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def inspect(source, fmt, as_json, **kwargs):
    """Read SOURCE and show what partnercheck sees in each message.

    SOURCE is an .eml file, a folder of them, an mbox, a Maildir, a CSV, TSV or
    JSON-lines export, a folder with partnership/, pitch/ and other/ sub-folders, or -
    for standard input. Nothing is classified; no model is needed. Names and subjects
    are printed as `classify` prints names.

    \b
    Examples:
      partnercheck inspect inbox.mbox
      partnercheck inspect ~/Maildir --json
      cat message.eml | partnercheck inspect -
    """
    reader = Source(source, fmt=fmt, columns=_columns(kwargs))
    count = problems = 0
    for record in reader:
        count += 1
        problems += bool(record.problems)
        item = {
            "key": record.key, "message_id": record.message_id, "from": record.from_addr,
            "subject": record.subject, "body_chars": len(record.body), "quoted_chars": len(record.quoted),
            "label": record.label, "problems": record.problems,
        }
        if as_json:
            click.echo(json.dumps(item, ensure_ascii=False))
        else:
            note = f"  [{'; '.join(record.problems)}]" if record.problems else ""
            fields = (record.key, record.message_id or "-", record.from_addr or "-", record.subject or "-")
            click.echo("\t".join(map(line_safe_name, fields)) + f"\t{len(record.body)} chars{note}")
    click.echo(f"{count} messages, {problems} with parse problems", err=True)


# --------------------------------------------------------------------------- classify

@cli.command()
@click.argument("sources", nargs=-1)
@source_options
@model_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message, with all reasons.")
def classify(sources, fmt, model_option, rules_file, as_json, **kwargs):
    """Classify messages and print one verdict per line.

    SOURCES are files or folders in any format `inspect` reads; none, or -, reads
    standard input (one message, an mbox or a table export, told by its first line). A
    message's name that holds a control character or a line break (a newline, a tab) is
    printed as a Python string literal, quoted and escaped, so that each line is one
    message; other names as they are.

    \b
    Examples:
      partnercheck classify message.eml
      partnercheck classify *.eml --json
      partnercheck classify < message.eml
    """
    from ..deciding.classify import classify_one

    _stdin_once(sources)
    columns = _columns(kwargs)
    model, _, policy = _load(model_option, rules_file)
    for path in sources or ("-",):
        for record in Source(path, fmt=fmt, columns=columns):
            name = record.key if record.key == os.path.basename(record.source) or record.source in ("", "-") \
                else f"{os.path.basename(record.source)}:{record.key}"
            verdict = classify_one(record, model, policy)
            if as_json:
                click.echo(json.dumps({"message": name, **verdict.to_dict()}, ensure_ascii=False))
            else:
                click.echo(f"{line_safe_name(name)}\t{verdict.label}\t{verdict.score:.2f}\t{verdict.summary()}")


@cli.command()
@click.argument("file", default="-")
@source_options
@model_options
@click.option("--json", "as_json", is_flag=True, help="The verdict and all its reasons as JSON.")
def explain(file, fmt, model_option, rules_file, as_json, **kwargs):
    """Explain in plain words why FILE gets its verdict.

    Shows the score for each label, every rule that fired with the words it matched,
    and the words and signals that pushed hardest for and against the verdict.

    \b
    Examples:
      partnercheck explain message.eml
      partnercheck explain message.eml --json
    """
    from ..deciding.classify import classify_one

    model, _, policy = _load(model_option, rules_file)
    records = iter(Source(file, fmt=fmt, columns=_columns(kwargs)))
    record = next(records, None)
    if record is None:
        raise click.ClickException(f"{file}: no message in it")
    if next(records, None) is not None:
        raise click.ClickException(f"{file} holds more than one message; explain takes one "
                                   "(classify gives a line of reasons for each)")
    verdict = classify_one(record, model, policy)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(verdict.explanation(record.subject, record.from_addr))


# ----------------------------------------------------------------------------- filter

@cli.command("filter")
@click.option("--exit-zero", is_flag=True, help="Exit 0 whatever the verdict, and on errors (procmail's `w` flag "
              "needs it); a message that could not be read in or written out still exits 1.")
@click.option("--no-server", is_flag=True, help="Classify in this process even if `partnercheck serve` is running.")
@model_options
def filter_command(exit_zero, no_server, model_option, rules_file):
    """Read one message on stdin, write it to stdout with an X-Partnercheck header.

    The header's first word is the verdict: `X-Partnercheck: pitch; score=0.97;
    rules=PRICE_PLANS,SALES_CALL_ASK`. Any X-Partnercheck header already in the
    message is removed; nothing else changes. Exit
    codes: 0 other, 10 partnership, 11 pitch, 12 unsure, 1 error. On any error the
    message is written out unchanged and the error goes to stderr: mail is never lost.
    Uses a running `partnercheck serve` when there is one (fast), else loads the model.

    \b
    Examples:
      partnercheck filter < message.eml > labelled.eml
      partnercheck filter --exit-zero      # in a procmail `:0 fw` recipe
    """
    from .entry import run_filter

    sys.exit(run_filter(exit_zero, use_server=not (no_server or model_option or rules_file),
                        model_option=model_option, rules_file=rules_file))


# ------------------------------------------------------------------------------ label

@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE", help="Write rows to FILE (atomically) instead of stdout.")
@click.option("--csv", "out_fmt", flag_value="csv", help="CSV rows (the default).")
@click.option("--tsv", "out_fmt", flag_value="tsv", help="Tab-separated rows.")
@click.option("--nl", "--jsonl", "out_fmt", flag_value="jsonl", help="Newline-delimited JSON rows.")
@click.option("--resume", is_flag=True, help="Keep the rows already in --output and label only the rest.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Worker processes (default: all cores for large inputs).")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Label each SOURCE as one task on a Dask cluster: a scheduler address (tcp://host:8786), "
                   "or `local` for a cluster on this machine. Needs partnercheck[dask].")
@source_options
@model_options
def label(sources, output, out_fmt, resume, quiet, jobs, dask_address, fmt, model_option, rules_file, **kwargs):
    """Label every message of each SOURCE, one row per message.

    Rows hold the source and key of each message, its Message-ID, date, sender and
    subject, the verdict, a score per label, the rules that fired and the reasons.
    Correct the verdict column and hand the file to `partnercheck train` to learn
    from your own mail. SOURCE is never modified. Several SOURCEs (shards of an
    archive, a folder of mboxes) are labelled one after the other, or as tasks on
    a Dask cluster with --dask; the rows come out in the order of the SOURCEs.

    \b
    Examples:
      partnercheck label inbox.mbox
      partnercheck label ~/Maildir -o labels.csv
      partnercheck label export.csv --body-column Body --nl -o labels.jsonl
      partnercheck label inbox.mbox -o labels.csv --resume   # after Ctrl-C
      partnercheck label archive/*.mbox --dask tcp://scheduler:8786 -o labels.csv
    """
    from ..deciding.policy import load_policy
    from ..running.batch import ROW_FIELDS, SourceChanged, label_source, model_at, tally
    from ..settings import model_path

    _stdin_once(sources)
    columns = _columns(kwargs)
    readers = [Source(source, fmt=fmt, columns=columns) for source in sources]
    if dask_address and any(reader.is_stream for reader in readers):
        raise click.UsageError("--dask labels SOURCE files the workers can read; standard input stays here, "
                               "and so does a pipe (label them without --dask)")
    config = read_config()
    path, policy = model_path(model_option, config), load_policy(config, rules_file)
    if dask_address:
        if not os.path.exists(path):
            from ..deciding.model import load_model

            load_model(path)  # says what is missing and how to fix it
    else:
        model_at(path)  # a model that cannot be used is refused before any row is written
    if output and _is_one_of(output, sources):
        raise click.ClickException(f"{output} is a SOURCE: the labels would replace the mail")
    if output and (folder := _folder_holding(output, sources)) is not None:
        raise click.ClickException(f"{output} is inside the SOURCE {folder}: the labels would replace a message "
                                   "or be read as one; write them elsewhere")
    writer = RowWriter(output, format_for(output, out_fmt), ROW_FIELDS, resume=resume)
    counts: Counter = Counter()
    show = not quiet and sys.stderr.isatty() and len(readers) == 1 and not dask_address
    bar = None
    client = None
    try:
        if dask_address:
            from ..running import dask_batch

            client = dask_batch.connect(dask_address)
            chunks = dask_batch.label_sources(client, readers, path, policy, writer.done)
        else:
            chunks = (rows for reader in readers
                      for rows in label_source(reader, path, policy, jobs=jobs, skip=writer.done))
        reader, done_before = readers[0], 0
        for rows in chunks:
            writer.write_rows(rows)
            tally(rows, counts)
            if show and bar is None:  # the reader knows its size once it has started
                bar = click.progressbar(length=reader.total or 0, label="labelling", file=sys.stderr,
                                        show_eta=True, show_percent=True, item_show_func=None)
                bar.__enter__()
            if bar is not None:
                bar.update(reader.position - done_before)
                done_before = reader.position
    except KeyboardInterrupt:
        if counts or writer.done:
            writer.close()
            click.echo(f"\ninterrupted: {sum(counts.values())} rows written; run again with --resume to go on",
                       err=True)
        else:
            writer.abandon()  # nothing new: whatever was at the output path stays as it was
            click.echo("\ninterrupted before any row was written; nothing changed", err=True)
        sys.exit(130)
    except SourceChanged:  # the earlier rows name other mail: put nothing more in place
        writer.abandon()
        raise
    except BaseException:
        if resume or writer.done:
            writer.close()
        else:
            writer.abandon()
        raise
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        if client is not None:
            dask_batch.close(client)
    writer.close()
    if not quiet:
        summary = ", ".join(f"{k} {counts.get(k, 0)}" for k in ("partnership", "pitch", "other", "unsure"))
        extra = f"; {len(writer.done)} already done" if writer.done else ""
        if writer.dropped:
            extra += f"; {writer.dropped} incomplete row(s) of the earlier run labelled again"
        click.echo(f"labelled {sum(counts.values())} messages: {summary}; unreadable {counts.get('unreadable', 0)}{extra}",
                   err=True)


# ------------------------------------------------------------------------------ train

@cli.command()
@click.argument("sources", nargs=-1)
@click.option("-o", "--output", metavar="FILE", help="Where to save the model.")
@click.option("--label", "given_labels", type=click.Choice(LABELS, case_sensitive=False), multiple=True,
              help="Give every message of a SOURCE this label: once for all SOURCES, or once per SOURCE, in order.")
@click.option("--with-default-data", is_flag=True, help="Add the corpus partnercheck's own model was trained on.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same data and seed, same model).")
@click.option("--personal", is_flag=True,
              help="Retrain the personal model from the shipped corpus and what `learn` stored (no SOURCES).")
@click.option("--store", "store_option", metavar="PATH", help="With --personal: the learning store (default: see README).")
@source_options
def train(sources, output, given_labels, with_default_data, force, seed, personal, store_option, fmt, **kwargs):
    """Train a model on your own labelled mail and save it to FILE.

    SOURCES can be the CSV or JSON lines `partnercheck label` wrote (after you
    corrected the verdict column), folders with partnership/, pitch/ and other/
    sub-folders, table exports with a label column, or whole mailboxes given one
    label with --label: one --label for all SOURCES (where a message carries no
    label of its own: a label file's rows and a labelled folder's messages keep
    theirs), or one per SOURCE, the first label for the first SOURCE and so on,
    which wins over any label a SOURCE carries. Cross-validated scores are shown
    before the model is saved.

    \b
    Examples:
      partnercheck train labels.csv -o ~/mail/partnercheck.model
      partnercheck train --label pitch p.mbox --label other o.mbox --label partnership q.mbox -o m.model
      partnercheck train labels.csv --with-default-data -o m.model --force
      partnercheck train --personal      # the model `learn` keeps, rebuilt from its store
    """
    if personal:
        if sources:
            raise click.UsageError("--personal takes no SOURCES: it trains on the corpus and the learning store")
        from ..learning.corrections import Store, retrain_personal, store_path

        path = store_path(store_option)
        if output:
            _check_output(output, force, [path, path + "-wal"])
        if not os.path.exists(path):  # nothing to train on, and no store to make
            if output:
                raise click.ClickException(f"nothing learned yet ({path} does not exist): no corrections, "
                                           "no personal model to write")
            click.echo(f"nothing learned yet ({path} does not exist): no personal model, the shipped model applies")
            return
        with Store.open(path) as store:
            if output and not len(store):
                raise click.ClickException(f"{store.path} holds no corrections: no personal model to write")
            click.echo(retrain_personal(store, output, seed=seed).line())
        return
    if not sources:
        raise click.UsageError("give the labelled SOURCES to train on (or --personal)")
    if not output:
        raise click.UsageError("give the model file to write with -o FILE")
    from ..learning import training
    from ..learning.near_duplicates import NearCopyFolds
    from ..settings import default_corpus

    _check_output(output, force, sources)
    _stdin_once(sources)
    columns = _columns(kwargs)
    if len(given_labels) > 1 and len(given_labels) != len(sources):
        raise click.UsageError(f"{len(given_labels)} --label options for {len(sources)} sources: give one --label "
                               "for all sources, or one per source, in the order of the sources")
    # One label per source is the user's word for each; one label for several sources is
    # for the mailboxes among them, never a reason to relabel a label file's corrected rows.
    per_source = len(given_labels) == len(sources)
    labels = given_labels if per_source else (None,) * len(sources)
    readers = [Source(path, fmt=fmt, columns=columns, label=label) for path, label in zip(sources, labels)]
    records = (record for reader in readers for record in reader)
    if given_labels and not per_source:
        records = (_with_default_label(record, given_labels[0]) for record in records)
    if with_default_data:
        corpus = default_corpus()
        if corpus is None:
            raise click.ClickException("the bundled corpus is not available in this installation")
        records = itertools.chain(records, Source(corpus))
    model, cv_scores, prepared = training.train(records, seed=seed, info={"trained_on": list(sources)}, keep_tokens=False)
    if prepared.duplicates:
        click.echo(f"dropped {prepared.duplicates} duplicate message(s)", err=True)
    if prepared.undecided:
        click.echo(f"skipped {prepared.undecided} message(s) still marked unsure or left blank", err=True)
    short = NearCopyFolds(prepared.near_copies).too_few(prepared.labels) if prepared.near_copies is not None else []
    if short:
        click.echo(f"warning: the {' and '.join(short)} messages are copies of fewer than 5 distinct messages, so "
                   "cross-validation cannot keep copies apart, and its scores below are inflated", err=True)
    click.echo("cross-validated (5 folds):")
    click.echo(cv_scores.to_text())
    click.echo(f"thresholds: {model.thresholds.to_dict()}")
    model.save(output)
    click.echo(f"saved {output}")


def _with_default_label(record, label: str):
    if record.label is None:
        record.label = label
    return record


# --------------------------------------------------------------------------- evaluate

@cli.command()
@click.argument("source")
@click.option("--label", "given_label", type=click.Choice(LABELS, case_sensitive=False),
              help="Treat every message of SOURCE as this label.")
@click.option("--json", "as_json", is_flag=True, help="Scores as JSON.")
@source_options
@model_options
def evaluate(source, given_label, as_json, fmt, model_option, rules_file, **kwargs):
    """Score the model on labelled mail: precision, recall, F1, confusion, rule hits.

    \b
    Examples:
      partnercheck evaluate labelled-folder/
      partnercheck evaluate labels.csv --json
      partnercheck evaluate --label pitch pitches.mbox
    """
    from ..learning.evaluate import score_model

    reader = Source(source, fmt=fmt, columns=_columns(kwargs), label=given_label)
    model, _, policy = _load(model_option, rules_file)
    try:
        scores = score_model(model, reader, policy)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not scores.total:
        raise click.ClickException(f"{source}: no labelled message to score")
    click.echo(scores.to_json() if as_json else scores.to_text())


# ------------------------------------------------------------------------------ learn

def store_option(func):
    return click.option("--store", "store_option", metavar="PATH",
                        help="The learning store (default: $PARTNERCHECK_STORE, the config file's `store`, "
                             "or $XDG_DATA_HOME/partnercheck/learned.sqlite3).")(func)


#: ``learn`` retrains the personal model itself up to this many corrections (measured here:
#: 7 s with 2,000, 15 s with 5,000, 35 s with 10,000); beyond, the user runs
#: ``partnercheck train --personal`` when it suits them (nightly from cron, say).
LEARN_RETRAIN_MAX = 5_000


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--as", "as_label", type=click.Choice(LABELS, case_sensitive=False), help="The label the messages should have had.")
@click.option("--forget", is_flag=True, help="Forget what was learned from these messages instead.")
@click.option("--all", "learn_all", is_flag=True,
              help="Without --as: learn every labelled message, not only those partnercheck now labels otherwise.")
@click.option("--no-retrain", is_flag=True, help="Only store the corrections; retrain later with `train --personal`.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
@store_option
@source_options
def learn(sources, as_label, forget, learn_all, no_retrain, quiet, store_option, fmt, **kwargs):
    """Learn from your corrections: these messages should have been labelled LABEL.

    SOURCES are anything `inspect` reads: an .eml, a folder, an mbox, a Maildir you
    file mistakes into; none, or -, reads standard input, as `sa-learn` and
    `bogofilter -s` do. Without --as, messages keep their own labels (a label file
    from `partnercheck label` with the verdict column corrected, a folder with
    partnership/, pitch/ and other/): only those partnercheck now labels otherwise
    are learned, or all with --all. The same message learned twice counts once;
    learned under another label, the new label replaces the old one. The sender memory
    is updated (see `partnercheck senders`) and the personal model is retrained, which
    `filter`, `label` and a running `serve` then use. `--forget` undoes it.

    \b
    Examples:
      partnercheck learn --as pitch message.eml
      partnercheck learn --as partnership ~/Maildir/.NotPitch
      partnercheck learn --as other < message.eml
      partnercheck learn labels.csv          # the corrected verdict column
      partnercheck learn --forget message.eml
    """
    if forget and as_label:
        raise click.UsageError("give either --as LABEL or --forget, not both")
    if learn_all and (forget or as_label):
        raise click.UsageError("--all is for learning messages under their own labels (no --as)")
    from ..learning.corrections import (
        LearnSummary,
        Store,
        personal_is_current,
        retrain_personal,
        store_path,
    )

    if not sources:
        if sys.stdin.isatty():
            raise click.UsageError("give the messages to learn, or pipe one in (- is standard input)")
        sources = ("-",)
    _stdin_once(sources)
    config = read_config()
    columns = _columns(kwargs)
    readers = [Source(path, fmt=fmt, columns=columns) for path in sources]
    records = (record for reader in readers for record in reader)
    stopped = None
    with Store.open(store_path(store_option, config)) as store:
        if forget:
            removed = store.forget(records)
            changed = removed > 0
            line = f"forgot {removed} correction{'s' if removed != 1 else ''}; {len(store)} left"
        else:
            judge = _judge(store, config)
            summary = LearnSummary(label=as_label or "")
            if as_label is None and not learn_all:  # a corrected label file: only where it differs
                records = _disagreeing(records, judge, summary)
            try:
                store.learn(records, as_label, judge=judge, summary=summary)
            except SourceError as exc:  # a message gone from its mailbox: what was read is learned, then said
                stopped = exc
            changed, line = summary.changed, summary.line()
            if stopped is not None and summary == LearnSummary(label=summary.label):
                line = ""  # stopped before any message was read: the error alone says it
        if not quiet and line:
            click.echo(line, err=True)
        if not no_retrain and (changed or not personal_is_current(store)):  # an interrupted learn left it behind
            if len(store) > LEARN_RETRAIN_MAX:
                click.echo(f"{len(store)} corrections, too many to retrain on every learn: run "
                           "`partnercheck train --personal` to bring the personal model up to date", err=True)
            else:
                result = retrain_personal(store)
                if not quiet:
                    click.echo(result.line(), err=True)
    if stopped is not None:
        raise stopped
    if not forget and summary.unknown:
        raise click.ClickException(f"labels that are none of {', '.join(LABELS)}: {summary.unknown_labels()}; "
                                   "those rows were skipped, the others learned")


def _disagreeing(records, judge, summary):
    """The labelled records whose label differs from the verdict partnercheck gives now."""
    for record in records:
        if record.readable and record.label in LABELS and judge(record) == record.label:
            summary.agreed += 1
            continue
        yield record


def _judge(store, config):
    """The verdict each message gets now: the model in force for ``store`` (an explicit
    model, else its personal model, else the shipped one) and the policy with its memory."""
    from ..deciding.classify import classify_one
    from ..deciding.model import cached_model
    from ..deciding.policy import load_policy
    from ..settings import (
        MODEL_ENV,
        default_model_path,
        model_path,
        personal_model_path,
    )

    if os.environ.get(MODEL_ENV) or config.get("model"):
        path = model_path(None, config)
    else:
        personal = personal_model_path(store.path)
        path = personal if os.path.exists(personal) else default_model_path()
    model, policy = cached_model(path), load_policy(config, store=store.path)
    last: list = [None, None]

    def judge(record):  # asked twice for each record of a label file: once is enough
        if last[0] is not record:
            last[0], last[1] = record, classify_one(record, model, policy).label
        return last[1]

    return judge


@cli.command()
@click.option("-o", "--output", metavar="FILE", help="Write the list to FILE instead of stdout.")
@click.option("--csv", "out_fmt", flag_value="csv", help="CSV rows (the default).")
@click.option("--tsv", "out_fmt", flag_value="tsv", help="Tab-separated rows.")
@click.option("--nl", "--jsonl", "out_fmt", flag_value="jsonl", help="Newline-delimited JSON rows.")
@click.option("--export", metavar="PATH",
              help="Write the corrections as a labelled source for `train`: a .jsonl file, or a new folder "
                   "with partnership/, pitch/ and other/ sub-folders.")
@click.option("--forget-key", "forget_keys", multiple=True, metavar="KEY",
              help="Forget the correction with this key (or a start of it, 6 characters or more, that no other key has).")
@store_option
def learned(output, out_fmt, export, forget_keys, store_option):
    """List what `partnercheck learn` stored, export it, or forget entries by key.

    One row per correction: its key, Message-ID, label, sender, subject, date, when it
    was learned and where from. A count per label goes to stderr.

    \b
    Examples:
      partnercheck learned
      partnercheck learned --nl -o learned.jsonl
      partnercheck learned --export corrections.jsonl && partnercheck train corrections.jsonl -o m.model
      partnercheck learned --forget-key 3f2a9c
    """
    from ..learning.corrections import NothingLearned, Store, retrain_personal, store_path

    path = store_path(store_option)
    for target in filter(None, (output, export)):
        if _is_one_of(target, [path, path + "-wal"]):
            raise click.ClickException(f"{target} is the learning store; writing there would replace it")
    try:
        store = Store.open(path, read_only=True)  # nothing to list or forget is said, not made
    except NothingLearned as nothing:
        click.echo(str(nothing), err=True)
        return
    if forget_keys:
        store.close()
        store = Store.open(path)
    with store:
        if forget_keys:
            removed = store.forget_keys(forget_keys)
            click.echo(f"forgot {removed} correction{'s' if removed != 1 else ''}; {len(store)} left", err=True)
            if removed:
                click.echo(retrain_personal(store).line(), err=True)
            return
        if export:
            count = _export(store, export)
            click.echo(f"exported {count} corrections to {export}", err=True)
            return
        from ..learning.corrections import _LIST_FIELDS

        writer = RowWriter(output, format_for(output, out_fmt), _LIST_FIELDS)
        try:
            for correction in store.corrections():
                writer.write(correction.row())
        except BaseException:
            writer.abandon()
            raise
        writer.close()
        counts = store.counts()
        click.echo(f"{sum(counts.values())} corrections: "
                   + ", ".join(f"{label} {counts.get(label, 0)}" for label in LABELS), err=True)


def _export(store, target: str) -> int:
    try:
        return _write_export(store, target)
    except OSError as exc:
        raise click.ClickException(f"cannot export to {target}: {exc.strerror or exc}") from None


def _write_export(store, target: str) -> int:
    from ..atomic import _umask, atomic_file

    count = 0
    if os.path.exists(target) and not os.path.isdir(target):
        raise click.ClickException(f"{target} exists; export to a new .jsonl file or folder")
    if target.endswith((".jsonl", ".ndjson", ".json")):
        with atomic_file(target, "w", encoding="utf-8") as handle:
            for key, label, raw in store.messages():
                row = {"key": key, "label": label, "raw": raw.decode("utf-8", "surrogateescape")}
                handle.write(json.dumps(row) + "\n")
                count += 1
        return count
    import shutil
    import tempfile

    if os.path.splitext(target)[1].lower() in (".csv", ".tsv", ".txt", ".eml", ".mbox", ".xlsx", ".ods"):
        raise click.ClickException(f"{target}: an export is a .jsonl file or a folder of .eml files, "
                                   "which `train` reads back; name one of those")
    if os.path.isdir(target) and os.listdir(target):
        raise click.ClickException(f"{target} exists; export into a new folder or a .jsonl file")
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    # Written in a folder beside it and renamed into place whole: an error or Ctrl-C leaves
    # no half an export (which a second try would refuse as a folder that exists).
    temp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(target))}.", suffix=".partial", dir=folder)
    try:
        for label in LABELS:
            os.mkdir(os.path.join(temp, label))
        for key, label, raw in store.messages():
            with open(os.path.join(temp, label, f"{key}.eml"), "wb") as handle:
                handle.write(raw)
            count += 1
        os.chmod(temp, 0o777 & ~_umask())
        os.rename(temp, target)  # over an empty folder too
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return count


@cli.group(invoke_without_command=True)
@click.option("--nl", "--jsonl", "as_json", is_flag=True, help="Newline-delimited JSON rows instead of CSV.")
@store_option
@click.pass_context
def senders(ctx, as_json, store_option):
    """List the sender memory, or add and remove entries (allow, block, remove).

    `learn` puts a sender you corrected away from pitch on the allow list (never pitch)
    and one you marked pitch in two threads on the block list (pitch, for 90 days). By
    hand you can add addresses or domains, with an expiry. The config file's `allow`
    and `block` lists still win over all of this.

    \b
    Examples:
      partnercheck senders
      partnercheck senders allow ana@partner.example
      partnercheck senders block spamvendor.example --expires 30
      partnercheck senders remove ana@partner.example
    """
    ctx.ensure_object(dict)
    ctx.obj["store"] = store_option
    if ctx.invoked_subcommand is not None:
        return
    from ..learning.corrections import NothingLearned, Store, store_path

    try:
        with Store.open(store_path(store_option), read_only=True) as store:
            entries = store.sender_entries()
    except NothingLearned as nothing:
        click.echo(str(nothing), err=True)
        return
    fields = ["pattern", "kind", "origin", "added", "expires", "active", "note"]
    writer = RowWriter(None, "jsonl" if as_json else "csv", fields)
    for entry in entries:
        row = entry.to_row()
        writer.write([row[f] for f in fields])
    writer.close()


def _expiry(value: str | None) -> float | None:
    if not value:
        return None
    import datetime
    import time as _time

    if value.isdigit():
        if int(value) > 36525:
            raise click.BadParameter("at most 36525 days (100 years); leave it out for no end", param_hint="--expires")
        return _time.time() + int(value) * 86400
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("give a number of days or a date like 2027-01-31", param_hint="--expires") from None
    return datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc).timestamp()


def _sender_change(kind):
    @click.argument("patterns", nargs=-1, required=True)
    @click.option("--expires", metavar="DAYS|DATE", help="Drop the entry after this many days or on this date.")
    @click.option("--note", default="", help="Why, for your own later reference.")
    @click.pass_context
    def command(ctx, patterns, expires, note):
        from ..learning.corrections import Store, store_path

        when = _expiry(expires)
        patterns = [_pattern(pattern) for pattern in patterns]  # all checked before any is added
        with Store.open(store_path(ctx.obj.get("store"))) as store:
            for pattern in patterns:
                store.set_sender(pattern, kind, when, note)
        click.echo(f"{len(patterns)} on the {kind} list", err=True)

    example = "ana@partner.example friends.example" if kind == "allow" else "spamvendor.example --expires 30"
    command.__doc__ = f"""Put addresses or domains on the {kind} list.

    \b
    Example:
      partnercheck senders {kind} {example}
    """
    return command


def _pattern(value: str) -> str:
    from ..learning.memory import sender_pattern

    pattern = sender_pattern(value)
    if pattern is None:
        raise click.BadParameter(f"{value!r} is not an address or a domain (a domain counts for its sub-domains: "
                                 "no wildcards)")
    return pattern


senders.command("allow")(_sender_change("allow"))
senders.command("block")(_sender_change("block"))


@senders.command("remove")
@click.argument("patterns", nargs=-1, required=True)
@click.pass_context
def senders_remove(ctx, patterns):
    """Remove entries; learning for those senders starts over from now.

    \b
    Example:
      partnercheck senders remove ana@partner.example
    """
    from ..learning.corrections import Store, store_path

    with Store.open(store_path(ctx.obj.get("store"))) as store:
        gone = sum(store.remove_sender(p.strip().lower()) for p in patterns)  # unchecked: whatever is listed goes
    click.echo(f"removed {gone} of {len(patterns)}", err=True)


# ------------------------------------------------------------------------------ serve

class _Stop(BaseException):
    pass


def _stop_serving(signum, frame):
    raise _Stop


@cli.command()
@click.option("--socket", "socket_option", metavar="PATH", help="Unix socket to listen on (default: see README).")
@model_options
def serve(socket_option, model_option, rules_file):
    """Keep the model loaded and answer `partnercheck filter` over a Unix socket.

    With the server running, `filter` takes milliseconds instead of seconds. Under
    systemd socket activation the passed socket is used (see README). A new model
    (after `learn` or `train --personal`), sender memory or config file is picked up
    without a restart; SIGHUP reloads within half a second.

    \b
    Examples:
      partnercheck serve &
      PARTNERCHECK_SOCKET=/tmp/pc.sock partnercheck serve
    """
    from ..learning.corrections import store_path
    from ..settings import config_path, model_path, personal_model_path, socket_path
    from .server import ClassifyServer, systemd_socket

    # Until the server exists, a signal is only noted: SIGHUP's default action would end a
    # server still loading its model without a word, and SIGTERM's, once the socket file is
    # there, would leave it behind. (Blocking them in this thread is not enough: another
    # thread, numpy's for one, would take them.)
    noted: list[int] = []
    signal.signal(signal.SIGHUP, lambda signum, frame: noted.append(signum))
    model, path, policy = _load(model_option, rules_file)
    inherited = systemd_socket()
    where = socket_option or socket_path(read_config())

    def loader():
        model, path, policy = _load(model_option, rules_file)
        return model, policy, path

    def watch():  # what a reload would read: the model in force, the learning store, the config
        config = read_config()
        store = store_path(None, config)
        return [config_path(), model_path(model_option, config), personal_model_path(store), store, store + "-wal"]

    signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum))
    try:
        server = ClassifyServer(model, policy, None if inherited else where, inherited, loader=loader, watch=watch,
                                settings={"model": os.path.abspath(path), "config": os.path.abspath(config_path())})
    except (FileExistsError, NotADirectoryError):  # a file where the socket's folder should be
        raise click.ClickException(f"cannot listen on {where}: a part of its folder is a file, "
                                   "not a folder") from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {where}: {exc.strerror or exc}") from None
    click.echo(f"partnercheck serving {path} on {'systemd socket' if inherited else where}", err=True)
    signal.signal(signal.SIGTERM, _stop_serving)  # systemd and kill stop it cleanly, socket removed
    server.reload_requested = signal.SIGHUP in noted  # what changed meanwhile may not have been read
    signal.signal(signal.SIGHUP, lambda signum, frame: setattr(server, "reload_requested", True))
    try:
        if signal.SIGTERM not in noted:
            server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        server.server_close()


# ------------------------------------------------------------------------------- imap

@cli.command("imap")
@click.option("-a", "--account", "account_name", metavar="NAME", help="The config file's [imap.NAME] section.")
@click.option("--host", help="IMAP server.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 993 with TLS, 143 otherwise).")
@click.option("--user", help="Login name.")
@click.option("--tls", "security", flag_value="tls", help="TLS from the start (the default).")
@click.option("--starttls", "security", flag_value="starttls", help="Plain connection upgraded with STARTTLS.")
@click.option("--plain", "security", flag_value="plain", help="No encryption at all: only for a local test server.")
@click.option("--ca-file", metavar="PEM", help="Trust this CA (a self-signed server certificate).")
@click.option("--password-file", metavar="FILE", help="Read the password from the first line of FILE.")
@click.option("--password-command", metavar="CMD", help="Run CMD; the first line it prints is the password.")
@click.option("--password-env", metavar="VAR", help="Take the password from the environment variable VAR.")
@click.option("-f", "--folder", "folders", multiple=True, metavar="FOLDER", help="Folder to label (repeatable; default INBOX).")
@click.option("--move-to", "pitch_folder", metavar="FOLDER", help="Move pitches to FOLDER.")
@click.option("--partnership-folder", metavar="FOLDER", help="Learn what you file into FOLDER as partnership.")
@click.option("--learn/--no-learn", "learn_folders", default=None,
              help="Learn from what you file into and out of the pitch folder (default: on).")
@click.option("--keywords/--no-keywords", default=None, help="Set $Partnership, $Pitch, $Unsure (default: on).")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be done; change nothing, remember nothing.")
@click.option("--watch", is_flag=True, help="Keep going (IDLE, or polling) until interrupted.")
@click.option("--poll", type=click.FloatRange(1), default=300.0, show_default=True,
              help="With --watch: seconds between looks where IDLE cannot tell.")
@click.option("--state", "state_file", metavar="FILE", help="Remember what was seen in FILE (default: see README).")
@click.option("-v", "--verbose", is_flag=True, help="One line per message.")
@model_options
def imap_command(account_name, host, port, user, security, ca_file, password_file, password_command, password_env,
                 folders, pitch_folder, partnership_folder, learn_folders, keywords, dry_run, watch, poll, state_file,
                 verbose, model_option, rules_file):
    """Label and file the mail of an IMAP mailbox.

    Reads the messages of each folder that it has not seen before, classifies them and
    sets a keyword per verdict ($Partnership, $Pitch, $Unsure) and/or moves pitches to
    a folder. Partnership mail is never moved; nothing is ever deleted. A second run
    does no work. The password comes from a file, a command or an environment variable
    (never the command line); accounts can be kept in the config file's [imap.NAME]
    sections (see README).

    Messages you move out of the pitch folder into a labelled folder are learned as
    other, those you file into --partnership-folder as partnership, and those you file
    into the pitch folder yourself as pitch, through the same store as `partnercheck
    learn`; the personal model is then retrained.

    \b
    Examples:
      partnercheck imap --host imap.example.org --user sam --password-command 'pass mail/sam' --dry-run
      partnercheck imap --account work --move-to Pitch
      partnercheck imap --account work --watch
    """
    from ..running import imap
    from ..running.imap_state import ImapState, StateError
    from ..settings import imap_state_path

    config = read_config()
    try:
        account = imap.account_from_config(config, account_name)
        for key, value in (("host", host), ("port", port), ("user", user), ("security", security),
                           ("ca_file", ca_file), ("pitch_folder", pitch_folder),
                           ("partnership_folder", partnership_folder), ("learn", learn_folders)):
            if value is not None:
                setattr(account, key, value)
        if password_file or password_command or password_env:
            account.password_file, account.password_command, account.password_env = \
                password_file, password_command, password_env
        if folders:
            account.folders = list(folders)
        if keywords is not None:
            account.keywords = dict(imap.DEFAULT_KEYWORDS) if keywords else {}
        imap.check_account(account)
        model, _, policy = _load(model_option, rules_file)
        state = ImapState(state_file or imap_state_path(config), account.identity)
        password = imap.read_password(account)
        learner = _ImapLearner(config) if account.learn and not dry_run else None
        imap.run(account, password, model, policy, state, dry_run=dry_run, watch=watch, poll=poll,
                 echo=click.echo, verbose=verbose, learner=learner,
                 reload=lambda: _load(model_option, rules_file)[::2])
    except KeyboardInterrupt:
        click.echo("interrupted; what was done is saved", err=True)
        sys.exit(130)
    except (imap.ImapError, StateError) as exc:
        raise click.ClickException(str(exc)) from None


class _ImapLearner:
    """What `imap` learns from the folders goes where `partnercheck learn` puts it: the
    store, batch by batch; the personal model is retrained once at the end of a pass."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.changed = False

    def learn(self, lessons) -> None:
        from ..learning.corrections import Store, store_path

        with Store.open(store_path(None, self.config)) as store:
            for label in sorted({label for _, label in lessons}):
                summary = store.learn([record for record, given in lessons if given == label], label)
                self.changed |= summary.changed
                click.echo(summary.line())

    def finish(self) -> None:
        from ..learning.corrections import (
            Store,
            personal_is_current,
            retrain_personal,
            store_path,
        )

        with Store.open(store_path(None, self.config)) as store:
            if not (self.changed or not personal_is_current(store)):
                return
            self.changed = False
            if len(store) > LEARN_RETRAIN_MAX:
                click.echo(f"{len(store)} corrections, too many to retrain on every pass: run "
                           "`partnercheck train --personal` to bring the personal model up to date", err=True)
            else:
                click.echo(retrain_personal(store).line())
