"""SSHTransport against the real OpenSSH sshd of the CI (127.0.0.1:2222, MaxSessions 10).

What these prove on a real server: one handshake for many commands and followed files, never
"no more sessions" in sshd's log, the user's ssh config (alias, ProxyJump) honoured, known_hosts
enforced, and a tail that survives its connection being killed, and sshd being restarted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ci_services import SSHDService

from core.transport import TransportError
from core.transport.ssh import SSHTransport, transport_for

pytestmark = pytest.mark.sshd


def by_alias(sshd: SSHDService, **kw: object) -> SSHTransport:
    return SSHTransport(sshd.alias, ssh_config=sshd.ssh_config, **kw)  # type: ignore[arg-type]


def log_size(sshd: SSHDService) -> int:
    try:
        return os.path.getsize(sshd.log_file)
    except OSError:
        return 0


def new_log(sshd: SSHDService, since: int) -> str:
    with open(sshd.log_file, "rb") as fh:
        fh.seek(since)
        return fh.read().decode(errors="replace")


def connection_processes(listener: int) -> list[int]:
    """sshd's per-connection processes: the listener's children."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == listener:
            kids.append(int(entry))
    return kids


async def test_alias_from_ssh_config_and_registry_share_one_connection(sshd: SSHDService) -> None:
    a = transport_for(sshd.alias, ssh_config=sshd.ssh_config)
    b = transport_for(
        sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity=sshd.identity,
        known_hosts=sshd.known_hosts,
    )
    assert a is b, "an alias and its address must resolve to the same registry entry"
    assert isinstance(a, SSHTransport)
    assert a.target == f"ssh://root@127.0.0.1:{sshd.port}"
    before = a.handshakes
    out = await asyncio.gather(a.run(["hostname"]), b.run(["id", "-un"]))
    await a.close()
    assert out[1].stdout.strip() == b"root"
    assert a.handshakes == before + 1


async def test_twenty_jobs_worth_of_commands_and_tails_use_one_connection(
    sshd: SSHDService, tmp_path: Path
) -> None:
    """20 concurrent commands + 20 followed files: 1 handshake, <= 7 sessions, no refusals."""
    since = log_size(sshd)
    t = by_alias(sshd)
    files = [tmp_path / f"job{i}.log" for i in range(20)]
    for f in files:
        f.write_bytes(b"")
    finished = asyncio.Event()

    async def writer() -> None:
        for step in range(10):
            for i, f in enumerate(files):
                with open(f, "ab") as fh:
                    fh.write(f"job {i} step {step}\n".encode())
            await asyncio.sleep(0.05)
        finished.set()

    async def done() -> bool:
        return finished.is_set()

    async def follow(path: Path) -> bytes:
        return b"".join([c async for c in t.tail(str(path), follow=True, done=done, interval=0.05)])

    results = await asyncio.gather(
        writer(),
        *[t.run(["sh", "-c", f"sleep 0.2; echo {i}"]) for i in range(20)],
        *[follow(f) for f in files],
    )
    await t.close()

    commands, tails = results[1:21], results[21:]
    assert [c.stdout for c in commands] == [f"{i}\n".encode() for i in range(20)]
    assert list(tails) == [f.read_bytes() for f in files]
    assert t.handshakes == 1
    assert t.peak_channels <= 7
    assert "no more sessions" not in new_log(sshd, since)


async def test_wrong_known_hosts_is_refused(sshd: SSHDService, tmp_path: Path) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    t = SSHTransport(
        sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity=sshd.identity,
        known_hosts=str(wrong),
        ssh_config=[],
    )
    with pytest.raises(TransportError, match="does NOT match"):
        await t.run(["true"])


async def test_proxyjump_from_ssh_config(sshd: SSHDService, tmp_path: Path) -> None:
    """``ProxyJump`` in the config: reach 127.0.0.1:2222 *through* the same sshd."""
    config = tmp_path / "ssh_config"
    config.write_text(
        Path(sshd.ssh_config).read_text() + "\nHost behind-jump\n"
        f"    HostName 127.0.0.1\n    Port {sshd.port}\n    User root\n"
        f"    IdentityFile {sshd.identity}\n    UserKnownHostsFile {sshd.known_hosts}\n"
        "    ProxyJump nemorun-ci\n"
    )
    t = SSHTransport("behind-jump", ssh_config=str(config))
    result = await t.run(["sh", "-c", "echo $SSH_CONNECTION"])
    await t.close()
    # Through the jump, sshd sees the connection coming from itself on loopback.
    assert result.ok and result.stdout.startswith(b"127.0.0.1 ")


async def test_tail_survives_killed_connection_and_sshd_restart(
    sshd: SSHDService, tmp_path: Path
) -> None:
    """Kill our connection's sshd process, then restart sshd itself, while following a log."""
    listener = sshd.pid()
    assert listener is not None
    path = tmp_path / "train.log"
    path.write_bytes(b"")
    received: list[bytes] = []
    finished = asyncio.Event()
    t = by_alias(sshd, reconnect_timeout=30.0)

    async def wait_received(n: int) -> None:
        while sum(map(len, received)) < n:
            await asyncio.sleep(0.01)

    async def writer() -> None:
        nonlocal listener
        with open(path, "ab") as fh:
            for i in range(300):
                fh.write(f"step {i:05d} {'x' * (i % 50)}\n".encode())
                fh.flush()
                await asyncio.sleep(0.004)
                if i == 100:
                    await wait_received(1)
                    for pid in connection_processes(listener):
                        os.kill(pid, signal.SIGKILL)  # server side closes our connection
                if i == 200:
                    # Full restart: listener and connections gone, port closed for a moment.
                    for pid in connection_processes(listener):
                        os.kill(pid, signal.SIGKILL)
                    os.kill(listener, signal.SIGTERM)
                    for _ in range(100):
                        if not Path(f"/proc/{listener}").exists():
                            break
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.3)
                    config = str(Path(sshd.pid_file).with_name("sshd_config"))
                    subprocess.run(
                        ["/usr/sbin/sshd", "-f", config, "-E", sshd.log_file], check=True
                    )
                    for _ in range(100):
                        listener = sshd.pid() or 0
                        if listener and Path(f"/proc/{listener}").exists():
                            break
                        await asyncio.sleep(0.02)
        finished.set()

    async def done() -> bool:
        return finished.is_set()

    task = asyncio.create_task(writer())
    started = time.monotonic()
    async for chunk in t.tail(str(path), follow=True, done=done, interval=0.02):
        received.append(chunk)
    await task
    await t.close()

    assert b"".join(received) == path.read_bytes(), "lost or repeated bytes across reconnects"
    assert t.handshakes >= 3
    assert time.monotonic() - started < 30


async def test_key_from_the_ssh_agent(
    sshd: SSHDService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No identity file given: the key held by the agent (SSH_AUTH_SOCK) is used."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", sshd.identity], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
        t = SSHTransport(
            sshd.host, port=sshd.port, user=sshd.user, known_hosts=sshd.known_hosts, ssh_config=[]
        )
        result = await t.run(["echo", "via agent"])
        await t.close()
        assert result.stdout == b"via agent\n"
    finally:
        agent.terminate()
        agent.wait(timeout=5)
