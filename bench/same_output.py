"""Same output before and after a change to the hot path: tokens, rule hits and rows, message by message.

Speed work on reading, normalisation, tokens, rules or scoring must not change what
partnercheck says about any message. Save a reference with the code before the change,
then compare the changed code against it:

    python bench/same_output.py save /tmp/ref.jsonl.gz            # before the change
    python bench/same_output.py compare /tmp/ref.jsonl.gz         # after it: prints differences

For every message it records what ``extract`` gives (the token list, in order, and each rule
hit with its matched words and sentences), the ``label`` row (verdict, scores, rules,
reasons, problems) and the clues for and against that ``explain`` shows, all with the
default (shipped) model. Messages: every .eml of the corpus (``data/`` of this checkout, or
``--data``), of ``../shared/realworld`` (``--realworld``) and of ``tests/fixtures``, plus a
benchmark mailbox (``--mbox-messages``, read through the mbox reader as ``label`` reads it).
``save --list FILE`` keeps the list of files it read, so that a later ``compare`` reads the
same ones even when the corpus has grown since (``compare`` reuses the reference's list).

Exit status 0 when every message is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def message_files(data: str, realworld: str) -> list[str]:
    files = []
    for folder in (data, realworld, os.path.join(ROOT, "tests", "fixtures")):
        if folder and os.path.isdir(folder):
            files.extend(sorted(glob.glob(os.path.join(folder, "**", "*.eml"), recursive=True)))
    return files


def describe(raw_messages, model) -> list[dict]:
    from partnercheck.deciding.classify import classify
    from partnercheck.running.batch import verdict_row
    from partnercheck.reading.sources import to_record
    from partnercheck.understanding.features import extract

    out = []
    for name, message in raw_messages:
        record = to_record(message, "ref")
        entry: dict = {"name": name}
        verdict = classify([record], model, clues=True)[0]  # an explanation: hits with their sentences
        if record.readable:
            entry["tokens"] = extract(record, model.rules).tokens
            entry["hits"] = [[h.id, list(h.matches), list(h.sentences)] for h in verdict.hits]
        entry["row"] = [v if isinstance(v, (str, int, float)) else str(v) for v in verdict_row(record, verdict)]
        entry["clues_for"] = [[c.token, c.weight, c.term] for c in verdict.clues_for]
        entry["clues_against"] = [[c.token, c.weight, c.term] for c in verdict.clues_against]
        entry["scores"] = dict(verdict.scores)
        out.append(entry)
    return out


def raw_messages(files: list[str], mbox_messages: int):
    from partnercheck.reading.sources import RawMessage, read_mbox

    for path in files:
        with open(path, "rb") as handle:
            yield path, RawMessage(os.path.basename(path), handle.read())
    if mbox_messages:
        from mailbox import write_mbox

        with tempfile.TemporaryDirectory() as tmp:
            mbox = os.path.join(tmp, "bench.mbox")
            write_mbox(mbox, mbox_messages)
            with open(mbox, "rb") as handle:
                for key, raw in read_mbox(handle):
                    yield f"mbox:{key}", RawMessage(key, raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("save", "compare"))
    parser.add_argument("reference", help="the reference file (.jsonl.gz)")
    parser.add_argument("--data", default=os.path.join(ROOT, "data"), help="corpus folder (default: data/)")
    parser.add_argument("--realworld", default=os.path.join(ROOT, "..", "shared", "realworld"))
    parser.add_argument("--list", help="save: read the .eml files named in this file (one path a line) instead")
    parser.add_argument("--mbox-messages", type=int, default=2000,
                        help="messages of a benchmark mailbox to add (default 2000; 0 for none)")
    parser.add_argument("--show", type=int, default=20, help="compare: differences shown (default 20)")
    args = parser.parse_args()

    from partnercheck.running.batch import model_at
    from partnercheck.settings import default_model_path

    model = model_at(default_model_path())
    if args.action == "save":
        if args.list:
            with open(args.list) as handle:
                files = [line.strip() for line in handle if line.strip()]
            files += [f for f in message_files("", args.realworld) if f not in set(files)]
        else:
            files = message_files(args.data, args.realworld)
        entries = describe(raw_messages(files, args.mbox_messages), model)
        with gzip.open(args.reference, "wt", encoding="utf-8") as out:
            out.write(json.dumps({"files": files, "mbox_messages": args.mbox_messages}) + "\n")
            for entry in entries:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        print(f"saved {len(entries)} messages ({len(files)} files, {args.mbox_messages} from a mailbox) "
              f"to {args.reference}")
        return

    with gzip.open(args.reference, "rt", encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        reference = [json.loads(line) for line in handle]
    entries = describe(raw_messages(header["files"], header["mbox_messages"]), model)
    entries = json.loads(json.dumps(entries, ensure_ascii=False))  # the same types as the saved ones
    differences = 0
    if len(entries) != len(reference):
        print(f"message count differs: {len(reference)} in the reference, {len(entries)} now")
        differences += 1
    for old, new in zip(reference, entries):
        if old == new:
            continue
        differences += 1
        if differences <= args.show:
            print(f"--- {old['name']}")
            for field in sorted(set(old) | set(new)):
                if old.get(field) != new.get(field):
                    print(f"  {field}:\n    before: {old.get(field)!r:.600}\n    now:    {new.get(field)!r:.600}")
    print(f"{len(entries)} messages compared: "
          + ("all identical" if not differences else f"{differences} differ"))
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
