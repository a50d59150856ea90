"""Open a verified SSH connection and run short remote commands.

Host keys are checked against a known_hosts file: an unknown host is refused (with its
fingerprint) unless ``accept_new_host_key`` is set, in which case the key is recorded; a
changed key is always refused. Every connection failure becomes one RemoteError sentence.

Messages of the SSH library (paramiko logs handshake details and, on failures, whole
tracebacks) never reach the terminal: ``configure_logging`` sends them to
``log_path()`` (``$XDG_CACHE_HOME/fashion-mrcnn/dgx_ssh.log``, by default under
``~/.cache``; kept below about 2 MB) and, with ``--verbose``, to stderr as well.
"""
import errno
import getpass
import logging
import logging.handlers
import os
import shlex
import socket
import sys
import time
from pathlib import Path

import paramiko

from fashion.remote.settings import RemoteError
from mrcnn import fileio

_LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def log_path():
    """The file that receives the SSH library's messages."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".cache")
    return os.path.join(cache, "fashion-mrcnn", "dgx_ssh.log")


class _LogFileHandler(logging.handlers.RotatingFileHandler):
    def handleError(self, record):
        """A full or read-only disk loses log lines silently instead of printing."""


def _log_file_handler():
    path = log_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = _LogFileHandler(path, maxBytes=1 << 20, backupCount=1, encoding="utf-8")
    except OSError:
        return logging.NullHandler()
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    return handler


def configure_logging(verbose=False):
    """Route paramiko's logging to the log file (and stderr when ``verbose``), never to
    Python's last-resort stderr handler. Safe to call again: replaces its own handlers."""
    logger = logging.getLogger("paramiko")
    for handler in [h for h in logger.handlers if getattr(h, "dgx_ssh", False)]:
        logger.removeHandler(handler)
        handler.close()
    handlers = [_log_file_handler()]
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("ssh: %(levelname)s %(message)s"))
        handlers.append(stream)
    for handler in handlers:
        handler.dgx_ssh = True
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return handlers


def host_entry(host, port):
    """The known_hosts name of a host: ``host`` on port 22, else ``[host]:port``."""
    return host if int(port) == 22 else f"[{host}]:{port}"


