"""SSH transport on asyncssh: one connection per host per process, shared by everything.

Why it is shaped like this:

* OpenSSH caps sessions per connection (``MaxSessions``, 10 by default). A channel per job
  poller or per followed log (what NeMo Run does) hits "no more sessions" with ten jobs. Here
  commands share a bounded pool of channels (default 6) and *every* followed file is served by
  the single SFTP session with offset reads, so a connection never holds more than 7 sessions.
* Connections drop (laptop sleeps, sshd restarts). Every file operation is idempotent and every
  tail is a sequence of "bytes at offset N" reads, so after a reconnect (with backoff) each tail
  simply asks again from its last delivered offset: nothing lost, nothing repeated. Commands are
  *not* retried once started (``sbatch`` twice would submit twice); callers decide.
* Security defaults are OpenSSH's: host keys are checked against known_hosts (a mismatch or an
  unknown host is refused with a message saying what to do), ``~/.ssh/config`` is honoured
  (Host aliases, User, Port, IdentityFile, ProxyJump, ServerAliveInterval, UserKnownHostsFile),
  keys come from identity files and the agent, and keyboard-interactive prompts (2FA) go to a
  prompt handler (the app, or the terminal) instead of failing.

This module imports asyncssh at import time; only code that actually uses SSH imports it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import inspect
import os
import re
import shlex
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncssh

from core.engine.loop_local import LoopLocal
from core.transport import CommandResult, Transport, TransportError
from core.transport.follow import follow_file
from core.transport.local import CHUNK_SIZE, local_transport
from core.transport.prompts import PromptHandler, prompt_handler
from core.transport.prompts import set_prompt_handler as set_prompt_handler  # re-exported

T = TypeVar("T")

#: ``handler(name, instructions, [(prompt, echo), ...]) -> [answer, ...]`` (may be async).
#: Returning None aborts keyboard-interactive authentication.

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Errors that mean "the connection (or the SFTP channel on it) is gone": retry after reconnect.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncssh.DisconnectError,
    asyncssh.ConnectionLost,
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.ChannelOpenError,
    ConnectionError,
    EOFError,
    BrokenPipeError,
    OSError,
)


def _terminal_prompt(name: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
    """Ask on the controlling terminal; refuse (None) when there is none (CI, a daemon)."""
    if not sys.stdin or not sys.stdin.isatty():
        raise TransportError(
            "the SSH server asks an interactive question (2FA/password) but there is no "
            "terminal and no prompt handler; run once from a terminal or use key/agent auth"
        )
    if name:
        print(name, file=sys.stderr)
    if instructions:
        print(instructions, file=sys.stderr)
    answers = []
    for text, echo in prompts:
        answers.append(input(text) if echo else getpass.getpass(text))
    return answers


def _env_wrapper(
    argv: Sequence[str], env: dict[str, str], stdin: bytes | None
) -> tuple[str, bytes]:
    """Pass environment values through stdin, not the command line nor sshd's AcceptEnv.

    The remote ``sh`` reads ``NAME=<base64>`` lines up to an empty line, exports them and execs
    the command, whose stdin is whatever follows. Values never appear in argv (``ps``) or in
    sshd's logs, and arbitrary bytes (newlines, quotes) survive.
    """
    lines = []
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise TransportError(f"invalid environment variable name {name!r}")
        lines.append(f"{name}={base64.b64encode(value.encode()).decode()}\n")
    script = (
        'while IFS= read -r line && [ -n "$line" ]; do '
        'val=$(printf %s "${line#*=}" | base64 -d; echo x) || exit 125; '
        'export "${line%%=*}=${val%x}"; '
        'done; exec "$@"'
    )
    command = shlex.join(["sh", "-c", script, "sh", *argv])
    return command, ("".join(lines) + "\n").encode() + (stdin or b"")


class _Client(asyncssh.SSHClient):
    """Routes connection loss and interactive authentication to the owning transport."""

    #: Like OpenSSH's NumberOfPasswordPrompts: a wrong answer is asked again, but not forever.
    MAX_PROMPT_ROUNDS = 3

    def __init__(self, owner: SSHTransport) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHClientConnection | None = None
        self._kbdint_attempts = 0
        self._password_attempts = 0

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._connection_lost(self._conn)

    def kbdint_auth_requested(self) -> str | None:
        if self._owner._prompt_handler() is None:
            return None
        self._kbdint_attempts += 1
        return "" if self._kbdint_attempts <= self.MAX_PROMPT_ROUNDS else None

    async def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:  # an information-only round: nothing to answer
            return []
        return await self._owner._ask(name, instructions, list(prompts))

    def password_auth_requested(self) -> str | Awaitable[str | None] | None:
        async def ask() -> str | None:
            text = f"{self._owner.username}@{self._owner.host}'s password: "
            answers = await self._owner._ask("", "", [(text, False)])
            return answers[0] if answers else None

        self._password_attempts += 1
        if (
            self._owner._prompt_handler() is None
            or self._password_attempts > self.MAX_PROMPT_ROUNDS
        ):
            return None
        return ask()


@dataclass
class _LoopState:
    """Everything bound to one event loop (asyncio primitives and the live connection)."""

    loop: asyncio.AbstractEventLoop
    channels: asyncio.Semaphore
    connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sftp_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None
    sftp: asyncssh.SFTPClient | None = None
    generation: int = 0


class SSHTransport(Transport):
    """A shared SSH connection to one host: commands, SFTP file ops and resumable tails.

    Get instances through :func:`transport_for`, which returns the one per (host, user, port).
    """

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        identity: str | Sequence[str] | None = None,
        ssh_config: str | Sequence[str] | None = None,
        known_hosts: str | Sequence[str] | None = None,
        prompt: PromptHandler | None = None,
        max_channels: int = 6,
        keepalive_interval: float | None = None,
        connect_timeout: float = 20.0,
        reconnect_timeout: float = 60.0,
    ) -> None:
        if max_channels < 1 or max_channels > 9:
            raise ValueError("max_channels must be 1..9 (sshd allows 10 sessions; SFTP takes one)")
        self.orig_host = host
        self.prompt = prompt
        self.max_channels = max_channels
        self.reconnect_timeout = reconnect_timeout
        self._options = self._build_options(
            host, user, port, identity, ssh_config, known_hosts, keepalive_interval, connect_timeout
        )
        self.host: str = self._options.host
        self.port: int = int(self._options.port)
        self.username: str = self._options.username
        self.target = f"ssh://{self.username}@{self.host}:{self.port}"
        #: Successful SSH handshakes so far (the bench checks it stays at 1).
        self.handshakes = 0
        #: Channels in use right now and the most ever used at once (commands + SFTP).
        self.open_channels = 0
        self.peak_channels = 0
        self._loop_state: LoopLocal[_LoopState] = LoopLocal(
            lambda loop: _LoopState(loop=loop, channels=asyncio.Semaphore(self.max_channels))
        )

    # ------------------------------------------------------------------ connection setup
    def _build_options(
        self,
        host: str,
        user: str | None,
        port: int | None,
        identity: str | Sequence[str] | None,
        ssh_config: str | Sequence[str] | None,
        known_hosts: str | Sequence[str] | None,
        keepalive_interval: float | None,
        connect_timeout: float,
    ) -> asyncssh.SSHClientConnectionOptions:
        config: Any = () if ssh_config is None else ssh_config
        if isinstance(config, str | Path):
            config = [os.path.expanduser(str(config))]
        self._config_paths = config
        kwargs: dict[str, Any] = {
            "config": config,
            "host": host,
            "connect_timeout": connect_timeout,
            "keepalive_count_max": 3,
            "client_factory": lambda: _Client(self),
        }
        if user:
            kwargs["username"] = user
        if port:
            kwargs["port"] = int(port)
        if identity:
            keys = [identity] if isinstance(identity, str) else list(identity)
            kwargs["client_keys"] = [os.path.expanduser(k) for k in keys]
        if known_hosts:
            files = [known_hosts] if isinstance(known_hosts, str) else list(known_hosts)
            kwargs["known_hosts"] = [os.path.expanduser(k) for k in files]
        if keepalive_interval is not None:
            kwargs["keepalive_interval"] = keepalive_interval
        try:
            options = asyncssh.SSHClientConnectionOptions(**kwargs)
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise TransportError(f"cannot set up SSH to {host!r}: {exc}") from exc
        if options.known_hosts is None:
            # A config saying "UserKnownHostsFile none" would turn host key checks off
            # silently; we keep them on with OpenSSH's default file instead.
            kwargs["known_hosts"] = os.path.expanduser("~/.ssh/known_hosts")
            options = asyncssh.SSHClientConnectionOptions(**kwargs)
        if keepalive_interval is None and not options.keepalive_interval:
            kwargs["keepalive_interval"] = 15
            options = asyncssh.SSHClientConnectionOptions(**kwargs)
        self._known_hosts_files = kwargs.get("known_hosts") or self._config_known_hosts(options)
        return options

    @staticmethod
    def _config_known_hosts(options: asyncssh.SSHClientConnectionOptions) -> list[str]:
        files = options.known_hosts
        if isinstance(files, str):
            return [files]
        if isinstance(files, list | tuple) and all(isinstance(f, str) for f in files):
            return list(files)
        return [os.path.expanduser("~/.ssh/known_hosts")]

    @property
    def key(self) -> tuple[str, int, str]:
        """Registry key: the resolved host, port and user."""
        return (self.host, self.port, self.username)

    def _prompt_handler(self) -> PromptHandler | None:
        if self.prompt is not None:
            return self.prompt
        installed = prompt_handler()
        if installed is not None:
            return installed
        if sys.stdin is not None and sys.stdin.isatty():
            return _terminal_prompt
        return None

    async def _ask(
        self, name: str, instructions: str, prompts: list[tuple[str, bool]]
    ) -> list[str] | None:
        handler = self._prompt_handler()
        if handler is None:
            return None
        result = handler(name, instructions, prompts)
        if inspect.isawaitable(result):
            result = await result
        return None if result is None else [str(a) for a in result]

    def _st(self) -> _LoopState:
        # A new event loop (tests, or the app restarting its loop): the old connection
        # belongs to a dead loop and cannot be used; start afresh lazily.
        return self._loop_state.get()

    def _connection_lost(self, conn: asyncssh.SSHClientConnection | None) -> None:
        st = self._loop_state.current()
        if st is not None and conn is not None and st.conn is conn:
            st.conn = None
            st.sftp = None

    def _drop(self, st: _LoopState, conn: asyncssh.SSHClientConnection | None) -> None:
        if conn is not None and st.conn is conn:
            st.conn = None
            st.sftp = None
            conn.abort()

    def _host_key_message(self, exc: Exception) -> str:
        where = f"[{self.host}]:{self.port}" if self.port != 22 else self.host
        known = False
        for path in self._known_hosts_files:
            try:
                text = Path(os.path.expanduser(path)).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                patterns = line.split(" ", 1)[0] if line and not line.startswith("#") else ""
                if where in patterns.split(",") or self.orig_host in patterns.split(","):
                    known = True
        files = ", ".join(self._known_hosts_files)
        if known:
            return (
                f"host key of {where} does NOT match the one recorded in {files}: refusing to "
                f"connect (someone may be intercepting the connection). If the host key really "
                f"changed, remove the old entry with `ssh-keygen -R '{where}'` and verify the new "
                f"fingerprint with the cluster admins. ({exc})"
            )
        return (
            f"host key of {where} is not in {files}: refusing to connect to an unverified "
            f"host. Connect once with `ssh -p {self.port} {self.username}@{self.host}` to check "
            f"and record its key. ({exc})"
        )

    async def _connect_once(self) -> asyncssh.SSHClientConnection:
        try:
            # ``config`` again: a ProxyJump hop is resolved through it, not through options.
            conn = await asyncssh.connect(
                self.orig_host, options=self._options, config=self._config_paths
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise TransportError(self._host_key_message(exc)) from exc
        except socket.gaierror as exc:
            raise TransportError(
                f"cannot resolve {self.host!r} (from {self.orig_host!r}): {exc}"
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise TransportError(
                f"SSH authentication to {self.target} failed: {exc.reason}. Check the identity "
                f"file, the agent (SSH_AUTH_SOCK) and User in ~/.ssh/config."
            ) from exc
        except TransportError:
            raise
        self.handshakes += 1
        return conn

    async def _ensure(self) -> asyncssh.SSHClientConnection:
        """The live connection, (re)connecting with exponential backoff up to the deadline."""
        st = self._st()
        conn = st.conn
        if conn is not None and not conn.is_closed():
            return conn
        async with st.connect_lock:
            conn = st.conn
            if conn is not None and not conn.is_closed():
                return conn
            st.conn = None
            st.sftp = None
            delay = 0.2
            deadline = st.loop.time() + self.reconnect_timeout
            while True:
                try:
                    conn = await self._connect_once()
                    break
                except TransportError:
                    raise  # host key / auth problems do not heal by retrying
                except (OSError, asyncssh.Error, TimeoutError) as exc:
                    if st.loop.time() + delay > deadline:
                        raise TransportError(
                            f"cannot connect to {self.target}: {exc or type(exc).__name__}"
                        ) from exc
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            st.conn = conn
            st.generation += 1
            return conn

    async def _sftp(self) -> tuple[asyncssh.SFTPClient, int]:
        st = self._st()
        conn = await self._ensure()
        if st.sftp is not None and st.conn is conn:
            return st.sftp, st.generation
        async with st.sftp_lock:
            conn = await self._ensure()
            if st.sftp is None or st.conn is not conn:
                st.sftp = await conn.start_sftp_client()
                self._count_channel(+1)
            return st.sftp, st.generation

    def _count_channel(self, delta: int) -> None:
        self.open_channels = max(0, self.open_channels + delta)
        self.peak_channels = max(self.peak_channels, self.open_channels)

    async def _with_sftp(self, what: str, op: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """Run an idempotent SFTP operation, reconnecting (with backoff) when the link drops."""
        st = self._st()
        deadline = st.loop.time() + self.reconnect_timeout
        delay = 0.2
        while True:
            try:
                sftp, _ = await self._sftp()
                return await op(sftp)
            except asyncssh.SFTPNoSuchFile as exc:
                raise FileNotFoundError(f"{what}: {exc.reason}") from exc
            except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
                raise  # local file problems (put/get), not the connection
            except asyncssh.SFTPPermissionDenied as exc:
                raise PermissionError(f"{what}: {exc.reason}") from exc
            except (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection):
                pass
            except asyncssh.SFTPError as exc:
                raise TransportError(f"{what} on {self.target}: {exc.reason}") from exc
            except TransportError:
                raise
            except _CONNECTION_ERRORS:
                pass
            self._drop(st, st.conn)
            if st.loop.time() + delay > deadline:
                raise TransportError(f"{what}: connection to {self.target} lost")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ Transport API
    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` (each element quoted) on one pooled channel of the shared connection.

        A command whose channel could not even be opened is retried once on a fresh
        connection (it never ran); one that started and then lost its connection raises
        ``TransportError`` because it may or may not have had its effect.
        """
        args = tuple(str(a) for a in argv)
        stdin: bytes | None
        if env:
            command, stdin = _env_wrapper(args, env, input)
        else:
            command, stdin = shlex.join(args), input
        st = self._st()
        async with st.channels:
            for attempt in range(2):
                conn = await self._ensure()
                try:
                    proc = await conn.create_process(command, encoding=None)
                except asyncssh.ChannelOpenError as exc:
                    if attempt == 0 and conn.is_closed():
                        self._drop(st, conn)
                        continue
                    raise TransportError(
                        f"{self.target} refused a channel for {args[0]}: {exc.reason}"
                    ) from exc
                except (asyncssh.DisconnectError, ConnectionError, OSError) as exc:
                    self._drop(st, conn)
                    if attempt == 0:
                        continue
                    raise TransportError(f"connection to {self.target} lost: {exc}") from exc
                break
            self._count_channel(+1)
            try:
                if stdin is not None:
                    proc.stdin.write(stdin)
                proc.stdin.write_eof()
                out, err = await asyncio.wait_for(
                    asyncio.gather(proc.stdout.read(), proc.stderr.read()), timeout
                )
                await asyncio.wait_for(proc.wait_closed(), timeout)
            except TimeoutError:
                proc.close()
                raise TransportError(
                    f"{args[0]} on {self.target} timed out after {timeout:g} s"
                ) from None
            except asyncio.CancelledError:
                proc.close()
                raise
            except (asyncssh.Error, ConnectionError, OSError) as exc:
                self._drop(st, conn)
                raise TransportError(
                    f"connection to {self.target} lost while running {args[0]}: {exc}"
                ) from exc
            finally:
                self._count_channel(-1)
        status = proc.exit_status
        if status is None:
            signal_info = proc.exit_signal
            if signal_info is None:
                raise TransportError(f"{args[0]} on {self.target} ended without an exit status")
            status = 128 + _signal_number(signal_info[0])
        return CommandResult(args, int(status), bytes(out), bytes(err))

    async def put(self, local: Path, remote: str) -> None:
        """Upload through SFTP (parents created)."""

        async def op(sftp: asyncssh.SFTPClient) -> None:
            parent = os.path.dirname(remote)
            if parent:
                await sftp.makedirs(parent, exist_ok=True)
            await sftp.put(str(local), remote)

        await self._with_sftp(f"upload {remote}", op)

    async def get(self, remote: str, local: Path) -> None:
        """Download through SFTP (local parents created)."""
        Path(local).parent.mkdir(parents=True, exist_ok=True)

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await sftp.get(remote, str(local))

        await self._with_sftp(f"download {remote}", op)

    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes from ``offset`` (``FileNotFoundError`` if missing)."""

        async def op(sftp: asyncssh.SFTPClient) -> bytes:
            async with sftp.open(remote, "rb") as fh:
                # Opened "rb", so read gives bytes (asyncssh types it str | bytes).
                data = cast(bytes, await fh.read(-1 if length is None else length, offset))
                return bytes(data)

        return await self._with_sftp(f"read {remote}", op)

    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        """Atomic: write a temp file next to ``remote`` with ``mode``, then rename over it."""
        parent = os.path.dirname(remote) or "."
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await sftp.makedirs(parent, exist_ok=True)
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            async with sftp.open(tmp, "wb", attrs) as fh:
                await fh.write(data)
                with contextlib.suppress(asyncssh.SFTPError):
                    await fh.fsync()
            await sftp.chmod(tmp, mode)
            try:
                await sftp.posix_rename(tmp, remote)
            except asyncssh.SFTPOpUnsupported:
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    await sftp.remove(remote)
                await sftp.rename(tmp, remote)

        await self._with_sftp(f"write {remote}", op)

    async def size(self, remote: str) -> int | None:
        """Size via SFTP stat, or None when missing."""

        async def op(sftp: asyncssh.SFTPClient) -> int | None:
            try:
                return (await sftp.stat(remote)).size
            except asyncssh.SFTPNoSuchFile:
                return None

        return await self._with_sftp(f"stat {remote}", op)

    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        """``mkdir -p`` via SFTP."""

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await sftp.makedirs(remote, attrs=asyncssh.SFTPAttrs(permissions=mode), exist_ok=True)

        await self._with_sftp(f"mkdir {remote}", op)

    def tail(
        self,
        remote: str,
        *,
        offset: int = 0,
        follow: bool = False,
        done: Callable[[], Awaitable[bool]] | None = None,
        interval: float = 0.25,
    ) -> AsyncIterator[bytes]:
        """Offset reads over the shared SFTP session; survives reconnects (see module doc)."""
        return self._tail(remote, offset, follow, done, interval)

    async def _tail(
        self,
        remote: str,
        offset: int,
        follow: bool,
        done: Callable[[], Awaitable[bool]] | None,
        interval: float,
    ) -> AsyncIterator[bytes]:
        handle: Any = None
        handle_generation = -1

        async def read_at(pos: int) -> bytes | None:
            nonlocal handle, handle_generation

            async def op(sftp: asyncssh.SFTPClient) -> bytes | None:
                nonlocal handle, handle_generation
                generation = self._st().generation
                if handle is None or handle_generation != generation:
                    # File handles die with their connection; reopen on the new one.
                    try:
                        handle = await sftp.open(remote, "rb")
                    except asyncssh.SFTPNoSuchFile:
                        return None
                    handle_generation = generation
                try:
                    return bytes(await handle.read(CHUNK_SIZE, pos))
                except _CONNECTION_ERRORS:  # (SFTPConnectionLost is one of them)
                    handle = None
                    raise

            return await self._with_sftp(f"tail {remote}", op)

        try:
            async for chunk in follow_file(
                read_at, offset=offset, follow=follow, done=done, interval=interval
            ):
                yield chunk
        finally:
            if handle is not None:
                with contextlib.suppress(Exception):
                    await handle.close()

    async def close(self) -> None:
        """Close the connection of the current loop; the transport reconnects if used again."""
        st = self._loop_state.clear()
        if st is None or st.conn is None:
            return
        conn = st.conn
        st.conn = None
        st.sftp = None
        try:
            if asyncio.get_running_loop() is st.loop:
                conn.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.wait_closed(), 5)
        except RuntimeError:
            pass


def _signal_number(name: str) -> int:
    import signal

    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return 0


_REGISTRY: dict[tuple[str, int, str], SSHTransport] = {}


def transport_for(
    host: str | None = None,
    *,
    user: str | None = None,
    port: int | None = None,
    identity: str | Sequence[str] | None = None,
    ssh_config: str | Sequence[str] | None = None,
    known_hosts: str | Sequence[str] | None = None,
    prompt: PromptHandler | None = None,
    **options: Any,
) -> Transport:
    """The process-wide transport for a host: local for ``None``/``"local"``, else SSH.

    ``host`` may be an alias from the SSH config. The registry key is the *resolved*
    (HostName, Port, User), so an alias and its plain address share one connection. The first
    caller's identity/known_hosts settings win for that key.
    """
    if not host or host == "local":
        return local_transport()
    transport = SSHTransport(
        host,
        user=user,
        port=port,
        identity=identity,
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        prompt=prompt,
        **options,
    )
    existing = _REGISTRY.get(transport.key)
    if existing is not None:
        if prompt is not None:
            existing.prompt = prompt
        return existing
    _REGISTRY[transport.key] = transport
    return transport


async def close_all() -> None:
    """Close every registered SSH connection (they reopen lazily if used again)."""
    for transport in list(_REGISTRY.values()):
        await transport.close()
