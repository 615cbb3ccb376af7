"""``partnercheck serve``: keep the model loaded and classify messages sent over a Unix socket.

Loading scikit-learn, nltk and the model takes seconds; a mail server that starts a fresh
filter process per message cannot pay that each time (hence SpamAssassin's spamd/spamc).
The server loads everything once; ``partnercheck filter`` finds the socket and asks it.
It can also be started by systemd socket activation: when systemd passes a listening
socket (``LISTEN_FDS``), the server uses it instead of binding its own.

Given a ``loader``, the server reloads its model and policy without a restart: when any
file ``watch`` names changes (the model in force, the personal model ``learn`` writes, the
learning store with its sender memory, the config file; checked about twice a second,
between requests) and on SIGHUP. A reload that fails keeps the old model and says why.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sys
import threading
from typing import Callable, Iterable

from . import client, filtering
from .mail import parse_message

_SYSTEMD_FIRST_FD = 3


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        server: ClassifyServer = self.server  # type: ignore[assignment]
        self.request.settimeout(30)
        try:
            raw = client.read_frame(self.request, filtering.MAX_MESSAGE_BYTES)
        except (OSError, ValueError):
            return
        try:
            reply = server.classify(raw)
        except Exception as exc:  # the client falls back to the cold path
            reply = {"error": f"{exc.__class__.__name__}: {exc}"}
        try:
            client.send_frame(self.request, json.dumps(reply).encode())
        except OSError:
            pass


class ClassifyServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threaded Unix-socket server around one loaded model."""

    daemon_threads = True

    def __init__(self, model, policy, path: str | None, inherited: socket.socket | None = None,
                 loader: Callable[[], tuple] | None = None,  # () -> (model, policy, where from)
                 watch: Callable[[], Iterable[str]] | None = None) -> None:
        self.model = model
        self.policy = policy
        self._lock = threading.Lock()
        self.loader = loader
        self.watch = watch
        self._stamp = self._stamps()
        self.owns_path = inherited is None
        if inherited is not None:
            super().__init__(inherited.getsockname(), _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = inherited
        else:
            _clear_stale(path)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            super().__init__(path, _Handler)
            os.chmod(path, 0o600)

    def classify(self, raw: bytes) -> dict:
        record = parse_message(raw)
        if not record.readable:
            return {"label": "unsure", "header": filtering.UNREADABLE}
        with self._lock:
            verdict = self.model.classify(record, self.policy)
        return {"label": verdict.label,
                "header": filtering.header_value(verdict.label, verdict.score, verdict.rule_ids)}

    def _stamps(self) -> tuple:
        if self.watch is None:
            return ()
        try:
            paths = list(self.watch())
        except Exception as exc:  # a broken config file: reloading will say what is wrong
            return (repr(exc),)
        stamps = []
        for path in paths:
            try:
                info = os.stat(path)
                stamps.append((path, info.st_mtime_ns, info.st_size, info.st_ino))
            except OSError:
                stamps.append((path, None))
        return tuple(stamps)

    def service_actions(self):
        """Called by ``serve_forever`` between requests: reload when a watched file changed."""
        if self.loader is not None and self._stamps() != self._stamp:
            self.reload()

    def reload(self) -> bool:
        """Load the model and policy again (SIGHUP, or a watched file changed)."""
        if self.loader is None:
            return False
        stamp = self._stamps()
        try:
            model, policy, where = self.loader()
        except Exception as exc:
            print(f"partnercheck serve: reload failed, keeping the loaded model: {exc}", file=sys.stderr, flush=True)
            self._stamp = stamp  # not again until something changes once more
            return False
        with self._lock:
            self.model, self.policy = model, policy
        self._stamp = stamp
        print(f"partnercheck serve: reloaded {where}", file=sys.stderr, flush=True)
        return True

    def server_close(self):
        super().server_close()
        if self.owns_path and isinstance(self.server_address, str):
            try:
                os.unlink(self.server_address)
            except OSError:
                pass


def systemd_socket() -> socket.socket | None:
    """The listening socket systemd passed to this process, if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=_SYSTEMD_FIRST_FD)


def _clear_stale(path: str) -> None:
    """Remove a socket file left by a server that died; refuse if one is still answering."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"a server is already listening on {path}")
