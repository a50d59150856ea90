"""fashion/DGX_ssh_comm.py as a program: docs/remote.md's own command lines against a real
OpenSSH server (tests/sshd.py), and one-line errors for every kind of connection failure.

Each case runs the script in a subprocess, as a user would, so what reaches the terminal
(stderr) is exactly what is checked.
"""
import getpass
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sshd import keygen, server  # noqa: E402,F401 (server is a fixture)

from fashion import DGX_ssh_comm  # noqa: E402
from fashion.remote import jobs  # noqa: E402
from fashion.remote.settings import load_settings  # noqa: E402
from tests.ports import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "fashion/DGX_ssh_comm.py"
DOC_DEST = "work/fashion"


@pytest.fixture(scope="module")
def known_hosts(server, tmp_path_factory):
    path = tmp_path_factory.mktemp("client") / "known_hosts"
    path.write_text(server.host_public_line())
    return path


@pytest.fixture
def env(tmp_path):
    """The environment of each run: no DGX_* settings, SSH log under tmp_path/cache."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DGX_")}
    clean["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return clean


def run_script(args, env, cwd=REPO, timeout=60):
    return subprocess.run([sys.executable, str(REPO / SCRIPT), *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------- docs/remote.md command lines

def doc_lines():
    """Argument lists of docs/remote.md's bash lines that call the SSH helper."""
    text = (REPO / "docs" / "remote.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if SCRIPT in line:
                lines.append(shlex.split(line, comments=True))
    return lines


def adapt(words, ctx):
    """Point a docs/remote.md line at the test server, keeping its word order: connection
    values replaced (the test's --port/--key/--known-hosts go right after --user, or
    --host), ``work/fashion`` becomes a temporary directory, RUN_ID the last run's id."""
    assert words[:2] == ["python", SCRIPT], words
    assert "--host" in words, f"docs/remote.md line without --host: {shlex.join(words)}"
    anchor = "--user" if "--user" in words else "--host"
    out, words = [], words[2:]
    cut = words.index("--") if "--" in words else len(words)
    i = 0
    while i < cut:
        word = words[i]
        if word in ("--host", "--user", "--remote-port", "--local-port"):
            out += [word, ctx[word]]
            if word == anchor:
                out += ctx["connection"]
            i += 2
            continue
        if word == DOC_DEST or word.startswith(DOC_DEST + "/"):
            word = ctx["dest"] + word[len(DOC_DEST):]
        out.append(ctx.get("run_id", word) if word == "RUN_ID" else word)
        i += 1
    return out + words[cut:]


def without_docker(args):
    """A run line minus ``--docker [IMAGE]`` (no Docker engine here)."""
    i = args.index("--docker")
    drop = 2 if i + 1 < len(args) and not args[i + 1].startswith("-") else 1
    return args[:i] + args[i + drop:]


def check_docker_line(args, ctx):
    """The --docker line is not executed; its generated remote command line is checked."""
    parsed, command = DGX_ssh_comm.parse(args)
    image = DGX_ssh_comm._docker_image(parsed, load_settings({}, environ={}))
    script = jobs.wrapper_script(ctx["dest"], "r1", command, image, parsed.docker_arg)
    expected = ("docker run --rm --gpus all --name dgx-r1 -v \"$PWD\":/workspace "
                "-w /workspace fashion-mrcnn:latest " + shlex.join(command))
    assert expected in script, script
    assert command[:2] == ["python", "fashion/fashion.py"], command


def echo_listener():
    """A local TCP service (standing in for TensorBoard) that answers one connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"tensorboard:" + conn.recv(100))

    threading.Thread(target=answer, daemon=True).start()
    return listener


def read_line(stream, deadline):
    """One line from a pipe, or AssertionError when none arrives before the deadline."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            return stream.readline()
    raise AssertionError("no output before the deadline")


def run_tunnel_line(args, ctx, env, cwd):
    """Start the tunnel line of docs/remote.md, talk through it, then end it with Ctrl-C."""
    # Started with SIGINT ignored, as under nohup or `cmd &` (and as CI once ran this
    # test: the tunnel then ignored Ctrl-C); -X faulthandler: if it ever hangs after
    # Ctrl-C, SIGABRT prints every thread's stack.
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", str(REPO / SCRIPT),
                             *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = read_line(proc.stdout, time.monotonic() + 30)
        assert f"forwarding 127.0.0.1:{ctx['--local-port']}" in line, (
            line + proc.stderr.read() if proc.poll() is not None else line)
        with socket.create_connection(("127.0.0.1", int(ctx["--local-port"])),
                                      timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"tensorboard:ping"
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # seen once in a CI run while the CPU was shared
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
            raise AssertionError("tunnel still running 20 s after Ctrl-C; its threads:\n"
                                 + proc.stderr.read()) from None
        assert code == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def check_result(command, done, ctx, cwd):
    """What each docs/remote.md command must have done on the (local) host."""
    assert done.returncode == 0, f"{command}: {done.stderr}"
    dest = Path(ctx["dest"])
    if command == "sync":
        assert (dest / "fashion" / "fashion.py").read_text() == (
            cwd / "fashion" / "fashion.py").read_text()
    elif command == "run":
        ctx["run_id"] = done.stdout.strip().splitlines()[-1]
        assert (dest / "logs" / f"{ctx['run_id']}.pid").exists()
    elif command == "status":
        assert ctx["run_id"] in done.stdout
    elif command == "logs":  # --follow returns once the run has ended
        assert (dest / "logs" / f"{ctx['run_id']}.exit").exists()
        assert done.stdout.strip()
    elif command == "fetch":
        name = f"{ctx['run_id']}.log"
        assert (cwd / "results" / "logs" / name).read_bytes() == (
            dest / "logs" / name).read_bytes()


def test_remote_doc_command_lines_run_as_written(server, known_hosts, env, tmp_path):
    lines = doc_lines()
    commands = [next(w for w in words if w in DGX_ssh_comm.COMMANDS) for words in lines]
    assert commands == ["sync", "run", "status", "logs", "fetch", "tunnel"], commands
    project = tmp_path / "project"
    (project / "fashion").mkdir(parents=True)
    (project / "fashion" / "fashion.py").write_text("import sys\nprint('stub', sys.argv)\n")
    listener = echo_listener()
    ctx = {"--host": "127.0.0.1", "--user": getpass.getuser(),
           "dest": str(tmp_path / "home" / DOC_DEST),
           "--remote-port": str(listener.getsockname()[1]),
           "--local-port": str(free_port()),
           "connection": ["--port", str(server.port), "--key", str(server.client_key),
                          "--known-hosts", str(known_hosts)]}
    try:
        for words, command in zip(lines, commands):
            args = adapt(words, ctx)
            if command == "tunnel":
                run_tunnel_line(args, ctx, env, project)
                continue
            if "--docker" in args:
                check_docker_line(args, ctx)
                args = without_docker(args)
            check_result(command, run_script(args, env, cwd=project), ctx, project)
    finally:
        listener.close()


# ------------------------------------------------------------ one-line connection errors

class FakeServer:
    """A TCP server on 127.0.0.1 that is not sshd: ``reply`` bytes, then close
    (``reply=None``: accept nothing at all, so the client waits for a greeting)."""

    def __init__(self, reply):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        if reply is not None:
            threading.Thread(target=self._serve, args=(reply,), daemon=True).start()

    def _serve(self, reply):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by the test
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(256)  # the client's SSH greeting
                    conn.sendall(reply)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line_error(done, *expected):
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("reply", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b""],
                         ids=["http", "silent-close"])
def test_not_an_ssh_server(reply, env, tmp_path):
    fake = FakeServer(reply)
    try:
        done = run_script(["status", "--dest", "d", "--host", "127.0.0.1", "--port",
                           fake.port, "--known-hosts", tmp_path / "kh"], env)
    finally:
        fake.close()
    assert_one_line_error(done, f"not an SSH server at 127.0.0.1:{fake.port}")
    log = Path(env["XDG_CACHE_HOME"], "fashion-mrcnn", "dgx_ssh.log").read_text()
    assert "SSH protocol banner" in log  # the library's details went to the log file


def test_verbose_shows_the_library_messages(env, tmp_path):
    fake = FakeServer(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        done = run_script(["status", "--dest", "d", "--host", "127.0.0.1", "--port",
                           fake.port, "--known-hosts", tmp_path / "kh", "--verbose"], env)
    finally:
        fake.close()
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) > 1 and lines[0].startswith("ssh: ")
    assert lines[-1].startswith(f"error: not an SSH server at 127.0.0.1:{fake.port}")


def test_silent_listener_times_out(env, tmp_path):
    fake = FakeServer(None)  # listening, never answering
    t0 = time.monotonic()
    try:
        done = run_script(["status", "--dest", "d", "--host", "127.0.0.1", "--port",
                           fake.port, "--timeout", 1, "--known-hosts", tmp_path / "kh"], env)
    finally:
        fake.close()
    assert_one_line_error(done, f"127.0.0.1:{fake.port} timed out after 1 s")
    assert time.monotonic() - t0 < 20


def test_refused_and_unknown_host_name(env, tmp_path):
    port = closed_port()
    done = run_script(["status", "--dest", "d", "--host", "127.0.0.1", "--port", port],
                      env)
    assert_one_line_error(done, f"cannot reach 127.0.0.1:{port} (connection refused)")
    done = run_script(["status", "--dest", "d", "--host", "no-such-host.invalid"], env)
    assert_one_line_error(done, "cannot resolve the host name no-such-host.invalid")


def test_auth_and_host_key_failures(server, known_hosts, env, tmp_path):
    base = ["--host", "127.0.0.1", "--port", server.port]
    stranger = keygen(tmp_path / "stranger")
    done = run_script(["status", "--dest", tmp_path, *base, "--key", stranger,
                       "--known-hosts", known_hosts], env)
    assert_one_line_error(done, "refused authentication")
    fingerprint = paramiko.PKey.from_path(server.host_key).fingerprint
    done = run_script(["status", "--dest", tmp_path, *base, "--key", server.client_key,
                       "--known-hosts", tmp_path / "empty_kh"], env)
    assert_one_line_error(done, "is not in", fingerprint, "--accept-new-host-key")
    other = keygen(tmp_path / "other_host_key")
    kind, b64 = Path(f"{other}.pub").read_text().split()[:2]
    changed = tmp_path / "changed_kh"
    changed.write_text(f"[127.0.0.1]:{server.port} {kind} {b64}\n")
    done = run_script(["status", "--dest", tmp_path, *base, "--key", server.client_key,
                       "--known-hosts", changed], env)
    assert_one_line_error(done, "CHANGED", fingerprint)


def test_local_write_failure_is_one_sentence(server, known_hosts, env, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "w.h5").write_bytes(b"weights")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    done = run_script(["fetch", "--remote", remote / "w.h5", "--local", blocker / "sub",
                       "--host", "127.0.0.1", "--port", server.port, "--key",
                       server.client_key, "--known-hosts", known_hosts], env)
    assert_one_line_error(done, f"Could not write {blocker / 'sub'}", "not a directory")


# --------------------------------------------------------------------- entry point

def test_main_is_an_entry_point(capsys):
    assert DGX_ssh_comm.main(["--help"]) == 0
    assert "before or after COMMAND" in capsys.readouterr().out
    assert DGX_ssh_comm.main(["no-such-command"]) == 2
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from fashion.DGX_ssh_comm import main; "
         "assert 'tensorflow' not in sys.modules; sys.exit(main(['--host', 'h', 'sync', "
         "'--help']))"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--src" in done.stdout, done.stderr
