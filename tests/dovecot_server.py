"""A throwaway Dovecot for tests and benchmarks: its own config, runtime, state, log and
Maildir in one temporary folder, one test user, listening on free loopback ports, run in
the foreground (``dovecot -F``) and stopped at the end. Nothing outside the temporary
folder is changed.

Dovecot refuses to give mail access to UID 0, so when the tests run as root the mailbox
belongs to ``nobody`` (and Dovecot's login and internal processes run as the ``dovenull``
and ``dovecot`` users its package creates); as anyone else everything runs as that user.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
DOVEADM = shutil.which("doveadm") or ("/usr/bin/doveadm" if os.path.exists("/usr/bin/doveadm") else None)
OPENSSL = shutil.which("openssl")
USER = "sam"
PASSWORD = "correct horse"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _users() -> dict[str, str]:
    """Who runs what: mail access, login processes, internal processes."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        return {"mail": me, "mail_group": group, "login": me, "internal": me, "internal_group": group}
    nobody = pwd.getpwnam("nobody")
    return {"mail": "nobody", "mail_group": grp.getgrgid(nobody.pw_gid).gr_name,
            "login": "dovenull", "internal": "dovecot", "internal_group": "dovecot"}


def as_mail_user() -> dict:
    """``subprocess`` arguments that run a command as the mail user, without root's groups,
    when the tests run as root; none otherwise."""
    if os.geteuid() != 0:
        return {}
    users = _users()
    return {"user": users["mail"], "group": users["mail_group"], "extra_groups": []}


def mail_user_can_run(argv: list[str]) -> bool:
    """Whether the mail user can run ``argv``: not a Python under /root, for one."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=120, cwd="/", **as_mail_user()).returncode == 0
    except PermissionError:
        return False


class Dovecot:
    """One Dovecot instance; ``capabilities`` replaces the advertised IMAP capability list
    (to play a server without MOVE or IDLE), ``tls`` adds STARTTLS and an imaps port with
    a self-signed certificate made by openssl."""

    def __init__(self, tls: bool = False, capabilities: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pc-imaptest-dovecot-"))
        os.chmod(self.root, 0o755)
        self.users = _users()
        self.mail = self.root / "mail"
        self.mail.mkdir()
        if os.geteuid() == 0:
            info = pwd.getpwnam(self.users["mail"])
            os.chown(self.mail, info.pw_uid, info.pw_gid)
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.tls = tls
        self.cert = self.root / "cert.pem"
        if tls:
            self._make_certificate()
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(self._config(capabilities))
        self.log = self.root / "dovecot.log"
        self.process: subprocess.Popen | None = None

    def _make_certificate(self) -> None:
        key = self.root / "key.pem"
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(key), "-out", str(self.cert)],
                       check=True, capture_output=True, timeout=60)
        os.chmod(key, 0o644)

    def _config(self, capabilities: str | None) -> str:
        u, r = self.users, self.root
        tls = (f"ssl = yes\nssl_cert = <{r}/cert.pem\nssl_key = <{r}/key.pem\n" if self.tls else "ssl = no\n")
        caps = f"imap_capability = {capabilities}\n" if capabilities else ""
        imaps = (f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n    ssl = yes\n  }}\n"
                 if self.tls else "  inet_listener imaps {\n    port = 0\n  }\n")
        return f"""\
base_dir = {r}/run
state_dir = {r}/state
instance_name = partnercheck-test-{self.port}
protocols = imap
listen = 127.0.0.1
log_path = {r}/dovecot.log
{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = {u['login']}
default_internal_user = {u['internal']}
default_internal_group = {u['internal_group']}
mail_uid = {u['mail']}
mail_gid = {u['mail_group']}
first_valid_uid = 1
mail_location = maildir:{r}/mail/%u
{caps}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={u['mail']} gid={u['mail_group']} home={r}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
{imaps}}}
service anvil {{
  chroot =
}}
"""

    # ----------------------------------------------------------- running

    def start(self) -> "Dovecot":
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr.log", "ab"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.logs()}")

    def stop(self) -> None:
        """Stop this Dovecot and every process it started: logged-in imap processes outlive
        the master, and a stop must drop their connections as a real server restart does."""
        if self.process is not None and self.process.poll() is None:
            children = _descendants(self.process.pid)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        parts = []
        for name in ("dovecot.log", "stderr.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def doveadm(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOVEADM, "-c", str(self.conf), *args], capture_output=True, text=True,
                              timeout=60, check=True)

    # ------------------------------------------------------------ mailbox

    def client(self):
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def append(self, messages: list[bytes], folder: str = "INBOX", flags: tuple = ()) -> None:
        """Deliver messages (line ends made CRLF, as IMAP wants them)."""
        client = self.client()
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for start in range(0, len(messages), 500):
                chunk = [crlf(m) for m in messages[start:start + 500]]
                if client.has_capability("MULTIAPPEND"):
                    client.multiappend(folder, [{"msg": m, "flags": flags} for m in chunk])
                else:
                    for m in chunk:
                        client.append(folder, m, flags)
        finally:
            client.logout()

    def folder(self, folder: str = "INBOX") -> dict[int, tuple[bytes, frozenset]]:
        """UID -> (bytes, flags) of every message in ``folder`` (read without marking seen)."""
        client = self.client()
        try:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            data = client.fetch(uids, [b"BODY.PEEK[]", b"FLAGS"])
            return {uid: (item[b"BODY[]"], frozenset(f for f in item[b"FLAGS"] if f != b"\\Recent"))
                    for uid, item in data.items()}
        finally:
            client.logout()

    def snapshot(self, ignore: set[bytes] = frozenset()) -> Counter:
        """Every message of every folder as (bytes, flags other than ``ignore``), counted:
        equal snapshots mean nothing was lost, duplicated or altered."""
        client = self.client()
        try:
            names = [name for _, _, name in client.list_folders()]
        finally:
            client.logout()
        seen: Counter = Counter()
        for name in names:
            for body, flags in self.folder(name).values():
                seen[(body, frozenset(f for f in flags if f.lower() not in ignore))] += 1
        return seen


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def crlf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
