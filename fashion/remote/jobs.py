"""Detached remote runs: start, status, logs, stop.

A run ``RUN_ID`` started in ``DEST`` keeps its files in ``DEST/logs/``:
``RUN_ID.sh`` (the wrapper script), ``RUN_ID.json`` (what was asked), ``RUN_ID.log``
(stdout and stderr), ``RUN_ID.pid`` (the process group id, written at start),
``RUN_ID.exit`` (the exit code, written at the end) and, for docker runs,
``RUN_ID.container``. The wrapper runs under ``setsid nohup`` so it survives the SSH
session; ``stop`` sends TERM to the whole process group, then KILL after a grace period.
Slurm runs (fashion.remote.slurm) have ``RUN_ID.jobid`` instead of a pid: their state
comes from squeue/sacct and ``stop`` goes through scancel.
"""
import datetime
import json
import posixpath
import re
import secrets
import sys
import time

from fashion.remote import slurm
from fashion.remote.connection import execute, remote_path, sh
from fashion.remote.settings import RemoteError
from fashion.remote.transfer import makedirs, remote_commit, remote_commit_shell

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STOPPED_CODES = {143: "TERM", 137: "KILL"}

# alive PGID: true while a non-zombie process of the group exists (zombies are not
# reaped by every container init, so `kill -0` alone can report a dead run as alive).
ALIVE_FN = r"""alive() {
  kill -0 "-$1" 2>/dev/null || return 1
  for _f in /proc/[0-9]*/stat; do
    read -r _l < "$_f" 2>/dev/null || continue
    _l=${_l##*\) }; _st=${_l%% *}; _l=${_l#* }; _l=${_l#* }; _pg=${_l%% *}
    [ "$_pg" = "$1" ] && [ "$_st" != Z ] && return 0
  done
  return 1
}
"""


