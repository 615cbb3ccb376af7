"""``partnercheck label --dask``: many sources labelled on a Dask cluster.

Each source (an mbox, a Maildir, a folder of .eml files, a table export) is one task: a Dask
worker reads it whole and labels it with the same code as a single machine
(:func:`partnercheck.running.batch.label_source`, one process per worker), and sends back its rows.
The client writes them in the order the sources were given, whatever order the tasks finish
in, so the output is the same row for row as without Dask. Workers read the sources and the
model at the paths the client names: on a real cluster, put them on a file system every
worker mounts (NFS, a shared volume) at the same path.

Dask is an optional extra (``pip install 'partnercheck[dask]'``); nothing here is imported
otherwise.
"""

from __future__ import annotations

from typing import Iterator

from ..errors import PartnercheckError

#: How many sources' results the client holds at most while waiting for an earlier one.
AHEAD = 64


class DaskError(PartnercheckError):
    """Dask missing, or a cluster that cannot be reached."""


def label_on_worker(path: str, fmt, columns, model_path: str, policy, skip: dict) -> list[list]:
    """All rows of one source, labelled in the worker's own process (the task Dask runs)."""
    from ..reading.sources import Source
    from .batch import label_source

    rows: list[list] = []
    for chunk in label_source(Source(path, fmt=fmt, columns=columns), model_path, policy, jobs=1, skip=skip):
        rows.extend(chunk)
    return rows


def connect(address: str):
    """A Dask client: ``local`` starts a cluster on this machine (one single-threaded worker
    process per core), anything else is a scheduler address such as ``tcp://host:8786``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise DaskError("--dask needs Dask: pip install 'partnercheck[dask]'") from None
    try:
        if address == "local":
            cluster = LocalCluster(threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            client = Client(cluster)
            client._partnercheck_cluster = cluster  # closed with the client
            return client
        return Client(address, timeout="10s")
    except OSError as exc:
        raise DaskError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def label_sources(client, sources: list, model_path: str, policy, skip: dict) -> Iterator[list[list]]:
    """Rows of each source, in the order given, labelled by the cluster's workers."""
    from collections import deque

    from dask.distributed import wait

    pending = deque()
    queued = iter(sources)

    def submit_next() -> bool:
        source = next(queued, None)
        if source is None:
            return False
        done = {(s, k): mid for (s, k), mid in skip.items() if s == source.name}
        # pure=False: a source is read anew each run, since its file may have changed.
        pending.append(client.submit(label_on_worker, source.path, source.format, source.columns, model_path,
                                     policy, done, pure=False))
        return True

    while len(pending) < AHEAD and submit_next():
        pass
    while pending:
        future = pending.popleft()
        wait([future])
        rows = future.result()
        future.release()
        submit_next()
        yield rows


def close(client) -> None:
    cluster = getattr(client, "_partnercheck_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
