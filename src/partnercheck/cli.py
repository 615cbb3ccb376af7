"""The ``partnercheck`` command line: a thin click layer over the library.

Every known failure (a missing file, an unreadable source, a missing or incompatible model,
a bad rules or config file) becomes one line on stderr and exit code 1; bad options exit 2
(click's convention). Progress bars go to stderr and only when it is a terminal.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter

import click

from . import __version__
from .errors import PartnercheckError
from .labels import LABELS
from .outputs import RowWriter, format_for
from .settings import read_config
from .sources import FORMATS, Columns, Source


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
      partnercheck train labels.csv -o my-model.joblib
    """


# ---------------------------------------------------------------------- shared options

def source_options(func):
    """--format and the table column options, shared by every command that reads mail."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), help="Read SOURCE as this format instead of guessing."),
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
                        help="Model file (default: $PARTNERCHECK_MODEL, the config file, or the shipped model).")(func)
    return func


def _columns(kwargs) -> Columns:
    return Columns(body=kwargs.pop("body_column"), subject=kwargs.pop("subject_column"),
                   sender=kwargs.pop("from_column"), label=kwargs.pop("label_column"))


def _load(model_option: str | None, rules_file: str | None):
    """Model, its path and the user's policy, as the options and config say."""
    from .model import cached_model
    from .policy import load_policy
    from .settings import model_path

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
    for standard input. Nothing is classified; no model is needed.

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
            click.echo(f"{record.key}\t{record.message_id or '-'}\t{record.from_addr or '-'}\t"
                       f"{record.subject or '-'}\t{len(record.body)} chars{note}")
    click.echo(f"{count} messages, {problems} with parse problems", err=True)


# --------------------------------------------------------------------------- classify

@cli.command()
@click.argument("sources", nargs=-1)
@source_options
@model_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message, with all reasons.")
def classify(sources, fmt, model_option, rules_file, as_json, **kwargs):
    """Classify messages and print one verdict per line.

    SOURCES are files or folders in any format `inspect` reads; none, or -, reads one
    message (or an mbox) from standard input.

    \b
    Examples:
      partnercheck classify message.eml
      partnercheck classify *.eml --json
      partnercheck classify < message.eml
    """
    from .classify import classify_one

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
                click.echo(f"{name}\t{verdict.label}\t{verdict.score:.2f}\t{verdict.summary()}")


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
    from .classify import classify_one

    model, _, policy = _load(model_option, rules_file)
    records = iter(Source(file, fmt=fmt, columns=_columns(kwargs)))
    record = next(records, None)
    if record is None:
        raise click.ClickException(f"{file}: no message in it")
    verdict = classify_one(record, model, policy)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(verdict.explanation(record.subject, record.from_addr))


# ----------------------------------------------------------------------------- filter

