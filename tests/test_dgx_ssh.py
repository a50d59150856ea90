"""fashion/DGX_ssh_comm.py against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

The "remote" host is this machine, so the tests check remote files directly on disk.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paramiko
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sshd import keygen, server  # noqa: E402,F401 (server is a fixture)

from fashion import DGX_ssh_comm  # noqa: E402
from fashion.remote import jobs, transfer  # noqa: E402
from fashion.remote.connection import connect  # noqa: E402
from fashion.remote.settings import RemoteError, load_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def ssh_log_in_tmp(tmp_path, monkeypatch):
    """The SSH library's log file (connection.log_path) goes under tmp_path, not ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def flags(server, tmp_path_factory):
    """Connection flags with the server's host key already trusted."""
    known = tmp_path_factory.mktemp("client") / "known_hosts"
    known.write_text(server.host_public_line())
    return ["--host", "127.0.0.1", "--port", str(server.port), "--key",
            str(server.client_key), "--known-hosts", str(known)]


def cli(capsys, *argv):
    """Run main(argv) in-process; return (exit code, stdout, stderr)."""
    code = DGX_ssh_comm.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def start(capsys, flags, dest, *command, extra=()):
    code, out, err = cli(capsys, "run", "--dest", dest, *flags, *extra, "--", *command)
    assert code == 0, err
    return out.strip().splitlines()[-1]


