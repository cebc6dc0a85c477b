"""A real one-node Slurm cluster on localhost, for tests: munged + slurmctld + slurmd.

Everything private to one instance: its own munged socket (slurm.conf `AuthInfo=socket=...`),
free TCP ports, state/spool/log directories under one temp dir. So several clusters (other test
sessions on the same machine) never share daemons. Needs root (slurmd runs jobs as their user)
and Debian's slurm-wlm + munge (`bash scripts/setup.sh --test`).

    with SlurmCluster() as cluster:
        job = cluster.sbatch(["slurm/pretrain.sh", "configs/tiny.yaml"], cwd=repo)
        cluster.wait(job, {"COMPLETED"})
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "sacct")
# How long a requeued job waits before it may start again (slurm.conf AuthInfo cred_expire;
# default 120 s): slurmd refuses to launch a job id whose credential it revoked less than this
# long ago ("Job credential revoked"), so forcing an earlier start (StartTime=now) fails the job.
CRED_EXPIRE_S = 10
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the cluster (not root, or the packages are missing)."""


def missing_requirements() -> str | None:
    """Why a cluster cannot start here, or None."""
    if os.geteuid() != 0:
        return "needs root (slurmd launches jobs as their submitting user)"
    absent = [p for p in DAEMONS if not os.path.exists(p)] + [c for c in CLIENTS[:4] if not shutil.which(c)]
    if absent:
        return f"missing {', '.join(absent)}: run `bash scripts/setup.sh --test`"
    if not os.path.exists("/etc/munge/munge.key"):
        return "missing /etc/munge/munge.key (the munge package creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """`nodes` > 1 runs that many slurmd on this host (Debian's Slurm is built with multiple-slurmd),
    named n1, n2, ... at 127.0.0.1 on their own ports, the CPUs split between them."""

    def __init__(self, cpus: int | None = None, memory_mb: int = 8000, nodes: int = 1):
        why = missing_requirements()
        if why:
            raise SlurmUnavailable(why)
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.host = socket.gethostname()
        self.nodes = [self.host] if nodes == 1 else [f"n{i + 1}" for i in range(nodes)]
        self.procs: list[subprocess.Popen] = []
        self.root = Path(tempfile.mkdtemp(prefix="mmtok-slurm-", dir="/tmp"))
        self.conf = self.root / "slurm.conf"
        # munged checks that its socket directory is owned by its user and not world-writable.
        self.munge_dir = self.root / "munge"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ---- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write_conf(self) -> None:
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir(exist_ok=True)
        self.conf.write_text(
            f"""ClusterName=mmtoktest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_dir}/munge.socket,cred_expire={CRED_EXPIRE_S}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
EnforcePartLimits=ALL
KillWait=30
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
{self._node_lines()}
PartitionName=debug Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _node_lines(self) -> str:
        """One NodeName line per node; several nodes share the host, each slurmd on its own port."""
        cpus = max(1, self.cpus // len(self.nodes))
        memory = self.memory_mb // len(self.nodes)
        port = "" if len(self.nodes) == 1 else " Port={}"
        return "\n".join(f"NodeName={name} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN"
                         + port.format(_free_port()) for name in self.nodes)

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.root / "log" / log_name, "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 30.0) -> None:
        self._write_conf()
        self.root.chmod(0o755)  # the munge user must reach its socket directory
        self.munge_dir.mkdir()
        shutil.chown(self.munge_dir, "munge", "munge")
        self.munge_dir.chmod(0o700)
        m = self.munge_dir
        self._spawn(
            ["runuser", "-u", "munge", "--", "/usr/sbin/munged", "-F", "--force",
             f"--socket={m}/munge.socket", f"--pid-file={m}/munged.pid",
             f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
            "munged.out",
        )
        self._wait_for(lambda: (m / "munge.socket").exists(), timeout, "munged socket")
        self._spawn(["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        for name in self.nodes:
            (self.root / "spool" / name).mkdir(parents=True, exist_ok=True)
            self._spawn(["/usr/sbin/slurmd", "-D", "-N", name, "-f", str(self.conf)], f"slurmd-{name}.out")
        idle = "\n".join(["idle"] * len(self.nodes))
        self._wait_for(lambda: self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.strip() == idle,
                       timeout, "nodes idle")

    def stop(self) -> None:
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.2)
        raise RuntimeError(f"Slurm test cluster: {what} not ready after {timeout:.0f} s\n{self.daemon_logs()}")

    def daemon_logs(self, chars: int = 2000) -> str:
        """The tail of each daemon's log, for failure messages."""
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-chars:]}" for f in sorted((self.root / "log").glob("*")))

    # ---- clients --------------------------------------------------------------------------------
    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def sbatch(self, argv: list[str], cwd=None, env: dict | None = None) -> int:
        """Submit; returns the job id."""
        out = subprocess.run(
            ["sbatch", "--parsable", *argv], cwd=cwd, env={**self.env, **(env or {})},
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(argv)} failed: {out.stderr.strip()}")
        return int(out.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, StdOut, ...)."""
        text = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        return dict(item.split("=", 1) for item in text.split() if "=" in item)

    def state(self, job_id: int) -> str:
        return self.job(job_id)["JobState"]

    def wait(self, job_id: int, states=FINISHED, timeout: float = 300.0, poll: float = 0.5) -> dict[str, str]:
        """Poll until the job's state is in `states`; returns its record (RuntimeError on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info["JobState"] in states:
                return info
            time.sleep(poll)
        raise RuntimeError(f"job {job_id} still {self.state(job_id)} after {timeout:.0f} s")
