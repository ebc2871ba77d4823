"""SSHTransport against asyncssh's in-process server: 2FA prompts, host keys, channel cap, drops.

These need no service (the server runs inside the test), so they always run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.transport import TransportError
from core.transport.ssh import SSHTransport, set_prompt_handler

if TYPE_CHECKING:
    from .conftest import InProcessServer


def make(server: InProcessServer, **kw: object) -> SSHTransport:
    opts: dict[str, object] = {
        "port": server.port,
        "user": "tester",
        "identity": server.client_key,
        "known_hosts": server.known_hosts,
        "ssh_config": [],  # do not read the developer's ~/.ssh/config
        "reconnect_timeout": 10.0,
    }
    opts.update(kw)
    return SSHTransport("127.0.0.1", **opts)  # type: ignore[arg-type]


async def test_keyboard_interactive_prompt_goes_to_the_handler(
    kbdint_server: InProcessServer,
) -> None:
    seen: list[tuple[str, str, list[tuple[str, bool]]]] = []

    async def prompt(name: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        seen.append((name, instructions, prompts))
        await asyncio.sleep(0)  # an app would await a modal here
        return ["424242"]

    t = make(kbdint_server, prompt=prompt, identity=None)
    result = await t.run(["echo", "in"])
    await t.close()

    assert result.stdout == b"in\n"
    assert seen == [("2FA", "Enter the code from your token", [("Verification code: ", False)])]
    assert kbdint_server.kbdint_answers == [["424242"]]


async def test_process_wide_prompt_handler_is_used_and_wrong_code_is_refused(
    kbdint_server: InProcessServer,
) -> None:
    set_prompt_handler(lambda name, instructions, prompts: ["000000"])
    try:
        t = make(kbdint_server, identity=None)
        with pytest.raises(TransportError, match="authentication .* failed"):
            await t.run(["true"])
    finally:
        set_prompt_handler(None)
    assert kbdint_server.kbdint_answers == [["000000"]] * 3  # asked again, but not forever


async def test_no_prompt_handler_and_no_terminal_fails_clearly(
    kbdint_server: InProcessServer,
) -> None:
    t = make(kbdint_server, identity=None)
    with pytest.raises(TransportError, match="authentication"):
        await t.run(["true"])


async def test_host_key_mismatch_is_refused_with_a_clear_message(
    ssh_server: InProcessServer, tmp_path: Path
) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{ssh_server.port} {other}\n")
    t = make(ssh_server, known_hosts=str(wrong))
    with pytest.raises(TransportError, match="does NOT match") as info:
        await t.run(["true"])
    assert "ssh-keygen -R" in str(info.value)


async def test_unknown_host_is_refused_not_silently_accepted(
    ssh_server: InProcessServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    t = make(ssh_server, known_hosts=str(empty))
    with pytest.raises(TransportError, match="not in .*refusing"):
        await t.run(["true"])


async def test_commands_share_one_connection_within_the_channel_cap(
    ssh_server: InProcessServer,
) -> None:
    t = make(ssh_server, max_channels=4)
    results = await asyncio.gather(
        *[t.run(["sh", "-c", f"sleep 0.1; echo {i}"]) for i in range(30)]
    )
    await t.close()

    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(30)]
    assert t.handshakes == 1
    assert ssh_server.sessions_peak <= 4


async def test_env_reaches_the_command_through_stdin_not_argv(ssh_server: InProcessServer) -> None:
    t = make(ssh_server)
    value = 'line1\nit\'s "quoted" $(nope) `nope`\n\n'
    result = await t.run(
        ["sh", "-c", 'printf %s "$TOKEN"; printf "|"; cat'], env={"TOKEN": value}, input=b"rest"
    )
    await t.close()
    assert result.stdout.decode() == value + "|rest"
    with pytest.raises(TransportError, match="invalid environment variable"):
        await t.run(["true"], env={"BAD NAME": "x"})


async def test_tail_resumes_after_the_server_drops_the_connection(
    ssh_server: InProcessServer, tmp_path: Path
) -> None:
    """Dropped mid-follow: reconnect, reopen, continue from the last offset, byte for byte."""
    path = tmp_path / "train.log"
    path.write_bytes(b"")
    finished = asyncio.Event()
    received: list[bytes] = []
    t = make(ssh_server)

    async def writer() -> None:
        with open(path, "ab") as fh:
            for i in range(200):
                fh.write(f"step {i:04d} loss {1 / (i + 1):.6f}\n".encode())
                fh.flush()
                await asyncio.sleep(0.005)
                if i == 80:
                    while sum(map(len, received)) == 0:
                        await asyncio.sleep(0.01)
                    ssh_server.drop_all()
        finished.set()

    async def done() -> bool:
        return finished.is_set()

    task = asyncio.create_task(writer())
    async for chunk in t.tail(str(path), follow=True, done=done, interval=0.02):
        received.append(chunk)
    await task
    await t.close()

    assert b"".join(received) == path.read_bytes()
    assert t.handshakes == 2


async def test_a_started_command_is_not_retried_when_the_connection_drops(
    ssh_server: InProcessServer, tmp_path: Path
) -> None:
    """Retrying could run it twice (sbatch!): the caller must be told instead."""
    counter = tmp_path / "ran"
    t = make(ssh_server)
    await t.run(["true"])

    async def drop_soon() -> None:
        await asyncio.sleep(0.3)
        ssh_server.drop_all()

    dropper = asyncio.create_task(drop_soon())
    with pytest.raises(TransportError, match="lost"):
        await t.run(["sh", "-c", f"echo x >> {counter}; sleep 3"])
    await dropper
    assert counter.read_text() == "x\n"
    assert (await t.run(["echo", "again"])).stdout == b"again\n"  # reconnects for the next one
    await t.close()


async def test_sftp_file_operations(ssh_server: InProcessServer, tmp_path: Path) -> None:
    t = make(ssh_server)
    target = str(tmp_path / "d" / "e" / "f.bin")
    payload = bytes(range(256)) * 10
    await t.write(target, payload, mode=0o640)
    assert Path(target).read_bytes() == payload
    assert await t.read(target, 10, 5) == payload[10:15]
    assert await t.size(target) == len(payload)
    assert await t.size(str(tmp_path / "missing")) is None
    with pytest.raises(FileNotFoundError):
        await t.read(str(tmp_path / "missing"))
    await t.get(target, tmp_path / "local" / "copy.bin")
    assert (tmp_path / "local" / "copy.bin").read_bytes() == payload
    await t.put(tmp_path / "local" / "copy.bin", str(tmp_path / "up" / "x.bin"))
    assert (tmp_path / "up" / "x.bin").read_bytes() == payload
    await t.makedirs(str(tmp_path / "m" / "n"))
    assert (tmp_path / "m" / "n").is_dir()
    assert [c async for c in t.tail(target, offset=len(payload) - 3)] == [payload[-3:]]
    assert t.handshakes == 1
    await t.close()
