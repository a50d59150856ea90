"""Train on a remote GPU box over SSH: sync code, launch detached runs, watch, fetch results.

Pure Python (paramiko): no ssh, scp or rsync binaries needed locally. On the remote host
it needs a POSIX ``sh``, ``setsid`` (util-linux), ``/proc`` (Linux) and, for ``--docker``,
docker with the NVIDIA container toolkit.

Run it as ``python fashion/DGX_ssh_comm.py`` or, once the package is installed, as
``dgx-ssh`` (same arguments).

Connection settings come from flags, then environment variables, then a config file.
The connection flags may stand before or after the command word: ``--host dgx --user
me status ...`` and ``status ... --host dgx --user me`` are the same::

    --host --port --user --key --known-hosts --config --timeout
    --accept-new-host-key --ask-password --verbose         (flags)
    DGX_HOST DGX_PORT DGX_USER DGX_KEY DGX_KNOWN_HOSTS DGX_DEST DGX_DOCKER_IMAGE DGX_CONFIG

    # dgx.ini                                  # or dgx.json
    [dgx]                                      {"host": "dgx.example.org", "port": 22,
    host = dgx.example.org                      "user": "me", "key": "~/.ssh/id_ed25519",
    user = me                                   "dest": "work/fashion"}
    key = ~/.ssh/id_ed25519
    dest = work/fashion
    docker_image = fashion-mrcnn:latest

Authentication uses the key (``--key``), else an ssh-agent or the default keys in
``~/.ssh``; a password is only ever typed at a prompt (``--ask-password``), never passed
on the command line or stored in a file. The host key is checked against ``known_hosts``
(``--known-hosts``, default ``~/.ssh/known_hosts``): an unknown host is refused with its
fingerprint (check it, then rerun with ``--accept-new-host-key`` to record it); a changed
key is always refused. Remote relative paths start in the remote home directory.

Connection failures are one sentence each (exit code 2): no such host name, connection
refused, timed out after N s (``--timeout``, default 10), not an SSH server at HOST:PORT,
authentication refused, unknown or changed host key. The SSH library's own messages and
tracebacks go to ``~/.cache/fashion-mrcnn/dgx_ssh.log`` (``$XDG_CACHE_HOME`` if set),
never to the terminal; ``--verbose`` prints them to stderr as well.

Commands (every failure prints one sentence and exits with code 2; the examples take
host, user and key from DGX_* variables or a config file, or add ``--host dgx --user me``
before or after the command)::

    # send the project (only new or changed files; .gitignore and --exclude respected)
    python fashion/DGX_ssh_comm.py --host dgx --user me sync --src . --dest work/fashion
    python fashion/DGX_ssh_comm.py sync --src . --dest work/fashion --exclude 'data/'

    # start training detached (survives the SSH session); prints a run id
    python fashion/DGX_ssh_comm.py run --dest work/fashion -- \\
        python fashion/fashion.py train --dataset data/imat --weights coco
    # ... inside the GPU image (built from docker/Dockerfile), project mounted at /workspace
    python fashion/DGX_ssh_comm.py run --dest work/fashion --docker -- python train.py
    python fashion/DGX_ssh_comm.py run --dest work/fashion --docker my/image:tag -- nvidia-smi

    # ... or as a Slurm batch job from the cluster's login node (srun in every task)
    python fashion/DGX_ssh_comm.py run --slurm --dest work/fashion --nodes 2 \
        --gpus-per-node 8 --partition batch --time 12:00:00 -- \
        python fashion/fashion.py train --tfrecords 'records/train-*' --strategy auto
    python fashion/DGX_ssh_comm.py run --slurm --dry-run --dest work/fashion -- CMD

    python fashion/DGX_ssh_comm.py status --dest work/fashion            # all runs
    python fashion/DGX_ssh_comm.py status --dest work/fashion RUN_ID     # one run
    python fashion/DGX_ssh_comm.py logs --dest work/fashion RUN_ID --tail 50 --follow
    python fashion/DGX_ssh_comm.py stop --dest work/fashion RUN_ID --grace 30

    # bring back checkpoints, logs or predictions (file or directory; resumable)
    python fashion/DGX_ssh_comm.py fetch --remote work/fashion/logs --local results/

    # TensorBoard on the host's port 6006 at http://localhost:16006 (Ctrl-C ends it)
    python fashion/DGX_ssh_comm.py tunnel --remote-port 6006 --local-port 16006

    # the original short form: sync SRC to DEST, then run the shell command CMD there
    python fashion/DGX_ssh_comm.py -s . -d work/fashion -c "python train.py --epochs 10"
    python fashion/DGX_ssh_comm.py --host dgx -s . -d work/fashion -c "nvidia-smi"

Details:

- ``sync`` compares size and modification time, uploads to ``NAME.part`` and renames on
  the host, so an interrupted sync leaves no truncated file under a real name; rerun it
  to finish. It reads ``SRC/.gitignore`` (gitignore syntax: ``*``, ``**``, ``!``,
  trailing ``/``), always skips ``.git/`` and ``*.part``, sends in-tree file links as
  files and never follows directory links or links leaving the source tree.
- ``run`` writes ``DEST/logs/RUN_ID.{sh,json,log,pid,exit}``: the command's output goes
  to ``RUN_ID.log`` and its exit code to ``RUN_ID.exit``. Arguments are shell-quoted, so
  a file name or an argument such as ``$(...)`` reaches the command literally. A
  command that is not found ends with exit code 127 and a ``[dgx]`` line in the log.
  With ``--docker`` (or ``docker_image`` in the settings; ``--no-docker`` turns it off)
  it runs ``docker run --rm --gpus all -v DEST:/workspace -w /workspace IMAGE COMMAND``;
  the default image is ``fashion-mrcnn:latest``; ``--docker-arg=--ipc=host`` (repeatable)
  adds options such as NVIDIA's recommended ``--ipc=host`` for NGC images.
- ``stop`` sends TERM to the run's process group (and ``docker stop`` to its
  container), waits ``--grace`` seconds, then sends KILL; the run shows exit code 143
  (TERM) or 137 (KILL).
- ``fetch`` downloads into ``LOCAL/NAME`` through ``NAME.part``, resumes a ``.part``
  from its size, checks the size and renames atomically; unchanged files are skipped. A
  local write failure (disk full, permission) is one sentence naming the path.
- ``run --slurm`` writes ``DEST/logs/RUN_ID.sbatch`` (``--nodes``, ``--tasks-per-node``,
  ``--gpus-per-node``, ``--cpus-per-task``, ``--partition``, ``--time``, ``--account``,
  ``--container-image`` for pyxis, ``--sbatch-arg`` for anything else), submits it with
  ``sbatch`` and prints the job id; the output goes to ``RUN_ID.log``. ``status`` shows
  Slurm's state, pending reason, nodes and elapsed time (squeue, else sacct); ``stop``
  sends SIGTERM to every task (``scancel --signal=TERM``), then ``scancel`` after
  ``--grace`` seconds. See docs/distributed.md.
- Everything after the first ``--`` of ``run`` is the remote command, passed on
  untouched (it may itself contain ``--host`` or ``--``).
"""
import argparse
import signal as signal_module
import sys
import time
from pathlib import Path

