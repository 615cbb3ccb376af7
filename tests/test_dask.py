"""`partnercheck label --dask`: sources labelled on a Dask cluster give the same rows, in the
same order, as on one machine. The cluster is real: a scheduler and two worker processes on
loopback, as `dask-scheduler` and `dask-worker` would run them on other machines."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from conftest import DATA, write

pytest.importorskip("dask.distributed")

from partnercheck.interface.cli import cli  # noqa: E402


def _sources(tmp_path):
    """Shards of every kind: mboxes, a Maildir, a folder of .eml files, a CSV export."""
    files = sorted(DATA.glob("*/*.eml"))[::9]
    shards = []
    for n in range(4):
        part = files[n::6]
        shards.append(write(tmp_path / "archive" / f"shard{n}.mbox", b"".join(
            b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n" for p in part)))
    maildir = tmp_path / "archive" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i, p in enumerate(files[4::6]):
        shutil.copy(p, maildir / "cur" / f"{i}.host:2,S")
    folder = tmp_path / "archive" / "emls"
    folder.mkdir()
    for p in files[5::6]:
        shutil.copy(p, folder / p.name)
    table = write(tmp_path / "archive" / "export.csv", "subject,body\n" + "".join(
        f'"note {i}","We could co-host a workshop and split the costs, item {i}."\n' for i in range(5)))
    return [str(s) for s in shards] + [str(maildir), str(folder), str(table)]


def test_label_on_a_dask_cluster_gives_the_single_machine_rows(small_model_path, tmp_path, monkeypatch):
    from dask.distributed import LocalCluster

    monkeypatch.setenv("PARTNERCHECK_MODEL", small_model_path)
    sources = _sources(tmp_path)
    runner = CliRunner()
    alone = runner.invoke(cli, ["label", *sources, "-o", str(tmp_path / "alone.csv"), "-j", "1"])
    assert alone.exit_code == 0, alone.output
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        spread = runner.invoke(cli, ["label", *sources, "-o", str(tmp_path / "dask.csv"),
                                     "--dask", cluster.scheduler_address])
        assert spread.exit_code == 0, spread.output
        workers = cluster.scheduler_info["workers"]
        assert len(workers) == 2
    expected = (tmp_path / "alone.csv").read_text()
    assert (tmp_path / "dask.csv").read_text() == expected
    assert expected.count("\n") > 50 and all(s in expected for s in sources)
    assert spread.output == alone.output  # the same summary: counts per verdict


def test_dask_unreachable_is_one_line(small_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTNERCHECK_MODEL", small_model_path)
    mbox = write(tmp_path / "a.mbox", b"From x@y Mon Jan  1 00:00:00 2024\nSubject: hi\n\nhello\n")
    result = CliRunner().invoke(cli, ["label", str(mbox), "--dask", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.output


def test_standard_input_is_not_sent_to_a_cluster(small_model_path, monkeypatch):
    monkeypatch.setenv("PARTNERCHECK_MODEL", small_model_path)
    result = CliRunner().invoke(cli, ["label", "-", "--dask", "local"], input=b"Subject: hi\n\nhello\n")
    assert result.exit_code == 2 and "standard input stays here" in result.output
