"""Open a verified SSH connection and run short remote commands.

Host keys are checked against a known_hosts file: an unknown host is refused (with its
fingerprint) unless ``accept_new_host_key`` is set, in which case the key is recorded; a
changed key is always refused.
"""
import errno
import getpass
import os
import shlex
import socket
import tempfile
from pathlib import Path

import paramiko

from fashion.remote.settings import RemoteError


def host_entry(host, port):
    """The known_hosts name of a host: ``host`` on port 22, else ``[host]:port``."""
    return host if int(port) == 22 else f"[{host}]:{port}"


def record_host_key(known_hosts, entry, key):
    """Append ``entry``'s key to the known_hosts file atomically (temp file + rename)."""
    path = Path(known_hosts)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{old}{entry} {key.get_name()} {key.get_base64()}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


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


def connect(settings):
    """Return a connected ``paramiko.SSHClient`` or raise RemoteError with one sentence."""
    client = paramiko.SSHClient()
    if os.path.exists(settings.known_hosts):
        try:
            client.load_host_keys(settings.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise RemoteError(f"cannot read known_hosts file {settings.known_hosts} "
                              f"({exc}); fix or remove the bad line.") from None
    client.set_missing_host_key_policy(_HostKeyPolicy(settings))
    password = None
    if settings.ask_password:
        password = getpass.getpass(f"password for {settings.target()}: ")
    if settings.key and not os.path.isfile(settings.key):
        raise RemoteError(f"key file {settings.key} does not exist; fix --key or DGX_KEY.")
    try:
        client.connect(
            settings.host, port=settings.port, username=settings.user,
            key_filename=settings.key, password=password,
            look_for_keys=settings.key is None, allow_agent=True,
            timeout=settings.timeout, banner_timeout=settings.timeout,
            auth_timeout=settings.timeout)
    except RemoteError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise RemoteError(_changed_key_message(settings, exc)) from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise RemoteError(f"key file {settings.key} is encrypted; load it into ssh-agent "
                          f"(ssh-add {settings.key}) and retry.") from None
    except paramiko.AuthenticationException:
        client.close()
        raise RemoteError(
            f"{settings.target()} refused authentication for user {settings.user}; check "
            f"--user and --key (its public key must be in the remote authorized_keys) or "
            f"use --ask-password.") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise RemoteError(f"connection to {settings.host}:{settings.port} timed out after "
                          f"{settings.timeout:g} s; check --host, --port and the "
                          f"network.") from None
    except (OSError, paramiko.SSHException) as exc:
        client.close()
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            reason = "connection refused"
        raise RemoteError(f"cannot reach {settings.host}:{settings.port} ({reason}); "
                          f"check --host/--port and that sshd runs there.") from None
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
