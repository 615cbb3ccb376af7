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
other clients meanwhile. One that finds no worker free soon enough (:data:`WAIT_LIMIT`) is
answered with an error, and the filter classifies it itself. Since no thread of the server
process runs long computations, a SIGTERM is handled at once whatever the workers are doing.
Workers exit within a second when the server dies, however it dies.

Given a ``loader``, the server reloads its model and policy without a restart: when any
file ``watch`` names changes (the model in force, the personal model ``learn`` writes, the
learning store with its sender memory, the config file; checked about twice a second,
between requests) and on SIGHUP (at the next of those checks). The workers are then
forked anew from the new model. A reload that fails keeps the old model and says why.
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
import stat
import sys
import threading
import time
from typing import Callable, Iterable

from ..deciding.classify import classify_one
from ..reading.mail import parse_message
from ..running import filtering
from . import client

_SYSTEMD_FIRST_FD = 3
#: Seconds a message may take to classify before it is answered "too slow".
TIME_BUDGET = 5.0
#: Seconds a message may wait for a free worker (a burst of deliveries) before the server
#: answers that it is busy and the filter classifies it itself: waiting is not the message's
#: fault, and it once made ordinary mail "too slow". With the budget, within the 7 s a
#: filter waits for an answer (:data:`~partnercheck.interface.client.REPLY_TIMEOUT`).
WAIT_LIMIT = 1.5
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
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the server's alone, though a closed terminal sends it to all
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
        self._stopping = threading.Lock()

    def stop(self) -> None:
        """Kill the process and close its pipe, once. The pool closing at shutdown and the
        thread whose request the kill cut short both stop the worker; closing the pipe twice
        at the same moment fails with EBADF, before the socket file is removed."""
        with self._stopping:
            if self.conn.closed:
                return
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

    def classify(self, raw: bytes) -> dict | None:
        """The reply for ``raw``, or None when this pool was retired before a worker was free
        (a reload replaced it: ask the new one)."""
        try:
            worker = self._idle.get(timeout=WAIT_LIMIT)
        except queue.Empty:
            return {"error": f"busy: no worker free within {WAIT_LIMIT} s"}
        if worker is None:
            self._idle.put(None)  # for the next caller still waiting on this pool
            return None
        deadline = time.monotonic() + self.budget  # the message's own time, from when a worker has it
        try:
            worker.conn.send_bytes(raw)
            if worker.conn.poll(max(0.0, deadline - time.monotonic())):
                reply = json.loads(worker.conn.recv_bytes())
                self._release(worker)
                return reply
        except (EOFError, OSError, ValueError) as exc:
            self._retire(worker)
            return {"error": f"worker failed: {exc.__class__.__name__}"}
        self._retire(worker)  # still busy with it: stop it, so that it frees its core
        return {"label": "unsure", "header": TOO_SLOW}

    def _release(self, worker: _Worker) -> None:
        if not self._closed:
            self._idle.put(worker)
            return
        with self._lock:
            self._all.discard(worker)
        worker.stop()

    def close(self, drain: bool = False) -> None:
        """Stop the workers: all at once, or with ``drain`` (a reload) the idle ones now and
        each busy one when it has answered, so that no message in flight is dropped."""
        self._closed = True
        if drain:
            while True:
                try:
                    worker = self._idle.get_nowait()
                except queue.Empty:
                    break
                if worker is not None:
                    self._release(worker)
            self._idle.put(None)
            return
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
        if "label" in reply:
            reply = {**reply, **server.settings}
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
    #: Connections the kernel queues before accept: socketserver's 5 turned a burst of 50
    #: filters into 26 that found the queue full (their connect does not wait) and classified
    #: cold, at about 2 s each.
    request_queue_size = 128

    def __init__(self, model, policy, path: str | None, inherited: socket.socket | None = None,
                 budget: float = TIME_BUDGET, workers: int | None = None,
                 loader: Callable[[], tuple] | None = None,  # () -> (model, policy, where from)
                 watch: Callable[[], Iterable[str]] | None = None, settings: dict[str, str] | None = None) -> None:
        self.model = model
        self.policy = policy
        #: The files this server's answers come from (``model``, ``config``), sent with each
        #: verdict: a filter whose environment names other ones classifies on its own.
        self.settings = dict(settings or {})
        self.budget = budget
        self._lock = threading.Lock()
        self.pool: WorkerPool | None = None
        self.loader = loader
        self.watch = watch
        self.reload_requested = False
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
        self._workers = workers or max(2, min(4, os.cpu_count() or 1))
        if "fork" in multiprocessing.get_all_start_methods():
            try:
                self.pool = WorkerPool(model, policy, self._workers, budget, self.socket)
            except BaseException:
                self.server_close()
                raise

    def classify(self, raw: bytes) -> dict:
        while self.pool is not None:
            reply = self.pool.classify(raw)
            if reply is not None:
                return reply
        with self._lock:  # no fork on this platform: classify here, without a time budget
            return classify_reply(self.model, self.policy, raw)

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
        """Called by ``serve_forever`` between requests: reload when asked (SIGHUP sets
        :attr:`reload_requested`) or when a watched file changed. A signal handler that
        reloaded itself could land inside a reload and wait forever on its lock."""
        if self.reload_requested or (self.loader is not None and self._stamps() != self._stamp):
            self.reload_requested = False
            self.reload()

    def reload(self) -> bool:
        """Load the model and policy again (SIGHUP, or a watched file changed) and fork the
        workers anew from them."""
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
            if "model" in self.settings:
                self.settings["model"] = os.path.abspath(where)
            if self.pool is not None:
                old, self.pool = self.pool, WorkerPool(model, policy, self._workers, self.budget, self.socket)
                old.close(drain=True)
        self._stamp = stamp
        print(f"partnercheck serve: reloaded {where}", file=sys.stderr, flush=True)
        return True

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
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(f"{path} exists and is not a socket; give --socket a path of its own")
    if info.st_uid != os.geteuid():  # another user's server, live or not, is theirs to clear
        raise OSError(f"{path} is a socket of another user (uid {info.st_uid}); give --socket a path of its own")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"a server is already listening on {path}")