@cli.command("filter")
@click.option("--exit-zero", is_flag=True, help="Always exit 0 (procmail's `w` flag needs it).")
@click.option("--no-server", is_flag=True, help="Classify in this process even if `partnercheck serve` is running.")
@model_options
def filter_command(exit_zero, no_server, model_option, rules_file):
    """Read one message on stdin, write it to stdout with an X-Partnercheck header.

    The header's first word is the verdict: `X-Partnercheck: pitch; score=0.97;
    rules=PRICE_PLANS,SALES_CALL_ASK`. Nothing else in the message changes. Exit
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
    from .batch import ROW_FIELDS, label_source, tally
    from .policy import load_policy
    from .settings import model_path

    columns = _columns(kwargs)
    readers = [Source(source, fmt=fmt, columns=columns) for source in sources]
    config = read_config()
    path, policy = model_path(model_option, config), load_policy(config, rules_file)
    if not os.path.exists(path):
        from .model import load_model

        load_model(path)  # says what is missing and how to fix it
    writer = RowWriter(output, format_for(output, out_fmt), ROW_FIELDS, resume=resume)
    counts: Counter = Counter()
    show = not quiet and sys.stderr.isatty() and len(readers) == 1 and not dask_address
    bar = None
    client = None
    try:
        if dask_address:
            from . import dask_batch

            client = dask_batch.connect(dask_address)
            chunks = dask_batch.label_sources(client, readers, path, policy, writer.done)
        else:
            chunks = (rows for reader in readers
                      for rows in label_source(reader, path, policy, jobs=jobs, skip=writer.done))
        if show:
            reader = readers[0]
            bar = click.progressbar(length=reader.total or 0, label="labelling", file=sys.stderr,
                                    show_eta=True, show_percent=True, item_show_func=None)
            bar.__enter__()
        done_before = 0
        for rows in chunks:
            for row in rows:
                writer.write(row)
            tally(rows, counts)
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
        click.echo(f"labelled {sum(counts.values())} messages: {summary}; unreadable {counts.get('unreadable', 0)}{extra}",
                   err=True)


# ------------------------------------------------------------------------------ train

@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to save the model.")
@click.option("--label", "given_labels", type=click.Choice(LABELS), multiple=True,
              help="Give every message of a SOURCE this label: once for all SOURCES, or once per SOURCE, in order.")
@click.option("--with-default-data", is_flag=True, help="Add the corpus partnercheck's own model was trained on.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same data and seed, same model).")
@source_options
def train(sources, output, given_labels, with_default_data, force, seed, fmt, **kwargs):
    """Train a model on your own labelled mail and save it to FILE.

    SOURCES can be the CSV or JSON lines `partnercheck label` wrote (after you
    corrected the verdict column), folders with partnership/, pitch/ and other/
    sub-folders, table exports with a label column, or whole mailboxes given one
    label with --label: one --label for all SOURCES, or one per SOURCE, the first
    label for the first SOURCE and so on. Cross-validated scores are shown before
    the model is saved.

    \b
    Examples:
      partnercheck train labels.csv -o ~/mail/partnercheck.model
      partnercheck train --label pitch pitches.mbox --label other ok.mbox -o m.joblib
      partnercheck train labels.csv --with-default-data -o m.joblib --force
    """
    from . import training
    from .settings import default_corpus

    if os.path.exists(output) and not force:
        raise click.ClickException(f"{output} exists; add --force to overwrite it")
    columns = _columns(kwargs)
    if len(given_labels) > 1 and len(given_labels) != len(sources):
        raise click.UsageError(f"{len(given_labels)} --label options for {len(sources)} sources: give one --label "
                               "for all sources, or one per source, in the order of the sources")
    labels = given_labels if len(given_labels) > 1 else (given_labels[0] if given_labels else None,) * len(sources)
    readers = [Source(path, fmt=fmt, columns=columns, label=label) for path, label in zip(sources, labels)]
    if with_default_data:
        corpus = default_corpus()
        if corpus is None:
            raise click.ClickException("the bundled corpus is not available in this installation")
        readers.append(Source(corpus))
    records = (record for reader in readers for record in reader)
    model, cv_scores, prepared = training.train(records, seed=seed, info={"trained_on": list(sources)})
    if prepared.duplicates:
        click.echo(f"dropped {prepared.duplicates} duplicate message(s)", err=True)
    click.echo("cross-validated (5 folds):")
    click.echo(cv_scores.to_text())
    click.echo(f"thresholds: {model.thresholds.to_dict()}")
    model.save(output)
    click.echo(f"saved {output}")


# --------------------------------------------------------------------------- evaluate

@cli.command()
@click.argument("source")
@click.option("--label", "given_label", type=click.Choice(LABELS), help="Treat every message of SOURCE as this label.")
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
    from .evaluate import score_model

    reader = Source(source, fmt=fmt, columns=_columns(kwargs), label=given_label)
    model, _, policy = _load(model_option, rules_file)
    try:
        scores = score_model(model, reader, policy)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(scores.to_json() if as_json else scores.to_text())


# ------------------------------------------------------------------------------ serve

class _Stop(Exception):
    pass


def _stop_serving(signum, frame):
    raise _Stop


@cli.command()
@click.option("--socket", "socket_option", metavar="PATH", help="Unix socket to listen on (default: see README).")
@model_options
def serve(socket_option, model_option, rules_file):
    """Keep the model loaded and answer `partnercheck filter` over a Unix socket.

    With the server running, `filter` takes milliseconds instead of seconds. Under
    systemd socket activation the passed socket is used (see README).

    \b
    Examples:
      partnercheck serve &
      PARTNERCHECK_SOCKET=/tmp/pc.sock partnercheck serve
    """
    from .server import ClassifyServer, systemd_socket
    from .settings import socket_path

    model, path, policy = _load(model_option, rules_file)
    inherited = systemd_socket()
    where = socket_option or socket_path(read_config())
    try:
        server = ClassifyServer(model, policy, None if inherited else where, inherited)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {where}: {exc}") from None
    click.echo(f"partnercheck serving {path} on {'systemd socket' if inherited else where}", err=True)
    signal.signal(signal.SIGTERM, _stop_serving)  # systemd and kill stop it cleanly, socket removed
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        server.server_close()
