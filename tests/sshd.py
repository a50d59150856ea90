"""Start a real OpenSSH server on 127.0.0.1 for tests (host and client keys made here).

``SshServer(tmpdir).start()`` writes an sshd_config (key login only, root allowed with
a key, ``StrictModes no``, ``UsePAM no``, pid file in ``tmpdir``), runs
``/usr/sbin/sshd -D -e -f CONFIG`` as a child process on a free port, and waits until
it answers. ``stop()`` terminates it. If sshd is missing this raises RuntimeError with a
clear message (tests must fail, not skip).
"""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.ports import free_port

SSHD = "/usr/sbin/sshd"


def keygen(path, kind="ed25519"):
    """Generate an unencrypted key pair at ``path`` / ``path.pub``; returns the path."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "dgx-test", "-f",
                    str(path)], check=True, stdout=subprocess.DEVNULL)
    return Path(path)


def _sftp_server():
    for path in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                 "/usr/libexec/sftp-server"):
        if os.path.exists(path):
            return path
    return "internal-sftp"


class SshServer:
    def __init__(self, directory, extra_config=()):
        self.dir = Path(directory)
        self.extra_config = list(extra_config)  # more sshd_config lines, e.g. SetEnv
        self.port = free_port()
        self.process = None

    def start(self, timeout=15.0):
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} is missing: install openssh-server (apt-get install "
                               f"openssh-server) to run the remote-training tests.")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(self.dir / "host_ed25519")
        self.client_key = keygen(self.dir / "client_ed25519")
        self.authorized_keys = self.dir / "authorized_keys"
        self.authorized_keys.write_text((self.dir / "client_ed25519.pub").read_text())
        self.config = self.dir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}", f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "AllowTcpForwarding yes", "X11Forwarding no", "PrintMotd no",
            "MaxStartups 100", "MaxSessions 100", "LogLevel ERROR",
            f"Subsystem sftp {_sftp_server()}", *self.extra_config, ""]))
        self.log = open(self.dir / "sshd.log", "wb")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with code {self.process.returncode}: "
                                   f"{(self.dir / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer on port {self.port} within {timeout} s")

    def host_public_line(self, name=None):
        """A known_hosts line for this server's host key."""
        kind, b64 = (self.dir / "host_ed25519.pub").read_text().split()[:2]
        return f"{name or f'[127.0.0.1]:{self.port}'} {kind} {b64}\n"

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running SshServer for one test module (fails if sshd is missing)."""
    srv = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield srv
    srv.stop()
