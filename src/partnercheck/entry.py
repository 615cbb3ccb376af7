"""The ``partnercheck`` command's entry point.

``partnercheck filter`` is run once per delivered message, so when a ``partnercheck serve``
is listening it is answered from here with the standard library only: no click, no
scikit-learn, no nltk. Everything else, and the filter whenever no server answers or an
option needs the full command line, goes to :mod:`partnercheck.cli`.
"""

from __future__ import annotations

import os
import sys

_FAST_OPTIONS = {"--exit-zero"}


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["filter"] and set(args[1:]) <= _FAST_OPTIONS:
        code = _fast_filter(exit_zero="--exit-zero" in args)
        if code is not None:
            sys.exit(code)
    from .cli import cli

    cli(prog_name="partnercheck")


def _fast_filter(exit_zero: bool) -> int | None:
    """Filter stdin through a running server; ``None`` if there is none (stdin is then kept)."""
    from . import client, filtering

    path = _socket_path()
    if path is None or not os.path.exists(path):
        return None
    raw = sys.stdin.buffer.read()
    try:
        if len(raw) > filtering.MAX_MESSAGE_BYTES:
            raise client.ServerUnavailable("too large")
        reply = client.classify_remote(raw, path)
        if reply["label"] not in filtering.EXIT_CODES:
            raise client.ServerUnavailable(f"unknown verdict {reply['label']!r}")
    except Exception:  # whatever went wrong, the cold path still has every byte
        # Hand the bytes already read to the cold path.
        os.environ["PARTNERCHECK_STDIN_READ"] = "1"
        sys.stdin = _Replay(raw)
        return None
    out = sys.stdout.buffer
    out.write(filtering.add_header(raw, reply["header"]))
    out.flush()
    return 0 if exit_zero else filtering.EXIT_CODES.get(reply["label"], filtering.EXIT_ERROR)


def _socket_path() -> str | None:
    from .settings import ConfigError, read_config, socket_path

    try:
        return socket_path(read_config())
    except ConfigError:
        return None  # the cold path reports the broken configuration


class _Replay:
    """Stands in for stdin after its bytes were read, so the cold path reads them again."""

    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)