import paramiko

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashion.remote import jobs, slurm, transfer  # noqa: E402
from fashion.remote.connection import configure_logging, connect, log_path  # noqa: E402
from fashion.remote.settings import (DEFAULT_IMAGE, RemoteError, load_settings,  # noqa: E402
                                     require)
from fashion.remote.slurm import SlurmOptions  # noqa: E402
from fashion.remote.tunnel import Tunnel  # noqa: E402

COMMANDS = ("sync", "run", "status", "logs", "stop", "fetch", "tunnel")
LEGACY_FLAGS = ("-s", "--syncsrc", "-d", "--syncdest", "-c", "--command")


CONNECTION_VALUE_FLAGS = ("--host", "--port", "--user", "--key", "--known-hosts", "--config",
                          "--timeout")
CONNECTION_SWITCHES = ("--accept-new-host-key", "--ask-password", "--verbose")


def _connection_flags():
    """Connection options, accepted before and after the command.

    Every default is SUPPRESS: argparse copies a subparser's defaults over the values the
    main parser already read, so an option given before the command would otherwise be
    reset by the subparser. Unset options are simply absent from the namespace.
    """
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection (before or after COMMAND)")
    group.add_argument("--host", help="remote host name or address (DGX_HOST)")
    group.add_argument("--port", type=int, help="SSH port, default 22 (DGX_PORT)")
    group.add_argument("--user", help="remote user, default the local user (DGX_USER)")
    group.add_argument("--key", help="private key file (DGX_KEY); else agent/~/.ssh keys")
    group.add_argument("--known-hosts", dest="known_hosts",
                       help="known_hosts file, default ~/.ssh/known_hosts")
    group.add_argument("--config", help="INI ([dgx] section) or JSON settings file")
    group.add_argument("--accept-new-host-key", action="store_true",
                       help="record the key of a host not yet in known_hosts")
    group.add_argument("--ask-password", action="store_true",
                       help="prompt for a password (never taken from flags or files)")
    group.add_argument("--timeout", type=float,
                       help="connect timeout in seconds, default 10")
    group.add_argument("--verbose", action="store_true",
                       help=f"also print SSH library messages to stderr (always logged "
                            f"to {log_path()})")
    return common


