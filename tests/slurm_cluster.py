"""A one-node SLURM cluster for the tests: munged with its own key, slurmctld and slurmd from a generated
slurm.conf, everything under one temporary folder; ``stop`` ends exactly the processes it started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

#: the programs a cluster needs (Debian: slurmctld, slurmd, slurm-client, munge)
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
SBIN = ("/usr/sbin", "/usr/local/sbin")
#: the node's feature, for --constraint tests
FEATURE = "ltbench"

CONF = """\
ClusterName=ltbench-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={munge_socket},cred_expire=10
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.log
SchedulerParameters=sched_interval=2
KillWait=5
MinJobAge=600
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Feature={feature} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing_programs() -> list[str]:
    """The cluster programs that are not installed."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return [name for name in PROGRAMS if shutil.which(name, path=path) is None]


def _program(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))
    assert found, f"{name} is not installed"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    """Physical memory in MB, less a margin (slurmd refuses a node that claims more than it has)."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)


@dataclass
class SlurmCluster:
    """One node, one partition (``debug``); ``env`` points the SLURM commands at it."""

    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60) -> None:
        """Write the key and slurm.conf, start munged, slurmctld and slurmd; wait until the node is idle."""
        for sub in ("munge", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = self.root / "munge" / "munge.socket"
        self.conf.write_text(CONF.format(
            host=self.host, ctld_port=_free_port(), slurmd_port=_free_port(), user=_user(), root=self.root,
            munge_socket=socket_path, cpus=self.cpus, memory=_memory_mb(), feature=FEATURE))
        self._spawn("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
                    f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
                    f"--seed-file={self.root / 'munge' / 'munged.seed'}")
        self._wait(lambda: socket_path.exists(), timeout_s, "munged's socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "-D", "-f", str(self.conf))
        self._wait(lambda: self.node_state() == "idle", timeout_s, f"node {self.host} to be idle")

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.out", "ab")  # noqa: SIM115 - closed with the process in stop()
        self.processes.append(subprocess.Popen([_program(name), *args], stdout=log, stderr=subprocess.STDOUT,
                                               env=os.environ | self.env, start_new_session=True))
        log.close()

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.root.glob("*.log*")))
                raise RuntimeError(f"timed out waiting for {what} (exited: {dead}); logs in {self.root}\n{logs}")
            time.sleep(0.5)

    def run(self, *args: str) -> str:
        """A SLURM command's output (``scontrol show job 5``)."""
        return subprocess.run(args, capture_output=True, text=True, env=os.environ | self.env,
                              check=True).stdout

    def node_state(self) -> str:
        try:
            return self.run("sinfo", "-h", "-N", "-o", "%T", "-n", self.host).strip()
        except subprocess.CalledProcessError:
            return ""

    def jobs(self) -> dict[str, str]:
        """Every job the controller knows (finished ones for MinJobAge): id -> state."""
        lines = self.run("squeue", "-h", "-a", "-t", "all", "-r", "-o", "%i %T").split()
        return dict(zip(lines[::2], lines[1::2], strict=True))

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as KEY -> value."""
        words = self.run("scontrol", "show", "job", "-o", job_id).split()
        return dict(word.split("=", 1) for word in words if "=" in word)

    def cancel_all(self, timeout_s: float = 60) -> None:
        """Cancel every job and wait until none runs (their processes belong to slurmd's job steps)."""
        active = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "SUSPENDED")
        if any(state in active for state in self.jobs().values()):
            subprocess.run(["scancel", "--full", "-u", _user()], env=os.environ | self.env, check=False)
        self._wait(lambda: not any(state in active for state in self.jobs().values()), timeout_s,
                   "cancelled jobs to end")

    def stop(self) -> None:
        """Cancel the jobs, then end slurmd, slurmctld and munged (by pid, in that order)."""
        try:
            if all(p.poll() is None for p in self.processes):
                self.cancel_all()
        finally:
            for process in reversed(self.processes):
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            self.processes.clear()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
