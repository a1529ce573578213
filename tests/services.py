"""Real services for the tests that need one, started on this machine and stopped after:
a PostgreSQL server, an MLflow tracking server, Airflow's own Python environment.

Where a service cannot be had the test skips with the reason; under CI (``CI=true``,
where ``.ci/run`` installs them) a missing service fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_PYTHON = Path(os.environ.get("AIRFLOW_PYTHON", PROJECT_ROOT / ".venv-airflow/bin/python"))


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, where every service is installed by ``.ci/run``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI installs this service, yet: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_bin() -> Path | None:
    """Debian keeps the server's programs off PATH, under /usr/lib/postgresql/<major>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1; yields its SQLAlchemy URL.

    The server refuses to run as root, so under root it runs as Debian's ``postgres`` user.
    """
    bin_dir = _postgres_bin()
    if bin_dir is None:
        unavailable("no PostgreSQL server programs (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="anomaly-lens-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run the server")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    log = folder / "server.log"
    ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder}"
        subprocess.run([*ctl, "-o", options, "-l", str(log), "-w", "start"], check=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with its own store and artefacts; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(folder / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def airflow_python() -> Path:
    """The Python of Airflow's own environment (``.ci/run`` builds ``.venv-airflow``)."""
    if not AIRFLOW_PYTHON.is_file():
        unavailable(
            f"no Airflow environment at {AIRFLOW_PYTHON} (python3 -m venv .venv-airflow && "
            ".venv-airflow/bin/pip install -r requirements/airflow.lock)"
        )
    return AIRFLOW_PYTHON