def _docker_flags(parser):
    parser.add_argument("--docker", nargs="?", const="", default=None, metavar="IMAGE",
                        help=f"run inside docker (default image {DEFAULT_IMAGE})")
    parser.add_argument("--no-docker", action="store_true",
                        help="ignore a docker image set in DGX_DOCKER_IMAGE or the config")
    parser.add_argument("--docker-arg", action="append", default=[], metavar="ARG",
                        help="extra 'docker run' option, repeatable, e.g. "
                        "--docker-arg=--ipc=host")


def _slurm_flags(parser):
    group = parser.add_argument_group("Slurm (run --slurm: submit a batch job with sbatch)")
    group.add_argument("--slurm", action="store_true",
                       help="submit with sbatch on the host (a Slurm login node); the "
                       "command runs under srun in every task")
    group.add_argument("--nodes", type=int, default=1, help="nodes, default 1")
    group.add_argument("--tasks-per-node", type=int, default=1,
                       help="tasks per node, default 1 (one task drives all GPUs of "
                       "its node)")
    group.add_argument("--gpus-per-node", type=int, help="GPUs per node (--gpus-per-node)")
    group.add_argument("--cpus-per-task", type=int, help="CPUs per task (input pipeline)")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--time", help="time limit, e.g. 4:00:00 or 2-00:00:00")
    group.add_argument("--account", help="Slurm account to charge")
    group.add_argument("--container-image", metavar="IMAGE",
                       help="run in this container with pyxis (srun --container-image), "
                       "the project mounted at /workspace")
    group.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                       help="extra sbatch option, repeatable, e.g. --sbatch-arg=--qos=high")
    group.add_argument("--dry-run", action="store_true",
                       help="print the batch script and submit nothing")


def build_parser():
    common = _connection_flags()
    parser = argparse.ArgumentParser(
        parents=[common], description="Sync, run, watch and fetch on a GPU host over "
        "SSH. Connection options may come before or after COMMAND. See the docstring of "
        "fashion/DGX_ssh_comm.py for examples.",
        epilog="Short form (the original tool): -s SRC -d DEST -c CMD syncs SRC to DEST, "
        "then starts the shell command CMD there. 'COMMAND --help' lists each command's "
        "flags.")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("sync", parents=[common], help="send changed files")
    p.add_argument("--src", required=True, help="local source directory")
    p.add_argument("--dest", help="remote directory (DGX_DEST)")
    p.add_argument("--exclude", action="append", default=[], help="gitignore-style pattern")
    p = sub.add_parser("run", parents=[common], help="start a detached run: run -- CMD...")
    p.add_argument("--dest", help="remote project directory (DGX_DEST)")
    p.add_argument("--run-id", help="choose the run id (default: time stamp + random)")
    _docker_flags(p)
    _slurm_flags(p)
    p = sub.add_parser("status", parents=[common], help="state and exit code of runs")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--dest", help="remote project directory (DGX_DEST)")
    p = sub.add_parser("logs", parents=[common], help="print (and follow) a run's log")
    p.add_argument("run_id")
    p.add_argument("--dest", help="remote project directory (DGX_DEST)")
    p.add_argument("--tail", type=int, default=200, help="last N lines, 0 for all")
    p.add_argument("--follow", "-f", action="store_true", help="print until the run ends")
    p = sub.add_parser("stop", parents=[common], help="TERM, then KILL, a run")
    p.add_argument("run_id")
    p.add_argument("--dest", help="remote project directory (DGX_DEST)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds between TERM and KILL")
    p = sub.add_parser("fetch", parents=[common], help="download a file or directory")
    p.add_argument("--remote", required=True, help="remote file or directory")
    p.add_argument("--local", required=True, help="local directory to download into")
    p = sub.add_parser("tunnel", parents=[common], help="forward a local port (TensorBoard)")
    p.add_argument("--remote-port", type=int, default=6006)
    p.add_argument("--local-port", type=int, default=16006)
    p.add_argument("--remote-host", default="127.0.0.1", help="as seen from the host")
    p.add_argument("--seconds", type=float, default=None, help="close after N seconds")
    return parser


