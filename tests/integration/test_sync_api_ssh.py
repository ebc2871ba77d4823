"""The synchronous Python API keeps one engine loop per process, so one SSH connection.

A script launches a 2-job Slurm experiment over SSH, then asks for its status and logs, each
a separate blocking call. Counted in the real sshd's own log: exactly one login.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from services import require_service

pytestmark = [pytest.mark.slurm, pytest.mark.sshd, pytest.mark.slow]

SCRIPT = """
import nemorun_tui as run

executor = run.SlurmExecutor(
    tunnel=run.SSHTunnel(host={alias!r}, ssh_config={config!r}, job_dir={jobs!r}),
    poll_rate=5.0,
)
with run.Experiment("one-login", executor=executor, home={home!r}) as exp:  # streams
    first = exp.add(run.Script(inline="echo from-a"), name="a")
    exp.add(run.Script(inline="echo from-b"), name="b", dependencies=[first])
    exp.run()
    states = exp.status()
    print(sorted((name, state.value) for name, state in states.items()))
    print(exp.logs("a").strip(), exp.logs("b").strip())
"""


@dataclass
class PrivateSSHD:
    alias: str
    ssh_config: Path
    log_file: Path


@pytest.fixture
def private_sshd(tmp_path: Path) -> Iterator[PrivateSSHD]:
    """A second sshd with the CI's keys on a free port, whose log only this test writes to
    (the shared one also logs other tests' logins)."""
    for ok, why in (slurm_available(), sshd_available()):
        require_service(ok, why)
    ci = sshd_service()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = tmp_path / "sshd"
    d.mkdir()
    config = Path(ci.ssh_config).with_name("sshd_config").read_text()
    config = config.replace("Port 2222", f"Port {port}").replace(
        f"PidFile {Path(ci.pid_file)}", f"PidFile {d / 'sshd.pid'}"
    )
    (d / "sshd_config").write_text(config)
    keys = Path(ci.known_hosts).read_text().replace(f"]:{ci.port} ", f"]:{port} ")
    (d / "known_hosts").write_text(keys)
    client = Path(ci.ssh_config).read_text()
    client = client.replace(f"Port {ci.port}", f"Port {port}").replace(
        ci.known_hosts, str(d / "known_hosts")
    )
    (d / "ssh_config").write_text(client)
    log = d / "sshd.log"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(d / "sshd_config"), "-E", str(log)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"private sshd did not start: {log.read_text()[-500:]}")
                time.sleep(0.05)
        yield PrivateSSHD(ci.alias, d / "ssh_config", log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_run_status_and_logs_from_one_script_log_in_once(
    tmp_path: Path, private_sshd: PrivateSSHD
) -> None:
    sshd = private_sshd
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            SCRIPT.format(
                alias=sshd.alias,
                config=str(sshd.ssh_config),
                jobs=str(tmp_path / "cluster-jobs"),
                home=str(tmp_path / "home"),
            )
        )
    )
    env = {**os.environ, "NEMORUN_TUI_CONFIG": str(tmp_path / "none.toml")}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # exp.run() streamed each job's output (prefixed: two jobs) over the same connection.
    streamed = sorted(line for line in lines if line.startswith(("[a] ", "[b] ")))
    assert streamed == ["[a] from-a", "[b] from-b"]
    rest = [line for line in lines if not line.startswith(("[a] ", "[b] "))]
    assert rest == ["[('a', 'SUCCEEDED'), ('b', 'SUCCEEDED')]", "from-a from-b"]
    assert sshd.log_file.read_text().count("Accepted publickey") == 1