def record_host_key(known_hosts, entry, key):
    """Append ``entry``'s key to the known_hosts file (written atomically)."""
    path = Path(known_hosts)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        old = path.read_text() if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        fileio.atomic_write_text(path, f"{old}{entry} {key.get_name()} {key.get_base64()}\n")
    except OSError as exc:
        raise RemoteError(fileio.describe_os_error(exc, path)) from None


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, or record them when the user asked to."""

    def __init__(self, settings):
        self.settings = settings

    def missing_host_key(self, client, hostname, key):
        known = self.settings.known_hosts
        if not self.settings.accept_new_host_key:
            raise RemoteError(
                f"host {hostname} is not in {known} (its {key.get_name()} key fingerprint "
                f"is {key.fingerprint}); check the fingerprint and rerun with "
                f"--accept-new-host-key to record it.")
        record_host_key(known, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _changed_key_message(settings, exc):
    entry = host_entry(settings.host, settings.port)
    return (f"host key of {entry} has CHANGED (it now offers {exc.key.get_name()} "
            f"{exc.key.fingerprint}, {settings.known_hosts} expects "
            f"{exc.expected_key.fingerprint}); refusing to connect: if the change is "
            f"expected, remove the old key with: ssh-keygen -R '{entry}' -f "
            f"{settings.known_hosts}")


class _WatchedSocket:
    """A connected socket that counts the bytes received, to tell "silent" from "not SSH"."""

    def __init__(self, sock):
        self._sock = sock
        self.received = 0

    def recv(self, size):
        data = self._sock.recv(size)
        self.received += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _timed_out(settings, waiting=""):
    return RemoteError(f"connection to {settings.host}:{settings.port} timed out after "
                       f"{settings.timeout:g} s{waiting}; check --host, --port and the "
                       f"network (or raise --timeout).")


def _open_socket(settings):
    """TCP connection to the host, or RemoteError (DNS failure, refused, timed out)."""
    where = f"{settings.host}:{settings.port}"
    try:
        return socket.create_connection((settings.host, settings.port),
                                        timeout=settings.timeout)
    except socket.gaierror as exc:
        raise RemoteError(f"cannot resolve the host name {settings.host} "
                          f"({exc.strerror or exc}); check --host or DGX_HOST.") from None
    except (socket.timeout, TimeoutError):
        raise _timed_out(settings) from None
    except ConnectionRefusedError:
        raise RemoteError(f"cannot reach {where} (connection refused); check --host/--port "
                          f"and that sshd runs there.") from None
    except OSError as exc:
        raise RemoteError(f"cannot reach {where} ({exc.strerror or exc}); check --host/"
                          f"--port and the network.") from None


def _handshake_error(settings, client, sock, exc, elapsed):
    """One sentence for a failure before authentication (no greeting, not SSH, ...)."""
    transport = client.get_transport()
    if transport is not None and transport.remote_version:
        first = (str(exc) or type(exc).__name__).splitlines()[0]
        return RemoteError(f"the SSH handshake with {settings.host}:{settings.port} failed "
                           f"({first}); check that the host runs a current sshd.")
    cause, timeout_seen = exc, False
    while cause is not None:
        timeout_seen = timeout_seen or isinstance(cause, (socket.timeout, TimeoutError))
        cause = cause.__cause__ or cause.__context__
    if sock.received == 0 and (timeout_seen or elapsed >= settings.timeout):
        return _timed_out(settings, " waiting for the SSH greeting")
    return RemoteError(f"not an SSH server at {settings.host}:{settings.port} (it did not "
                       f"answer with an SSH greeting); check --host and --port.")


def _auth_error(settings, exc):
    if isinstance(exc, paramiko.PasswordRequiredException):
        return RemoteError(f"key file {settings.key} is encrypted; load it into ssh-agent "
                           f"(ssh-add {settings.key}) and retry.")
    return RemoteError(
        f"{settings.target()} refused authentication for user {settings.user}; check "
        f"--user and --key (its public key must be in the remote authorized_keys) or "
        f"use --ask-password.")


def _client(settings):
    """An SSHClient with the known_hosts file loaded and the host key policy set."""
    client = paramiko.SSHClient()
    if os.path.exists(settings.known_hosts):
        try:
            client.load_host_keys(settings.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise RemoteError(f"cannot read known_hosts file {settings.known_hosts} "
                              f"({exc}); fix or remove the bad line.") from None
    client.set_missing_host_key_policy(_HostKeyPolicy(settings))
    return client


def connect(settings):
    """Return a connected ``paramiko.SSHClient`` or raise RemoteError with one sentence."""
    client = _client(settings)
    password = None
    if settings.ask_password:
        password = getpass.getpass(f"password for {settings.target()}: ")
    if settings.key and not os.path.isfile(settings.key):
        raise RemoteError(f"key file {settings.key} does not exist; fix --key or DGX_KEY.")
    sock = _WatchedSocket(_open_socket(settings))
    started = time.monotonic()
    try:
        client.connect(
            settings.host, port=settings.port, username=settings.user,
            key_filename=settings.key, password=password,
            look_for_keys=settings.key is None, allow_agent=True, sock=sock,
            timeout=settings.timeout, banner_timeout=settings.timeout,
            auth_timeout=settings.timeout)
    except RemoteError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise RemoteError(_changed_key_message(settings, exc)) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise _auth_error(settings, exc) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        error = _handshake_error(settings, client, sock, exc, time.monotonic() - started)
        client.close()
        raise error from None
    finally:
        if client.get_transport() is None:
            sock.close()
    client.get_transport().set_keepalive(30)  # long `logs --follow` and tunnels stay up
    return client


def execute(client, command, timeout=60, check=True):
    """Run a shell command remotely; return (exit code, stdout, stderr) as text."""
    try:
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        code = stdout.channel.recv_exit_status()
    except (socket.timeout, TimeoutError):
        raise RemoteError(f"remote command timed out after {timeout} s: "
                          f"{command[:80]}") from None
    except (OSError, paramiko.SSHException) as exc:
        raise RemoteError(f"connection lost while running a remote command ({exc}); "
                          f"rerun when the host is reachable.") from None
    if check and code != 0:
        detail = (err.strip() or out.strip()).splitlines()
        raise RemoteError(f"remote command failed with exit code {code}"
                          f"{': ' + detail[-1] if detail else ''}.")
    return code, out, err


def sh(*words):
    """Quote words for the remote POSIX shell (no expansion of $, ;, backticks, ...)."""
    return " ".join(shlex.quote(str(w)) for w in words)


def remote_path(path):
    """Normalise a remote path: ``~/x`` becomes ``x`` (SFTP and ssh start in home)."""
    path = str(path)
    if path in ("~", "~/"):
        return "."
    if path.startswith("~/"):
        return path[2:]
    return path.rstrip("/") or "/"


def io_error(exc, what, client=None, directory=None, needed=0):
    """Map an SFTP/OS error during a transfer to a RemoteError with a clear sentence."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return RemoteError(f"disk full while writing {what}; free space and rerun "
                           f"(the rerun resumes).")
    if client is not None and directory is not None and _remote_disk_full(
            client, directory, needed):
        return RemoteError(f"remote disk full under {directory} while writing {what}; "
                           f"free space on the host and rerun.")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
        return RemoteError(f"permission denied writing {what}; choose a writable "
                           f"destination.")
    if isinstance(exc, (EOFError, socket.error, paramiko.SSHException)):
        return RemoteError(f"connection lost while transferring {what}; rerun the same "
                           f"command to complete it.")
    return RemoteError(f"transfer of {what} failed ({exc}); rerun the same command, or "
                       f"check the path and free space.")


def _remote_disk_full(client, directory, needed):
    """True when ``df`` says the remote file system holding ``directory`` is (nearly) full."""
    try:
        code, out, _ = execute(client, "df -Pk " + sh(directory), timeout=20, check=False)
    except RemoteError:
        return False
    lines = out.strip().splitlines()
    if code != 0 or len(lines) < 2:
        return False
    fields = lines[-1].split()
    try:
        available_kb = int(fields[3])
    except (IndexError, ValueError):
        return False
    return available_kb * 1024 < max(needed, 64 * 1024)