def build_legacy_parser():
    parser = argparse.ArgumentParser(
        parents=[_connection_flags()],
        description="Short form: sync SRC to DEST, then run CMD (a shell command) there.")
    parser.add_argument("-s", "--syncsrc", help="local source directory")
    parser.add_argument("-d", "--syncdest", help="remote directory (DGX_DEST)")
    parser.add_argument("-c", "--command", help="shell command to run in DEST after sync")
    parser.add_argument("--exclude", action="append", default=[])
    _docker_flags(parser)
    return parser


def _settings(args):
    flags = {k: getattr(args, k, None) for k in (
        "host", "port", "user", "key", "known_hosts", "config", "timeout",
        "accept_new_host_key", "ask_password")}
    flags["dest"] = getattr(args, "dest", None) or getattr(args, "syncdest", None)
    settings = load_settings(flags)
    require(settings, "host")
    return settings


def _docker_image(args, settings):
    if args.no_docker:
        return None
    if args.docker is not None:
        return args.docker or settings.docker_image or DEFAULT_IMAGE
    return settings.docker_image


def _slurm_options(args):
    if args.docker is not None:
        raise RemoteError("--docker does not apply to --slurm jobs; give the image with "
                          "--container-image (pyxis) instead.")
    return SlurmOptions(nodes=args.nodes, tasks_per_node=args.tasks_per_node,
                        gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                        partition=args.partition, time=args.time, account=args.account,
                        container_image=args.container_image,
                        sbatch_args=args.sbatch_arg).check()


def _submit(client, settings, args, argv):
    run_id = jobs.check_run_id(args.run_id or jobs.new_run_id())
    meta = {"run_id": run_id, "argv": list(argv), "dest": settings.dest,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    job_id = slurm.submit(client, settings.dest, run_id, argv, _slurm_options(args), meta)
    print(f"run {run_id} submitted as slurm job {job_id} from {settings.dest} on "
          f"{settings.host}; log: {settings.dest}/logs/{run_id}.log")
    print(run_id)
    return 0


SLURM_ONLY = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": None, "cpus_per_task": None,
              "partition": None, "time": None, "account": None, "container_image": None,
              "sbatch_arg": [], "dry_run": False}


def _check_slurm_flags(args):
    """Slurm options given without --slurm would be ignored silently: refuse them."""
    if args.cmd != "run" or args.slurm:
        return
    for name, default in SLURM_ONLY.items():
        if getattr(args, name, default) != default:
            flag = "--" + name.replace("_", "-")
            raise RemoteError(f"{flag} applies to Slurm jobs only; add --slurm to submit "
                              f"with sbatch, or drop {flag}.")


def _start(client, settings, args, argv):
    if getattr(args, "slurm", False):
        return _submit(client, settings, args, argv)
    run_id = jobs.start_run(client, settings.dest, argv, _docker_image(args, settings),
                            run_id=getattr(args, "run_id", None),
                            docker_args=args.docker_arg)
    print(f"run {run_id} started in {settings.dest} on {settings.host}; "
          f"log: {settings.dest}/logs/{run_id}.log")
    print(run_id)
    return 0


def dispatch(args, command):
    """Run one parsed subcommand; returns the exit code."""
    _check_slurm_flags(args)
    if args.cmd == "run" and args.slurm and args.dry_run:  # no connection needed
        settings = load_settings({"dest": args.dest})
        require(settings, "dest")
        run_id = jobs.check_run_id(args.run_id or jobs.new_run_id())
        print(slurm.batch_script(settings.dest, run_id, command, _slurm_options(args)),
              end="")
        return 0
    settings = _settings(args)
    if args.cmd in ("sync", "run", "status", "logs", "stop", "legacy"):
        require(settings, "dest")
    client = connect(settings)
    try:
        if args.cmd == "sync":
            transfer.sync(client, args.src, settings.dest, args.exclude)
        elif args.cmd == "run":
            return _start(client, settings, args, command)
        elif args.cmd == "status":
            states = jobs.run_states(client, settings.dest, args.run_id)
            for state in states:
                print(jobs.format_state(state))
            if not states:
                print(f"no runs in {settings.dest}/logs")
        elif args.cmd == "logs":
            jobs.show_log(client, settings.dest, args.run_id, args.tail, args.follow)
        elif args.cmd == "stop":
            signal = jobs.stop_run(client, settings.dest, args.run_id, args.grace)
            print(f"run {args.run_id}: " + (
                "had already ended" if signal == "already" else "cancelled (pending)"
                if signal == "CANCEL" else f"stopped with SIG{signal}"))
        elif args.cmd == "fetch":
            transfer.fetch(client, args.remote, args.local)
        elif args.cmd == "tunnel":
            _tunnel(client, args)
        elif args.cmd == "legacy":
            if args.syncsrc:
                transfer.sync(client, args.syncsrc, settings.dest, args.exclude)
            if args.command:
                return _start(client, settings, args, ["sh", "-c", args.command])
        return 0
    finally:
        client.close()


def _tunnel(client, args):
    tunnel = Tunnel(client.get_transport(), args.local_port, args.remote_port,
                    args.remote_host).start()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        print(f"forwarding 127.0.0.1:{tunnel.local_port} -> {args.remote_host}:"
              f"{args.remote_port} on the host; Ctrl-C to stop", flush=True)
        while deadline is None or time.monotonic() < deadline:
            if not client.get_transport().is_active():
                raise RemoteError("the SSH connection closed; rerun tunnel.")
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        tunnel.close()
    for error in tunnel.errors[:1]:
        print(f"warning: {error}", file=sys.stderr)


def command_index(argv):
    """Index of the command word in argv, skipping leading connection options; or None.

    ``--host dgx --user me sync ...`` gives 4. Scanning stops at the first token that is
    neither a connection option nor its value, so the short form (``-s ...``) gives None.
    """
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in CONNECTION_VALUE_FLAGS:
            i += 2
        elif word in CONNECTION_SWITCHES or word.split("=", 1)[0] in CONNECTION_VALUE_FLAGS:
            i += 1
        else:
            return i if word in COMMANDS else None
    return None


def _parse_legacy(argv):
    args = build_legacy_parser().parse_args(argv, namespace=argparse.Namespace(cmd="legacy"))
    if not (args.syncsrc or args.command):
        raise RemoteError("the short form needs -s SRC and/or -c CMD (with -d DEST); "
                          "see --help.")
    return args, None


def parse(argv):
    """Parse argv (subcommand form or the original -s/-d/-c form); returns (args, command).

    ``command`` is the remote command of ``run``: every word after the first ``--``
    following the command word, passed on untouched (it may contain ``--host`` etc.).
    """
    argv = list(argv)
    index = command_index(argv)
    if index is None and any(a.split("=")[0] in LEGACY_FLAGS for a in argv):
        return _parse_legacy(argv)
    command = []
    if index is not None and argv[index] == "run" and "--" in argv[index:]:
        cut = argv.index("--", index)
        argv, command = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.cmd == "run" and not command:
        raise RemoteError("run needs a command after '--', e.g. run --dest DIR -- "
                          "python train.py.")
    return args, command


def main(argv=None):
    """CLI entry point (also the ``dgx-ssh`` console script); returns the exit code:
    0 ok, 2 for a clear one-sentence error (or a usage error), 130 when interrupted."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    # Ctrl-C stops every command (tunnel, logs --follow) even when started with SIGINT
    # ignored (nohup, `cmd &`), where Python would keep ignoring it. Only an ignored
    # SIGINT is replaced: a program that calls main() keeps its own handler.
    if signal_module.getsignal(signal_module.SIGINT) is signal_module.SIG_IGN:
        try:
            signal_module.signal(signal_module.SIGINT, signal_module.default_int_handler)
        except ValueError:  # called from a thread other than the main one
            pass
    try:
        args, command = parse(argv)
        configure_logging(getattr(args, "verbose", False))
        return dispatch(args, command)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    except RemoteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, EOFError, paramiko.SSHException) as exc:
        print(f"error: connection or I/O failure ({exc or type(exc).__name__}); check "
              f"the host and rerun the same command.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
