"""The ``partnercheck`` command's entry point.

``partnercheck filter`` is run once per delivered message, so with no option beyond
``--exit-zero`` and ``--no-server`` it is handled here without click:
:func:`partnercheck.running.filtering.filter_message` asks a running ``partnercheck serve`` (standard
library only) and loads the model in-process only when none answers. Everything else goes
to :mod:`partnercheck.interface.cli`, whose ``filter`` command calls the same function.
"""

from __future__ import annotations

import sys

_FAST_OPTIONS = {"--exit-zero", "--no-server"}


def main() -> None:
    if sys.stderr is None:  # started with stderr closed (2>&-): errors go nowhere, never into the mail on stdout
        import os

        sys.stderr = open(os.devnull, "w")
    args = sys.argv[1:]
    if args[:1] == ["serve"]:
        import signal

        # Until `serve` notes it, a SIGHUP (a closed terminal, a reload right after a start)
        # would end the server while it imports, before it has read anything a reload reads.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args[:1] == ["filter"] and set(args[1:]) <= _FAST_OPTIONS:
        sys.exit(run_filter(exit_zero="--exit-zero" in args, use_server="--no-server" not in args))
    from .cli import cli

    cli(prog_name="partnercheck")


def run_filter(exit_zero: bool, use_server: bool = True, model_option: str | None = None,
               rules_file: str | None = None) -> int:
    """Read one message from stdin, write it out with its header; the exit code."""
    try:
        return _filter_stdin(exit_zero, use_server, model_option, rules_file)
    except KeyboardInterrupt:  # Ctrl-C: one line, as for every other failure, and no traceback
        sys.stderr.write("partnercheck filter: interrupted\n")
        return 130


def _filter_stdin(exit_zero: bool, use_server: bool, model_option: str | None, rules_file: str | None) -> int:
    from ..running.filtering import MAX_MESSAGE_BYTES, filter_message, read_input

    try:
        raw = read_input(sys.stdin.buffer, MAX_MESSAGE_BYTES + 1)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # stdin closed (<&-), a read error, out of memory
        why = "standard input is closed" if sys.stdin is None else getattr(exc, "strerror", None) \
            or ": ".join(filter(None, (exc.__class__.__name__, str(exc))))
        sys.stderr.write(f"partnercheck filter: cannot read the message: {why}\n")
        return 1  # even with --exit-zero: there is nothing to pass through, and an empty output would replace the mail
    if len(raw) > MAX_MESSAGE_BYTES:  # passed through as it comes: never held whole in memory
        output, code, error = raw, 1, f"message over the {MAX_MESSAGE_BYTES}-byte limit"
        rest = _rest_of_stdin(read_input)
    else:
        (output, code, error), rest = filter_message(raw, use_server, model_option, rules_file), iter(())
    try:
        _write_all(sys.stdout.buffer, output)
        for chunk in rest:
            _write_all(sys.stdout.buffer, chunk)
        _flush(sys.stdout.buffer)
    except _ReadError as exc:
        sys.stderr.write(f"partnercheck filter: cannot read the rest of the message ({exc}); what was "
                         "written of it is cut off\n")
        return 1
    except (OSError, AttributeError, ValueError) as exc:  # the reader went away, or there is no stdout
        _quiet_stdout()
        why = "standard output is closed" if sys.stdout is None else getattr(exc, "strerror", None) \
            or exc.__class__.__name__
        sys.stderr.write(f"partnercheck filter: cannot write the message out ({why})\n")
        return 1  # even with --exit-zero: a delivery agent must not take a cut-off message for the filtered one
    if error:  # said once it is true: a message that could not be written out was not passed through
        sys.stderr.write(f"partnercheck filter: {error}; message passed through unchanged\n")
    return 0 if exit_zero else code


class _ReadError(Exception):
    """Standard input failed after the message had begun to be written out."""


def _rest_of_stdin(read_input):
    """The rest of a message too large to hold, a block at a time (``read_input`` waits on a
    non-blocking pipe)."""
    while True:
        try:
            chunk = read_input(sys.stdin.buffer, 1 << 20)
        except OSError as exc:
            raise _ReadError(exc.strerror or exc.__class__.__name__) from None
        if not chunk:
            return
        yield chunk


def _write_all(out, data: bytes) -> None:
    """Write all of ``data``. Unbuffered (``PYTHONUNBUFFERED``, ``python -u``), stdout is a raw
    file whose ``write`` makes one system call and may take only part of the data (a reader
    that goes away mid-message): write the rest, so that the failure is seen and reported.
    On a pipe its reader set non-blocking, a full pipe takes nothing: wait until it can take
    more, as :func:`~partnercheck.running.filtering.read_input` waits on such a stdin."""
    view = memoryview(data)
    while view:
        try:
            written = out.write(view)
        except BlockingIOError as exc:  # a buffered stdout says how much of it went
            written = exc.characters_written
        if not written:  # None or 0: a non-blocking stdout that is full
            import select

            select.select([], [out], [])
            continue
        view = view[written:]


def _flush(out) -> None:
    """Flush ``out``, waiting as :func:`_write_all` does while a non-blocking pipe is full."""
    while True:
        try:
            out.flush()
            return
        except BlockingIOError:
            import select

            select.select([], [out], [])


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush at exit raises nothing more."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass
