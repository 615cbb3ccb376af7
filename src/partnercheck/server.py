"""``partnercheck serve``: keep the model loaded and classify messages sent over a Unix socket.

Loading scikit-learn, nltk and the model takes seconds; a mail server that starts a fresh
filter process per message cannot pay that each time (hence SpamAssassin's spamd/spamc).
The server loads everything once; ``partnercheck filter`` finds the socket and asks it.
It can also be started by systemd socket activation: when systemd passes a listening
socket (``LISTEN_FDS``), the server uses it instead of binding its own.

Connections are handled by threads, but messages are classified by a few worker processes
forked after the model is loaded (so they share its memory). Each request has a time
budget (:data:`TIME_BUDGET`): a message that takes longer is answered ``unsure`` with the
reason "too slow", its worker is killed and replaced, and the other workers go on serving
other clients meanwhile. Since no thread of the server process runs long computations, a
SIGTERM is handled at once whatever the workers are doing. Workers exit within a second
when the server dies, however it dies.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import queue
import signal
import socket
import socketserver
import threading
import time

from . import client, filtering
from .classify import classify_one
from .mail import parse_message

_SYSTEMD_FIRST_FD = 3
#: Seconds a message may take to classify before it is answered "too slow".
TIME_BUDGET = 5.0
#: The header for a message that took longer than the budget.
TOO_SLOW = "unsure; score=0.00; too slow"


def classify_reply(model, policy, raw: bytes) -> dict:
    """The reply for one message: its label and the X-Partnercheck header value."""
    verdict = classify_one(parse_message(raw), model, policy, clues=False)
    return {"label": verdict.label, "header": filtering.header_for(verdict)}


def _work(conn, model, policy, listener, parent: int) -> None:
    """A worker process: classify each message that arrives on ``conn`` until the server goes."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if listener is not None:
        listener.close()  # this process's copy only: it must not keep the socket alive
    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return
                continue
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply = classify_reply(model, policy, raw)
        except Exception as exc:  # the client falls back to the cold path
            reply = {"error": f"{exc.__class__.__name__}: {exc}"}
        try:
            conn.send_bytes(json.dumps(reply).encode())
        except OSError:
            return


class _Worker:
    def __init__(self, context, model, policy, listener) -> None:
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=_work, args=(theirs, model, policy, listener, os.getpid()),
                                       daemon=True)
        self.process.start()
        theirs.close()

    def stop(self) -> None:
        try:
            self.process.kill()
            self.process.join(timeout=5)
        except (OSError, ValueError, AssertionError):
            pass
        self.conn.close()


class WorkerPool:
    """Forked workers that classify one message at a time each, under a time budget."""

    def __init__(self, model, policy, size: int, budget: float, listener=None) -> None:
        self._context = multiprocessing.get_context("fork")
        self._args = (model, policy, listener)
        self.budget = budget
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        gc.freeze()  # forked workers share the model's memory instead of copying it
        for _ in range(size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, *self._args)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.stop()
        if not self._closed:
            self._idle.put(self._spawn())

    def classify(self, raw: bytes) -> dict:
        deadline = time.monotonic() + self.budget
        try:
            worker = self._idle.get(timeout=self.budget)
        except queue.Empty:
            return {"label": "unsure", "header": TOO_SLOW}
        try:
            worker.conn.send_bytes(raw)
            if worker.conn.poll(max(0.0, deadline - time.monotonic())):
                reply = json.loads(worker.conn.recv_bytes())
                self._idle.put(worker)
                return reply
        except (EOFError, OSError, ValueError) as exc:
            self._retire(worker)
            return {"error": f"worker failed: {exc.__class__.__name__}"}
        self._retire(worker)  # still busy with it: stop it, so that it frees its core
        return {"label": "unsure", "header": TOO_SLOW}

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        server: ClassifyServer = self.server  # type: ignore[assignment]
        self.request.settimeout(30)
        try:
            raw, framed = client.read_request(self.request, filtering.MAX_MESSAGE_BYTES)
        except (OSError, ValueError):
            return
        try:
            reply = server.classify(raw)
        except Exception as exc:  # the client falls back to the cold path
            reply = {"error": f"{exc.__class__.__name__}: {exc}"}
        try:
            if framed:
                client.send_frame(self.request, json.dumps(reply).encode())
            else:  # plain: one line of JSON for socat, nc and scripts
                self.request.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass


class ClassifyServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threaded Unix-socket server around one loaded model."""

    daemon_threads = True

    def __init__(self, model, policy, path: str | None, inherited: socket.socket | None = None,
                 budget: float = TIME_BUDGET, workers: int | None = None) -> None:
        self.model = model
        self.policy = policy
        self.budget = budget
        self._lock = threading.Lock()
        self.pool: WorkerPool | None = None
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
        if "fork" in multiprocessing.get_all_start_methods():
            size = workers or max(2, min(4, os.cpu_count() or 1))
            try:
                self.pool = WorkerPool(model, policy, size, budget, self.socket)
            except BaseException:
                self.server_close()
                raise

    def classify(self, raw: bytes) -> dict:
        if self.pool is not None:
            return self.pool.classify(raw)
        with self._lock:  # no fork on this platform: classify here, without a time budget
            return classify_reply(self.model, self.policy, raw)

    def server_close(self):
        if self.pool is not None:
            self.pool.close()
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
