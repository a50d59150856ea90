"""Slurm batch jobs as runs: write the sbatch script, submit, query, cancel.

A Slurm run ``RUN_ID`` keeps the files of a detached run in ``DEST/logs/`` (see
fashion.remote.jobs): ``RUN_ID.json`` (what was asked, with the job id),
``RUN_ID.sbatch`` (the batch script), ``RUN_ID.log`` (the job's output, Slurm's
``--output``), ``RUN_ID.exit`` (srun's exit code, written by the script),
``RUN_ID.jobid`` (Slurm's job id) and, after ``stop``, ``RUN_ID.stopped``. The training
command runs under ``srun`` (one task per node by default, each driving all GPUs of
its node), so ``--strategy auto`` finds the other tasks in Slurm's environment.
"""
import json
import posixpath
import re
from dataclasses import dataclass, field

from fashion.remote.connection import execute, remote_path, sh
from fashion.remote.settings import RemoteError

ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "REQUEUED", "RESIZING")
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


@dataclass
class SlurmOptions:
    """What ``run --slurm`` asks of Slurm (None: the cluster's default)."""
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = None
    cpus_per_task: int = None
    partition: str = None
    time: str = None
    account: str = None
    container_image: str = None
    sbatch_args: list = field(default_factory=list)

    def check(self):
        for name in ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and (value < 0 or value == 0 and name != "gpus_per_node"):
                flag = "--" + name.replace("_", "-")
                raise RemoteError(f"{flag} {value} is not a positive number; give e.g. "
                                  f"{flag} 2.")
        if self.time and not TIME_RE.match(self.time):
            raise RemoteError(f"--time {self.time!r} is not a Slurm time limit; use "
                              "MINUTES, HH:MM:SS or DAYS-HH:MM:SS, e.g. --time 4:00:00.")
        return self


def batch_script(dest, run_id, argv, options):
    """The sbatch script of one run: directives, then ``srun COMMAND`` in ``dest``."""
    o = options
    base = f"logs/{run_id}"
    directives = [f"--job-name=fashion-{run_id}", f"--output={dest}/{base}.log",
                  f"--nodes={o.nodes}", f"--ntasks-per-node={o.tasks_per_node}"]
    if o.gpus_per_node:
        directives.append(f"--gpus-per-node={o.gpus_per_node}")
    for flag, value in (("cpus-per-task", o.cpus_per_task), ("partition", o.partition),
                        ("time", o.time), ("account", o.account)):
        if value is not None:
            directives.append(f"--{flag}={value}")
    directives += list(o.sbatch_args)
    srun = ["srun", "--kill-on-bad-exit=1", "--distribution=block"]
    if o.container_image:  # pyxis: the project directory is the container's workdir
        srun += [f"--container-image={o.container_image}",
                 f"--container-mounts={dest}:/workspace", "--container-workdir=/workspace"]
    return "\n".join(
        ["#!/bin/sh"] + [f"#SBATCH {sh(d)}" for d in directives] + [
            f"# run {run_id}: written by DGX_ssh_comm.py run --slurm",
            f"cd {sh(dest)} || exit 1",
            'echo "[slurm] job $SLURM_JOB_ID on $SLURM_JOB_NODELIST: $SLURM_NNODES '
            'node(s), $SLURM_NTASKS task(s)"',
            sh(*srun, *argv),
            "rc=$?",
            f'echo "$rc" > {base}.exit.part && mv -f {base}.exit.part {base}.exit',
            'exit "$rc"', ""])


def _write(sftp, path, text):
    with sftp.open(path + ".part", "w") as handle:
        handle.write(text)
    try:
        sftp.posix_rename(path + ".part", path)
    except OSError:
        sftp.rename(path + ".part", path)


def submit(client, dest, run_id, argv, options, meta):
    """Writes ``RUN_ID.sbatch`` and ``RUN_ID.json``, runs sbatch; returns the job id."""
    from fashion.remote.transfer import makedirs
    sftp = client.open_sftp()
    makedirs(sftp, posixpath.join(remote_path(dest), "logs"))
    dest = sftp.normalize(remote_path(dest))  # absolute: Slurm and pyxis need it
    base = posixpath.join(dest, "logs", run_id)
    _write(sftp, base + ".sbatch", batch_script(dest, run_id, argv, options))
    script = ("command -v sbatch >/dev/null 2>&1 || { echo 'no sbatch' >&2; exit 3; }; "
              f"sbatch --parsable {sh(base + '.sbatch')}")
    code, out, err = execute(client, "sh -lc " + sh(script), check=False)
    if code == 3 and "no sbatch" in err:
        raise RemoteError("sbatch is not installed on the host (or not on its PATH), so "
                          "it is not a Slurm login node; connect to the cluster's login "
                          "node or run without --slurm.")
    if code != 0:
        raise RemoteError(f"Slurm rejected the job: {slurm_error(err)}; compare --nodes, "
                          f"--gpus-per-node, --partition, --time and --account with what "
                          f"the cluster offers (sinfo) and rerun (script: {base}.sbatch).")
    job_id = out.strip().splitlines()[-1].split(";")[0].strip()
    if not job_id.isdigit():
        raise RemoteError(f"sbatch printed {out.strip()!r} instead of a job id; look at "
                          f"{base}.sbatch on the host.")
    _write(sftp, base + ".jobid", job_id + "\n")
    _write(sftp, base + ".json", json.dumps(dict(meta, slurm_job_id=int(job_id),
                                                 slurm=vars(options)), indent=1) + "\n")
    return job_id


