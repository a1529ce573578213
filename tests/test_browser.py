"""The local web servers that reports and screenshots use end with their block, children
included."""

from __future__ import annotations

import os
import sys
import time

from anomaly_lens.browser import free_port, serve

# A parent that serves from a child process, as `kedro viz run` does.
PARENT = """
import subprocess, sys
server = subprocess.Popen([sys.executable, "-m", "http.server", sys.argv[1]])
open(sys.argv[2], "w").write(str(server.pid))
server.wait()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, only not yet reaped
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_served_block_ends_the_server_and_its_children(tmp_path):
    port, child = free_port(), tmp_path / "child.pid"
    command = [sys.executable, "-c", PARENT, str(port), str(child)]
    with serve(command, f"http://127.0.0.1:{port}", tmp_path, timeout=60):
        server = int(child.read_text())
        assert alive(server)
    deadline = time.monotonic() + 10
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(server)