def wait_state(capsys, flags, dest, run_id, state="exited", timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, out, err = cli(capsys, "status", run_id, "--dest", dest, *flags)
        assert code == 0, err
        if f"{run_id}  {state}" in out:
            return out
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not {state} after {timeout} s: {out}")


def make_tree(root):
    (root / "pkg" / "build").mkdir(parents=True)
    (root / "pkg" / "model.py").write_text("print('model')\n")
    (root / "pkg" / "model.pyc").write_bytes(b"\x00compiled")
    (root / "pkg" / "build" / "out.o").write_bytes(b"obj")
    (root / "train.py").write_text("print('train')\n")
    (root / "secret.txt").write_text("do not send")
    (root / "big.bin").write_bytes(os.urandom(200_000))
    (root / ".gitignore").write_text("# comment\n*.pyc\nbuild/\n")
    os.symlink("/etc/hostname", root / "outside_link")  # leaves the tree: skipped
    os.symlink("/", root / "root_dir_link")  # directory link: never followed
    os.symlink("train.py", root / "inside_link.py")  # in-tree file link: sent as a file


def test_sync_incremental_excludes_and_links(capsys, flags, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "remote" / "proj"
    src.mkdir()
    make_tree(src)
    code, out, err = cli(capsys, "sync", "--src", src, "--dest", dest, "--exclude",
                         "secret.txt", *flags)
    assert code == 0, err
    assert "5 files sent" in out and "skipped link outside_link" in out
    for rel in ("pkg/model.py", "train.py", "big.bin", ".gitignore", "inside_link.py"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes(), rel
        assert int((dest / rel).stat().st_mtime) == int((src / rel).stat().st_mtime)
    for rel in ("pkg/model.pyc", "pkg/build", "secret.txt", "outside_link", "root_dir_link"):
        assert not os.path.lexists(dest / rel), rel
    assert not list(dest.rglob("*.part"))

    code, out, err = cli(capsys, "sync", "--src", src, "--dest", dest, "--exclude",
                         "secret.txt", *flags)
    assert code == 0 and "0 files sent, 0 bytes" in out, out + err

    (src / "train.py").write_text("print('train v2')\n")
    code, out, _ = cli(capsys, "sync", "--src", src, "--dest", dest, "--exclude",
                       "secret.txt", *flags)
    assert "sent train.py" in out and "sent inside_link.py" in out
    assert "2 files sent" in out
    assert (dest / "train.py").read_text() == "print('train v2')\n"


def test_broken_sync_leaves_no_complete_looking_file_and_rerun_finishes(
        capsys, server, flags, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "remote"
    src.mkdir()
    (src / "a.txt").write_text("small")
    (src / "b.bin").write_bytes(os.urandom(3_000_000))
    settings = load_settings({"host": "127.0.0.1", "port": server.port,
                              "key": str(server.client_key),
                              "known_hosts": flags[flags.index("--known-hosts") + 1]})
    client = connect(settings)

    def cut_connection(line):  # called after a.txt is sent, before b.bin starts
        client.get_transport().close()

    with pytest.raises(RemoteError, match="connection lost.*rerun"):
        transfer.sync(client, str(src), str(dest), out=cut_connection)
    assert (dest / "a.txt").read_text() == "small"
    assert not (dest / "b.bin").exists()  # at most b.bin.part, never a short b.bin
    code, out, err = cli(capsys, "sync", "--src", src, "--dest", dest, *flags)
    assert code == 0 and "1 files sent" in out, out + err
    assert (dest / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
    assert not (dest / "b.bin.part").exists()


def test_shell_metacharacters_are_data_not_code(capsys, flags, tmp_path):
    token = uuid.uuid4().hex[:10]
    pwned, pwned2 = Path(f"/tmp/pwned_{token}"), Path(f"/tmp/pwned2_{token}")
    # file names cannot hold "/", so the absolute path is spelled with printf escapes
    name = f"a; touch pwned_{token}; touch \"$(printf '\\057tmp\\057pwned_{token}')\""
    src, dest = tmp_path / "src", tmp_path / "remote"
    src.mkdir()
    (src / name).write_text("payload\n")
    code, out, err = cli(capsys, "sync", "--src", src, "--dest", dest, *flags)
    assert code == 0, err
    assert (dest / name).read_text() == "payload\n"
    literal = f"$(touch {pwned2})"
    run_id = start(capsys, flags, dest, "sh", "-c", 'cat "$1"; printf "%s\\n" "$2"',
                   "sh", name, literal)
    wait_state(capsys, flags, dest, run_id)
    code, out, _ = cli(capsys, "logs", run_id, "--dest", dest, *flags)
    assert out.splitlines() == ["payload", literal]
    assert not pwned.exists() and not pwned2.exists()
    for where in (dest, src, Path.home(), Path.cwd()):
        assert not (where / f"pwned_{token}").exists()


def test_run_status_logs_and_exit_code(capsys, flags, tmp_path):
    dest = tmp_path / "remote"
    run_id = start(capsys, flags, dest, "sh", "-c", "echo hello; echo oops >&2; exit 3")
    out = wait_state(capsys, flags, dest, run_id)
    assert "exit code 3" in out
    assert (dest / "logs" / f"{run_id}.exit").read_text().strip() == "3"
    code, out, _ = cli(capsys, "logs", run_id, "--dest", dest, *flags)
    assert code == 0 and out.splitlines() == ["hello", "oops"]
    code, out, _ = cli(capsys, "logs", run_id, "--dest", dest, "--tail", 1, *flags)
    assert out.splitlines() == ["oops"]
    code, out, _ = cli(capsys, "status", "--dest", dest, *flags)  # all runs
    assert f"{run_id}  exited with exit code 3" in out


def test_command_not_found_is_127_with_a_clear_message(capsys, flags, tmp_path):
    dest = tmp_path / "remote"
    run_id = start(capsys, flags, dest, "no_such_program_xyz", "--flag")
    out = wait_state(capsys, flags, dest, run_id)
    assert "exit code 127" in out and "command not found: no_such_program_xyz" in out
    _, log, _ = cli(capsys, "logs", run_id, "--dest", dest, *flags)
    assert "'no_such_program_xyz' was not found on the host" in log


def test_logs_follow_until_the_run_ends(capsys, flags, tmp_path):
    dest = tmp_path / "remote"
    run_id = start(capsys, flags, dest, "sh", "-c",
                   "for i in 1 2 3; do echo line$i; sleep 0.4; done")
    code, out, err = cli(capsys, "logs", run_id, "--dest", dest, "--follow", *flags)
    assert code == 0, err
    assert out.splitlines() == ["line1", "line2", "line3"]


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_a_long_run_then_fetch_its_log(capsys, flags, tmp_path):
    dest = tmp_path / "remote"
    run_id = start(capsys, flags, dest, "sh", "-c", "echo started; sleep 60; echo never")
    out = wait_state(capsys, flags, dest, run_id, state="running")
    pid = int((dest / "logs" / f"{run_id}.pid").read_text())
    assert _alive(pid)
    t0 = time.monotonic()
    code, out, err = cli(capsys, "stop", run_id, "--dest", dest, "--grace", 3, *flags)
    assert code == 0 and "stopped with SIGTERM" in out, out + err
    assert time.monotonic() - t0 < 5
    assert not _alive(pid)
    out = wait_state(capsys, flags, dest, run_id)
    assert "exit code 143" in out and "SIGTERM" in out
    code, out, err = cli(capsys, "fetch", "--remote", dest / "logs" / f"{run_id}.log",
                         "--local", tmp_path / "back", *flags)
    assert code == 0, err
    log = (tmp_path / "back" / f"{run_id}.log").read_text()
    assert log.startswith("started\n") and "never" not in log
    code, out, err = cli(capsys, "stop", "no-such-run", "--dest", dest, *flags)
    assert code == 2 and "unknown" in err


def test_fetch_directory_resume_and_skip_unchanged(capsys, flags, tmp_path):
    remote = tmp_path / "remote" / "checkpoints"
    (remote / "sub").mkdir(parents=True)
    blob = os.urandom(300_000)
    (remote / "ckpt.h5").write_bytes(blob)
    (remote / "sub" / "pred.jsonl").write_text('{"id": 1}\n')
    local = tmp_path / "local"
    (local / "checkpoints").mkdir(parents=True)
    partial = local / "checkpoints" / "ckpt.h5.part"  # left by an interrupted fetch
    partial.write_bytes(blob[:100_000])
    code, out, err = cli(capsys, "fetch", "--remote", remote, "--local", local, *flags)
    assert code == 0, err
    assert "resumed at byte 100000" in out and "1 resumed" in out
    assert (local / "checkpoints" / "ckpt.h5").read_bytes() == blob
    assert (local / "checkpoints" / "sub" / "pred.jsonl").read_text() == '{"id": 1}\n'
    assert not partial.exists()
    code, out, _ = cli(capsys, "fetch", "--remote", remote, "--local", local, *flags)
    assert "0 files, 0 bytes downloaded (2 unchanged" in out
    code, _, err = cli(capsys, "fetch", "--remote", remote / "missing.h5", "--local",
                       local, *flags)
    assert code == 2 and "missing.h5 does not exist" in err


def test_fetch_onto_a_full_disk_is_a_clear_error(capsys, flags, tmp_path):
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "w.h5").write_bytes(os.urandom(50_000))
    local = tmp_path / "local"
    local.mkdir()
    os.symlink("/dev/full", local / "w.h5.part")  # every write fails with ENOSPC
    code, out, err = cli(capsys, "fetch", "--remote", tmp_path / "remote" / "w.h5",
                         "--local", local, *flags)
    assert code == 2 and "disk full" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (local / "w.h5").exists()


def test_remote_disk_full_is_a_clear_error(capsys, flags, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()})")
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "huge.bin").write_bytes(os.urandom(1_000_000))
        code, out, err = cli(capsys, "sync", "--src", src, "--dest", mount / "p", *flags)
        assert code == 2 and "remote disk full" in err, err
        assert not (mount / "p" / "huge.bin").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_host_key_unknown_refused_accepted_and_changed_refused(
        capsys, server, flags, tmp_path):
    base = flags[:flags.index("--known-hosts")]
    known = tmp_path / "known_hosts"
    key = paramiko.PKey.from_path(server.host_key)
    code, _, err = cli(capsys, "status", "--dest", tmp_path, *base, "--known-hosts", known)
    assert code == 2 and key.fingerprint in err and "--accept-new-host-key" in err
    assert not known.exists()
    code, _, err = cli(capsys, "status", "--dest", tmp_path, *base, "--known-hosts", known,
                       "--accept-new-host-key")
    assert code == 0, err
    assert known.read_text() == server.host_public_line()
    code, _, err = cli(capsys, "status", "--dest", tmp_path, *base, "--known-hosts", known)
    assert code == 0, err

    other = keygen(tmp_path / "other_host_key")
    kind, b64 = Path(f"{other}.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{server.port} {kind} {b64}\n")
    for extra in ([], ["--accept-new-host-key"]):
        code, _, err = cli(capsys, "status", "--dest", tmp_path, *base, "--known-hosts",
                           known, *extra)
        assert code == 2 and "CHANGED" in err and key.fingerprint in err, err
    assert known.read_text() == f"[127.0.0.1]:{server.port} {kind} {b64}\n"


def test_refused_key_and_unreachable_host(capsys, server, flags, tmp_path):
    stranger = keygen(tmp_path / "stranger")
    args = list(flags)
    args[args.index("--key") + 1] = str(stranger)
    code, _, err = cli(capsys, "status", "--dest", tmp_path, *args)
    assert code == 2 and "refused authentication" in err and "authorized_keys" in err

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    t0 = time.monotonic()
    code, _, err = cli(capsys, "status", "--dest", tmp_path, "--host", "127.0.0.1",
                       "--port", closed, "--known-hosts", tmp_path / "kh")
    assert code == 2 and f"cannot reach 127.0.0.1:{closed}" in err
    assert time.monotonic() - t0 < 5 and len(err.strip().splitlines()) == 1


def test_tunnel_forwards_a_local_port(capsys, flags):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    remote_port = listener.getsockname()[1]

    def answer():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"tensorboard:" + conn.recv(100))

    threading.Thread(target=answer, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", DGX_ssh_comm.main(
        ["tunnel", "--remote-port", str(remote_port), "--local-port", str(local_port),
         "--seconds", "2", *flags])))
    thread.start()
    deadline = time.monotonic() + 5
    while True:
        try:
            client = socket.create_connection(("127.0.0.1", local_port), timeout=5)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with client:
        client.sendall(b"ping")
        assert client.recv(100) == b"tensorboard:ping"
    thread.join(10)
    listener.close()
    assert result.get("code") == 0