def slurm_error(stderr):
    """Slurm's own reason from sbatch's stderr, without the ``sbatch: error:`` prefix."""
    lines = [re.sub(r"^\s*(sbatch:\s*)?(error:\s*)?", "", line).strip()
             for line in stderr.splitlines() if line.strip()]
    failure = [l for l in lines if "submission failed" in l.lower()]
    reason = failure[-1] if failure else (lines[-1] if lines else "no message")
    return reason.replace("Batch job submission failed: ", "").rstrip(".")


QUERY = r"""for j in {ids}; do
  o=$(squeue -h -j "$j" --states=all -o '%i|%T|%r|%D|%N|%M' 2>/dev/null | head -n 1)
  if [ -n "$o" ]; then echo "$o"; continue; fi
  o=$(sacct -X -n -P -j "$j" -o JobID,State,Reason,NNodes,NodeList,Elapsed,ExitCode \
      2>/dev/null | head -n 1)
  if [ -n "$o" ]; then echo "$o"; else echo "$j|UNKNOWN"; fi
done
"""


def job_states(client, job_ids):
    """{job id: {state, reason, nodes, nodelist, elapsed, exit_code}} from squeue (jobs
    Slurm still lists), else sacct (accounting), else state UNKNOWN."""
    ids = [str(int(j)) for j in job_ids]
    if not ids:
        return {}
    _, out, _ = execute(client, "sh -lc " + sh(QUERY.format(ids=" ".join(ids))))
    states = {}
    for line in out.splitlines():
        f = line.strip().split("|") + [""] * 7
        if not f[0].split(".")[0].isdigit():
            continue
        state = f[1].split()[0] if f[1] else "UNKNOWN"  # "CANCELLED by 0" in sacct
        exit_code = f[6].split(":")[0] if f[6] else ""
        states[f[0].split(".")[0]] = {
            "state": state, "reason": "" if f[2] in ("None", "(null)") else f[2],
            "nodes": f[3], "nodelist": f[4], "elapsed": f[5],
            "exit_code": int(exit_code) if exit_code.isdigit() else None}
    return states


def describe(job_id, info):
    """'slurm job 12 RUNNING on node[1-2] (2 nodes), elapsed 3:02' and the like."""
    text = f"slurm job {job_id} {info['state']}"
    if info["state"] == "PENDING":
        return text + (f" ({info['reason']})" if info["reason"] else "")
    if info["nodelist"] and info["nodelist"] != "None assigned":
        text += f" on {info['nodelist']} ({info['nodes']} node"
        text += "s)" if info["nodes"] != "1" else ")"
    if info["elapsed"]:
        text += f", elapsed {info['elapsed']}"
    return text


def is_active(info):
    return info["state"] in ACTIVE


def died(info, exit_code):
    """One sentence when the job ended badly, with Slurm's reason; else ''."""
    state = info["state"]
    if state in ACTIVE or state == "COMPLETING" or (state == "COMPLETED" and not exit_code):
        return ""
    why = f" ({info['reason']})" if info["reason"] else ""
    return f"the job ended {state}{why}; read its log with 'logs'"


STOP = r"""j={job}; b={base}; grace={ticks}
alive() {{ case "$(squeue -h -j "$j" -o %T 2>/dev/null)" in
  RUNNING|CONFIGURING|SUSPENDED|PENDING|COMPLETING) return 0;; *) return 1;; esac; }}
s=$(squeue -h -j "$j" -o %T 2>/dev/null)
case "$s" in RUNNING|CONFIGURING|SUSPENDED|PENDING) ;; *) echo already; exit 0;; esac
if [ "$s" = PENDING ]; then scancel "$j"; sig=CANCEL
else
  scancel --signal=TERM "$j"; sig=TERM
  i=0; while alive && [ $i -lt $grace ]; do sleep 0.1; i=$((i+1)); done
  if alive; then scancel "$j"; sig=KILL; fi
fi
echo "$sig" > "$b.stopped"
printf '[dgx] stopped with %s (scancel)\n' "$sig" >> "$b.log"
echo "$sig"
"""


def stop_job(client, dest, run_id, job_id, grace=10.0):
    """scancel: a pending job at once; a running one gets SIGTERM on every task
    (training writes its checkpoint), then ``scancel`` (TERM, later KILL) when it still
    runs after ``grace`` seconds. Returns TERM, KILL, CANCEL or 'already'."""
    base = f"{remote_path(dest)}/logs/{run_id}"
    script = STOP.format(job=int(job_id), base=sh(base), ticks=int(grace * 10))
    _, out, _ = execute(client, "sh -lc " + sh(script), timeout=grace + 60)
    return out.strip().splitlines()[-1] if out.strip() else ""
