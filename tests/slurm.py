"""Start a real one-node Slurm cluster (munged, slurmctld, slurmd) on loopback for tests.

``SlurmCluster(tmpdir).start()`` writes a munge key and a slurm.conf of its own
(``SlurmctldHost=localhost``, one node ``localhost`` with 2 CPUs in partition
``debug``, ``proctrack/linuxproc``, ``task/none``, no cgroups, every state and spool
directory under ``tmpdir``, ``SlurmUser=root``, free ports), runs the three daemons in
the foreground as child processes, and waits until ``sinfo`` shows the node idle.
``env`` is the environment in which ``sbatch``/``srun``/``squeue`` talk to this
cluster (``SLURM_CONF``; slurm.conf also sets ``AuthInfo`` to the fixture's munge
socket); ``stop()`` terminates the daemons.

Only one machine is available here, so the cluster has one node and a job of two tasks
runs both on it (``--ntasks=2``); the Slurm commands, daemons and environment are the
real ones. ``skip_unless_installed()`` skips when the binaries are absent outside CI;
on CI (``CI`` set) the start fails instead, since .ci/run installs them.
"""
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.ports import free_port

BINARIES = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld",
            "slurmd": "/usr/sbin/slurmd", "sbatch": "/usr/bin/sbatch",
            "sinfo": "/usr/bin/sinfo"}
PARTITION = "debug"


def missing_binaries():
    return [name for name, path in BINARIES.items() if not os.path.exists(path)]


def free_port_range(count):
    """``count`` consecutive ports that are free now (first, last), below the kernel's
    ephemeral range: srun listens for its tasks' I/O on ephemeral ports, and one of them
    inside the reserved range took a worker's gRPC port (the worker could not start its
    server, its peer then spoke gRPC to srun: "Insane message length")."""
    low = _ephemeral_low()
    for first in range(max(1024, low - 16 * count * 64), low - count, count):
        try:
            ports = [_bound(first + i) for i in range(count)]
        except OSError:
            continue
        for sock in ports:
            sock.close()
        return first, first + count - 1
    raise RuntimeError(f"no {count} consecutive free ports found below {low}")


def _ephemeral_low():
    """The lowest port the kernel hands out to unbound sockets (Linux default 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bound(port):
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    return sock


class SlurmCluster:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.processes = {}
        self.conf = self.dir / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def write_config(self):
        for sub in ("ctld", "spool", "munge", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "munge").chmod(0o700)
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.munge_socket = self.dir / "munge" / "munge.socket"
        first, last = free_port_range(16)
        ports = {"ctld": free_port(), "slurmd": free_port()}
        self.conf.write_text("\n".join([
            "ClusterName=fixture", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={ports['ctld']}", f"SlurmdPort={ports['slurmd']}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.dir / 'ctld'}",
            f"SlurmdSpoolDir={self.dir / 'spool'}",
            f"SlurmctldPidFile={self.dir / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.dir / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.dir / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.dir / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "ReturnToService=2", "EnforcePartLimits=ALL", "MpiDefault=none",
            f"MpiParams=ports={first}-{last}",
            "SchedulerType=sched/backfill", "MinJobAge=600", "KillWait=10",
            "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0",
            "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE "
            "State=UP", ""]))

    def _spawn(self, name, argv):
        log = open(self.dir / "log" / f"{name}.out", "wb")
        self.processes[name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                 env=self.env), log)

    def _check_alive(self):
        for name, (proc, _) in self.processes.items():
            if proc.poll() is not None:
                text = (self.dir / "log" / f"{name}.out").read_text(errors="replace")
                logfile = self.dir / "log" / f"{name}.log"
                if logfile.exists():
                    text += logfile.read_text(errors="replace")
                raise RuntimeError(f"{name} exited with code {proc.returncode}: "
                                   f"{text[-1500:]}")

    def start(self, timeout=60.0):
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"{', '.join(missing)} missing: install slurm-wlm and munge "
                               f"(apt-get install slurm-wlm munge) to run the Slurm tests.")
        self.write_config()
        munge = self.dir / "munge"
        self._spawn("munged", [BINARIES["munged"], "-F", "--force",
                               f"--socket={self.munge_socket}",
                               f"--key-file={munge / 'munge.key'}",
                               f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={self.dir / 'log' / 'munged.log'}",
                               f"--seed-file={munge / 'munged.seed'}"])
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged socket")
        self._spawn("slurmctld", [BINARIES["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [BINARIES["slurmd"], "-D", "-N", "localhost",
                               "-f", str(self.conf)])
        self._wait(self.node_idle, timeout, "node 'localhost' idle in sinfo")
        return self

    def node_idle(self):
        out = subprocess.run([BINARIES["sinfo"], "-h", "-N", "-o", "%N %t"], env=self.env,
                             capture_output=True, text=True, timeout=20).stdout
        return "localhost idle" in out

    def _wait(self, ready, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Slurm fixture: {what} not reached within {timeout:g} s; see "
                           f"{self.dir / 'log'}")

    def stop(self):
        for name in ("slurmd", "slurmctld", "munged"):
            if name not in self.processes:
                continue
            proc, log = self.processes.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()


def skip_unless_installed():
    """Skips the calling test when the binaries are absent, except on CI (``CI`` set),
    where .ci/run installs them and a missing one must fail instead."""
    missing = missing_binaries()
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install slurm-wlm "
                    f"munge); on CI these tests run.")


__all__ = ["SlurmCluster", "skip_unless_installed", "missing_binaries", "PARTITION"]
