"""`partnercheck imap` speed against a local Dovecot over loopback.

Target (issue 13): a 10,000-message folder labelled at no less than 1,000 messages a second
after the first connection, end to end: fetching, reading, classifying, setting keywords
and moving the pitches. Each run starts a throwaway Dovecot (tests/dovecot_server.py),
fills its INBOX with messages cycled from the corpus (fresh Message-IDs; bench/mailbox.py's
order), logs in, and times one labelling pass with keywords and `--move-to Pitch`. The
same messages are then timed stage by stage in this process (fetch only, read only,
classify only), to say where the time goes.

    python bench/imap_speed.py [--messages 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from mailbox import corpus_messages  # noqa: E402

from dovecot_server import PASSWORD, USER, Dovecot  # noqa: E402


def messages(count: int, seed: int = 1) -> list[bytes]:
    pool = corpus_messages()
    rnd = random.Random(seed)
    order: list[bytes] = []
    out = []
    for index in range(count):
        if not order:
            order = pool[:]
            rnd.shuffle(order)
        out.append(order.pop().replace(b"Message-ID: <", b"Message-ID: <%d." % index, 1))
    return out


def one_run(mail: list[bytes], model, policy, jobs: int) -> dict:
    from partnercheck.running import imap
    from partnercheck.running.imap_state import ImapState

    server = Dovecot().start()
    try:
        server.append(mail)
        account = imap.Account(host="127.0.0.1", port=server.port, user=USER, security="plain",
                               pitch_folder="Pitch")
        with tempfile.TemporaryDirectory() as folder:
            state = ImapState(os.path.join(folder, "imap.json"), account.identity)
            start = time.perf_counter()
            client = imap.connect(account, PASSWORD)
            connected = time.perf_counter()
            summary = imap.Labeller(client, account, model, policy, state, echo=lambda line: None, jobs=jobs).run()
            done = time.perf_counter()
            client.logout()
        total = sum(summary.verdicts.values())
        assert total == len(mail), summary.line()
        stages = stage_times(server, model, policy)
        return {"connect": connected - start, "label": done - connected, "rate": total / (done - connected),
                "moved": summary.moved, **stages}
    finally:
        server.close()


def stage_times(server: Dovecot, model, policy) -> dict:
    """The same folders again, one stage at a time, in this process."""
    from partnercheck.deciding.classify import classify
    from partnercheck.reading.mail import parse_message

    client = server.client()
    raws = []
    start = time.perf_counter()
    for folder in ("INBOX", "Pitch"):
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        for i in range(0, len(uids), 500):
            data = client.fetch(uids[i:i + 500], [b"BODY.PEEK[]", b"FLAGS"])
            raws += [item[b"BODY[]"] for item in data.values()]
    fetch = time.perf_counter() - start
    client.logout()
    start = time.perf_counter()
    records = [parse_message(raw) for raw in raws]
    read = time.perf_counter() - start
    readable = [r for r in records if r.readable]
    start = time.perf_counter()
    for i in range(0, len(readable), 500):
        classify(readable[i:i + 500], model, policy)
    classify = time.perf_counter() - start
    n = len(raws)
    return {"fetch_rate": n / fetch, "read_rate": n / read, "classify_rate": len(readable) / classify}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="+", default=[os.cpu_count() or 1, 1],
                        help="worker counts to compare, run after run (default: all cores, then 1)")
    args = parser.parse_args()

    from partnercheck.deciding.model import cached_model
    from partnercheck.deciding.policy import Policy
    from partnercheck.settings import default_model_path

    model, policy = cached_model(default_model_path()), Policy()
    mail = messages(args.messages)
    size = sum(map(len, mail)) / len(mail)
    print(f"{args.messages} messages, {size:.0f} bytes on average; {args.runs} runs, each on a fresh Dovecot")
    results: dict[int, list] = {jobs: [] for jobs in args.jobs}
    for run in range(args.runs):
        for jobs in args.jobs:
            result = one_run(mail, model, policy, jobs)
            results[jobs].append(result)
            print(f"run {run + 1}, {jobs} worker(s): connect+login {result['connect'] * 1000:.0f} ms; labelled in "
                  f"{result['label']:.2f} s = {result['rate']:,.0f} messages/s ({result['moved']} moved); stages "
                  f"alone: fetch {result['fetch_rate']:,.0f}/s, read {result['read_rate']:,.0f}/s, classify "
                  f"{result['classify_rate']:,.0f}/s", flush=True)
    for jobs, runs in results.items():
        rates = [r["rate"] for r in runs]
        print(f"{jobs} worker(s): median {statistics.median(rates):,.0f} messages/s "
              f"(runs {min(rates):,.0f} to {max(rates):,.0f})")
    every = [r for runs in results.values() for r in runs]
    for key in ("fetch_rate", "read_rate", "classify_rate"):
        print(f"  {key.replace('_rate', '')} alone, one core: median {statistics.median(r[key] for r in every):,.0f}/s")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