def test_settings_from_config_files_and_env(tmp_path, monkeypatch):
    ini = tmp_path / "dgx.ini"
    ini.write_text("[dgx]\nhost = gpu.example\nport = 2222\nuser = me\ndest = work/p\n")
    monkeypatch.setenv("DGX_PORT", "2200")
    settings = load_settings({"config": str(ini), "user": "flaguser"})
    assert (settings.host, settings.port, settings.user, settings.dest) == (
        "gpu.example", 2200, "flaguser", "work/p")
    js = tmp_path / "dgx.json"
    js.write_text(json.dumps({"host": "h", "password": "hunter2"}))
    with pytest.raises(RemoteError, match="contains a password"):
        load_settings({"config": str(js)})
    code = DGX_ssh_comm.main(["status", "--dest", "x", "--config", str(tmp_path / "no.ini")])
    assert code == 2


def test_docker_command_is_quoted():
    script = jobs.wrapper_script("work/p", "r1", ["python", "train.py", "a b", "$(x)"],
                                 "fashion-mrcnn:latest", ["--ipc=host"])
    assert ("docker run --rm --gpus all --name dgx-r1 -v \"$PWD\":/workspace -w /workspace "
            "--ipc=host fashion-mrcnn:latest python train.py 'a b' '$(x)'") in script
    args, command = DGX_ssh_comm.parse(["run", "--dest", "d", "--docker", "--", "nvidia-smi"])
    assert command == ["nvidia-smi"]
    assert DGX_ssh_comm._docker_image(args, load_settings({})) == "fashion-mrcnn:latest"


