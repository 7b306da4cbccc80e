"""A live Airflow for tests and benchmarks: a throwaway PostgreSQL cluster (Debian's `postgresql`
package: `initdb` into a temporary folder, bound to 127.0.0.1, started and stopped by its
pid; as the `postgres` user when running as root, which PostgreSQL requires), and
Airflow's scheduler, dag-processor, api-server and triggerer with the LocalExecutor on
it, each a process of its own, stopped at the end."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SERVICES = ("scheduler", "dag-processor", "api-server", "triggerer")


def cli_json(stdout: str):
    """The JSON an `airflow ... -o json` command printed (warnings may come before it)."""
    for k, line in enumerate(stdout.splitlines()):
        if line.startswith(("[", "{")):
            try:
                return json.loads("\n".join(stdout.splitlines()[k:]))
            except json.JSONDecodeError:
                continue
    return []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found and not shutil.which(name):
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found[-1] if found else shutil.which(name)


class Postgres:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1:`port`, trust auth."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="geosid-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.process = None

    def _as_owner(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if self.as_root else list(command)

    def start(self) -> Postgres:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Postgres:
        if self.as_root:
            os.chmod(self.folder, 0o755)
            shutil.chown(self.folder, "postgres")
        subprocess.run(
            self._as_owner(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"),
            check=True,
            capture_output=True,
            text=True,
        )
        log = open(self.folder / "postgres.log", "w")
        self.process = subprocess.Popen(
            self._as_owner(
                _pg_bin("postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        import psycopg2  # the test extra's driver (Airflow's too)

        while time.monotonic() < deadline:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
            except psycopg2.OperationalError:  # not accepting connections yet
                time.sleep(0.5)
                continue
            conn.autocommit = True
            conn.cursor().execute("CREATE DATABASE airflow")
            conn.close()
            return self
        raise RuntimeError("PostgreSQL did not start: " + (self.folder / "postgres.log").read_text()[-2000:])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def stop(self) -> None:
        """Fast shutdown of the postmaster by its pid (postmaster.pid), then the folder."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 30
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)


class Airflow:
    """Airflow's services on `postgres`, with the project's dags/ folder."""

    def __init__(self, home: Path, postgres: Postgres, extra_env: dict | None = None):
        self.home = home
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SPARK_", "GEOSID_LAKE"))}
        self.env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "geosid" / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__PARALLELISM": "6",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": "geosid-test-jwt-secret-0123456789abcdef",
                "AIRFLOW__API__SECRET_KEY": "geosid-test-secret-key",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "RUST_LOG": "error",
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update(extra_env or {})
        self.processes: dict[str, subprocess.Popen] = {}

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}")
        return done

    def start(self) -> Airflow:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli("db", "migrate", timeout=900)
        for name in SERVICES:
            log = open(self.home / f"{name}.log", "w")
            self.processes[name] = subprocess.Popen([AIRFLOW, name], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_for_dags(self, dag_ids: list[str], timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            present = {d["dag_id"] for d in cli_json(self.cli("dags", "list", "-o", "json", check=False).stdout)}
            if set(dag_ids) <= present:
                return
            time.sleep(3)
        raise RuntimeError(f"the dag-processor did not parse {dag_ids}:\n{self.log_tail('dag-processor')}")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"airflow {name} exited ({process.returncode}):\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def runs(self, dag_id: str) -> list[dict]:
        return cli_json(self.cli("dags", "list-runs", dag_id, "-o", "json", check=False).stdout)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        rows = cli_json(self.cli("tasks", "states-for-dag-run", dag_id, run_id, "-o", "json", check=False).stdout)
        return {row["task_id"]: row["state"] for row in rows}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
