"""Look at the project's pages as a person would: the MLflow UI's run table and kedro-viz,
served on a local port and opened in headless Chromium.

``python -m anomaly_lens.browser OUT_DIR`` (in a project folder, after a run) writes
``mlflow_runs.png`` (the headline view of the run table), ``kedro_viz.png`` (every
pipeline) and ``kedro_viz_train.png`` (the ``train`` pipeline, by layer) there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow

from anomaly_lens.tracking import headline_url, register_headline_view


def chromium() -> str | None:
    """The headless browser on this machine (Debian's ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    """A free local port below 49152 (kedro-viz refuses the ephemeral range)."""
    for port in random.Random().sample(range(20000, 45000), 200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free local port found")


@contextlib.contextmanager
def serve(command: list[str], url: str, cwd: Path, timeout: float = 120) -> Iterator[str]:
    """Runs a local web server until the block ends; yields ``url`` once it answers.

    The server runs in its own process group, which is ended as a whole: ``kedro viz run``
    serves from a child process that outlived its parent when only the parent was ended.
    """
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{command[0]} exited: {log.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
                time.sleep(1)
        yield url
    finally:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process.pid, signal.SIGKILL)  # whatever is left of the group
        process.wait()
        log.close()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def look(url: str, screenshot: Path, size: tuple[int, int] = (1800, 900)) -> str:
    """Opens ``url`` in headless Chromium, lets its scripts run, saves a screenshot and
    returns the rendered page's HTML."""
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            "--virtual-time-budget=20000",  # let the single-page app fetch and draw
        ]
        subprocess.run(
            [*flags, f"--screenshot={screenshot}", url],
            check=True,
            capture_output=True,
            timeout=180,
        )
        shown = subprocess.run(
            [*flags, "--dump-dom", url], check=True, capture_output=True, timeout=180, text=True
        )
    return shown.stdout


def mlflow_ui(project: Path, tracking_uri: str) -> contextlib.AbstractContextManager[str]:
    """The MLflow UI over ``tracking_uri`` on a free local port."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "ui", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--backend-store-uri", tracking_uri]
    return serve(command, f"http://127.0.0.1:{port}", project)


def kedro_viz(project: Path) -> contextlib.AbstractContextManager[str]:
    """``kedro viz run`` of the project on a free local port."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("kedro")), "viz", "run", "--no-browser"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return serve(command, f"http://127.0.0.1:{port}", project, timeout=240)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the screenshots")
    parser.add_argument("--experiment", default="anomaly_lens")
    args = parser.parse_args()
    project = Path.cwd()
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"no experiment {args.experiment!r} in {tracking_uri}: run kedro first")
    register_headline_view(client, experiment.experiment_id)
    args.out.mkdir(parents=True, exist_ok=True)
    with mlflow_ui(project, tracking_uri) as base:
        url = headline_url(base, experiment.experiment_id)
        look(url, args.out / "mlflow_runs.png", size=(2600, 700))
    with kedro_viz(project) as base:
        look(base, args.out / "kedro_viz.png", size=(1800, 1100))
        look(f"{base}/?pid=train", args.out / "kedro_viz_train.png", size=(1800, 1100))
    sys.stdout.write(f"Wrote mlflow_runs.png, kedro_viz.png, kedro_viz_train.png in {args.out}\n")


if __name__ == "__main__":
    main()