def test_original_short_form_via_subprocess(server, flags, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "remote"
    src.mkdir()
    (src / "data.txt").write_text("42\n")
    env = dict(os.environ, DGX_HOST="127.0.0.1", DGX_PORT=str(server.port),
               DGX_KEY=str(server.client_key),
               DGX_KNOWN_HOSTS=flags[flags.index("--known-hosts") + 1])
    done = subprocess.run(
        [sys.executable, "fashion/DGX_ssh_comm.py", "-s", str(src), "-d", str(dest), "-c",
         "cat data.txt > copy.txt; echo $((6*7))"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 files sent" in done.stdout
    run_id = done.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 15
    while not (dest / "logs" / f"{run_id}.exit").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (dest / "copy.txt").read_text() == "42\n"
    assert (dest / "logs" / f"{run_id}.log").read_text() == "42\n"


def test_run_killed_behind_our_back_shows_as_lost(capsys, flags, tmp_path):
    dest = tmp_path / "remote"
    run_id = start(capsys, flags, dest, "sleep", "30")
    pid = int((dest / "logs" / f"{run_id}.pid").read_text())
    os.killpg(pid, 9)  # like an OOM kill or reboot: no exit code gets recorded
    out = wait_state(capsys, flags, dest, run_id, state="lost")
    assert "without recording an exit code" in out
    t0 = time.monotonic()
    code, _, err = cli(capsys, "logs", run_id, "--dest", dest, "--follow", *flags)
    assert code == 0 and time.monotonic() - t0 < 10, err