def new_run_id():
    """A sortable, unique run id such as ``20250101-120000-3fa2``."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def check_run_id(run_id):
    if not RUN_ID_RE.match(run_id or ""):
        raise RemoteError(f"run id {run_id!r} is malformed; use an id printed by 'run' or "
                          f"listed by 'status'.")
    return run_id


def command_line(argv, run_id, docker_image=None, docker_args=()):
    """The quoted shell text that runs ``argv``, inside docker when an image is given.

    ``docker_args`` (e.g. ``["--ipc=host"]``) go to ``docker run`` before the image.
    """
    if not argv:
        raise RemoteError("no command given; put it after '--', e.g. run -- python train.py.")
    if docker_image:
        return (sh("docker", "run", "--rm", "--gpus", "all", "--name", f"dgx-{run_id}")
                + ' -v "$PWD":/workspace -w /workspace '
                + sh(*docker_args, docker_image, *argv))
    return sh(*argv)


def wrapper_script(dest, run_id, argv, docker_image=None, docker_args=()):
    """The POSIX sh script that records pid, output and exit code of one run."""
    base = f"logs/{run_id}"
    missing = (f"[dgx] exit code 127: the command {argv[0]!r} was not found on the host "
               f"(check its spelling, PATH or the docker image)")
    return "\n".join([
        "#!/bin/sh",
        f"cd {sh(dest)} || exit 1",
        f"echo $$ > {base}.pid.part && "
        + remote_commit_shell(f"{base}.pid.part", f"{base}.pid"),
        f"{command_line(argv, run_id, docker_image, docker_args)} >> {base}.log 2>&1 "
        "< /dev/null",
        "rc=$?",
        f'[ "$rc" -eq 127 ] && printf "%s\\n" {sh(missing)} >> {base}.log',
        f'echo "$rc" > {base}.exit.part && '
        + remote_commit_shell(f"{base}.exit.part", f"{base}.exit"),
        ""])


def _write_remote(sftp, path, text):
    with sftp.open(path + ".part", "w") as handle:
        handle.write(text)
    remote_commit(sftp, path + ".part", path)


def start_run(client, dest, argv, docker_image=None, run_id=None, wait=10.0,
              docker_args=()):
    """Start ``argv`` detached in ``dest``; return the run id once its pid is recorded."""
    dest = remote_path(dest)
    run_id = check_run_id(run_id or new_run_id())
    base = posixpath.join(dest, "logs", run_id)
    sftp = client.open_sftp()
    makedirs(sftp, posixpath.join(dest, "logs"))
    meta = {"run_id": run_id, "argv": list(argv), "dest": dest, "docker_image": docker_image,
            "docker_args": list(docker_args) if docker_image else [],
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
    _write_remote(sftp, base + ".sh", wrapper_script(dest, run_id, argv, docker_image,
                                                      docker_args))
    _write_remote(sftp, base + ".json", json.dumps(meta, indent=1) + "\n")
    if docker_image:
        _write_remote(sftp, base + ".container", f"dgx-{run_id}\n")
    launch = (f"command -v setsid >/dev/null 2>&1 || {{ echo 'setsid is not installed' >&2; "
              f"exit 3; }}; setsid nohup sh {sh(base + '.sh')} > /dev/null 2>&1 "
              f"< /dev/null &")
    code, _, err = execute(client, "sh -c " + sh(launch), check=False)
    if code != 0:
        raise RemoteError(f"could not start the run on the host ({err.strip()}); install "
                          f"util-linux (setsid) there.")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            sftp.stat(base + ".pid")
            return run_id
        except FileNotFoundError:
            time.sleep(0.1)
    raise RemoteError(f"run {run_id} did not record its pid in {base}.pid within {wait:g} "
                      f"s; look at {base}.log on the host.")


def run_states(client, dest, run_id=None):
    """Return a list of dicts {run_id, state, pid, exit_code, note} (oldest first)."""
    dest = remote_path(dest)
    pattern = f"{check_run_id(run_id)}.json" if run_id else "*.json"
    script = ALIVE_FN + (
        f"cd {sh(dest + '/logs')} 2>/dev/null || exit 0\n"
        f"for j in {pattern}; do\n"
        '  [ -f "$j" ] || continue; r=${j%.json}\n'
        '  if [ -f "$r.jobid" ]; then echo "$r slurm $(cat "$r.jobid") '
        '$(cat "$r.exit" 2>/dev/null)"\n'
        '  elif [ -f "$r.exit" ]; then echo "$r exited $(cat "$r.pid" 2>/dev/null) '
        '$(cat "$r.exit")"\n'
        '  elif [ -f "$r.pid" ]; then p=$(cat "$r.pid")\n'
        '    if alive "$p"; then echo "$r running $p"; else echo "$r lost $p"; fi\n'
        '  else echo "$r starting"; fi\n'
        "done\n")
    _, out, _ = execute(client, "sh -c " + sh(script))
    states = []
    for line in out.split("\n"):
        fields = line.split()
        if len(fields) < 2:
            continue
        state = {"run_id": fields[0], "state": fields[1],
                 "pid": int(fields[2]) if len(fields) > 2 else None,
                 "exit_code": int(fields[3]) if len(fields) > 3 else None}
        state["note"] = _note(client, dest, state) if state["state"] != "slurm" else ""
        states.append(state)
    _slurm_states(client, dest, states)
    if run_id and not states:
        raise RemoteError(f"run {run_id} is unknown in {dest}/logs on the host; check the "
                          f"id with 'status' and the --dest directory.")
    return states


def _slurm_states(client, dest, states):
    """Fills Slurm runs (state "slurm", pid = job id) from squeue/sacct: state
    pending/running/exited, ``slurm`` (the job's description) and a note when it died."""
    runs = [s for s in states if s["state"] == "slurm"]
    if not runs:
        return
    infos = slurm.job_states(client, [s["pid"] for s in runs])
    sftp = client.open_sftp()
    for state in runs:
        job = state["job_id"] = state.pop("pid")
        info = infos.get(str(job), {"state": "UNKNOWN", "reason": "", "nodes": "",
                                    "nodelist": "", "elapsed": "", "exit_code": None})
        if state["exit_code"] is None:
            state["exit_code"] = info["exit_code"] if not slurm.is_active(info) else None
        state["state"] = ("pending" if info["state"] == "PENDING" else "running"
                          if slurm.is_active(info) else "exited")
        state["slurm"] = slurm.describe(job, info)
        stopped = _read(sftp, f"{dest}/logs/{state['run_id']}.stopped")
        state["note"] = (f"stopped by scancel ({stopped.strip()})" if stopped
                         else slurm.died(info, state["exit_code"]))


def _read(sftp, path):
    try:
        with sftp.open(path) as handle:
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return None


def _note(client, dest, state):
    code = state["exit_code"]
    if state["state"] == "lost":
        return "ended without recording an exit code (killed or host rebooted)"
    if code == 127:
        with client.open_sftp().open(f"{dest}/logs/{state['run_id']}.json") as handle:
            argv = json.loads(handle.read().decode())["argv"]
        return f"command not found: {argv[0]}"
    if code in STOPPED_CODES:
        return f"stopped by SIG{STOPPED_CODES[code]}"
    return ""


def format_state(state):
    if "slurm" in state:
        text = f"{state['run_id']}  {state['state']}: {state['slurm']}"
        if state["exit_code"] is not None:
            text += f" with exit code {state['exit_code']}"
        return text + (f"  [{state['note']}]" if state["note"] else "")
    text = f"{state['run_id']}  {state['state']}"
    if state["state"] == "running":
        text += f" (pid {state['pid']})"
    if state["exit_code"] is not None:
        text += f" with exit code {state['exit_code']}"
    return text + (f"  [{state['note']}]" if state["note"] else "")


def stop_run(client, dest, run_id, grace=10.0):
    """TERM the run's process group (and docker container), KILL after ``grace`` s."""
    dest = remote_path(dest)
    base = f"{dest}/logs/{check_run_id(run_id)}"
    job_id = _read(client.open_sftp(), base + ".jobid")
    if job_id:
        return slurm.stop_job(client, dest, run_id, job_id.strip(), grace)
    commit_exit = remote_commit_shell('"$b.exit.part"', '"$b.exit"')
    script = ALIVE_FN + f"""b={sh(base)}; grace={int(grace * 10)}
[ -f "$b.pid" ] || {{ echo unknown; exit 0; }}
p=$(cat "$b.pid")
if ! alive "$p"; then echo "already"; exit 0; fi
[ -f "$b.container" ] && docker stop -t {int(grace)} "$(cat "$b.container")" >/dev/null 2>&1 &
kill -TERM "-$p" 2>/dev/null
i=0; while alive "$p" && [ $i -lt $grace ]; do sleep 0.1; i=$((i+1)); done
sig=TERM; code=143
if alive "$p"; then kill -KILL "-$p" 2>/dev/null; sig=KILL; code=137; fi
[ -f "$b.exit" ] || {{ echo "$code" > "$b.exit.part" && {commit_exit}; }}
printf '[dgx] stopped with SIG%s\\n' "$sig" >> "$b.log"
echo "$sig"
"""
    _, out, _ = execute(client, "sh -c " + sh(script), timeout=grace + 60)
    result = out.strip().splitlines()[-1] if out.strip() else ""
    if result == "unknown":
        raise RemoteError(f"run {run_id} is unknown in {dest}/logs on the host; check the "
                          f"id with 'status' and the --dest directory.")
    return result


def _read_tail(handle, size, lines):
    """Return the last ``lines`` lines (all if 0) of an open remote file of ``size``."""
    if lines <= 0:
        handle.seek(0)
        return handle.read(), size
    block, data, start = 65536, b"", size
    while start > 0 and data.count(b"\n") <= lines:
        step = min(block, start)
        start -= step
        handle.seek(start)
        data = handle.read(step) + data
    return b"\n".join(data.split(b"\n")[-lines - 1:]), size


def show_log(client, dest, run_id, lines=200, follow=False, poll=0.5, out=None):
    """Print the tail of the run's log; with ``follow``, keep printing until it exits."""
    out = out or (lambda data: (sys.stdout.write(data.decode(errors="replace")),
                                sys.stdout.flush()))
    dest = remote_path(dest)
    base = f"{dest}/logs/{check_run_id(run_id)}"
    sftp = client.open_sftp()
    try:
        sftp.stat(base + ".json")
    except FileNotFoundError:
        raise RemoteError(f"run {run_id} is unknown in {dest}/logs on the host; check the "
                          f"id with 'status' and the --dest directory.") from None
    try:
        with sftp.open(base + ".log", "rb") as handle:
            data, pos = _read_tail(handle, handle.stat().st_size, lines)
    except FileNotFoundError:
        data, pos = b"", 0
    out(data)
    idle, ended = 0, False
    while follow:
        finished = ended or _exists(sftp, base + ".exit")
        if not finished and idle >= 6:  # killed without an exit file: read once more
            idle = 0
            ended = run_states(client, dest, run_id)[0]["state"] in ("lost", "exited")
        try:
            with sftp.open(base + ".log", "rb") as handle:
                handle.seek(pos)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        pos += len(chunk)
        if chunk:
            out(chunk)
        elif finished:
            break
        else:
            idle += 1
            time.sleep(poll)


def _exists(sftp, path):
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False


__all__ = ["start_run", "run_states", "stop_run", "show_log", "format_state",
           "wrapper_script", "command_line"]
