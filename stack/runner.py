"""Starts the whole system as separate processes, the way ``make up`` runs it."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stack.backing import EmbeddedPostgres, EmbeddedRedis, TritonServer
from stack.settings import StackSettings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO_ROOT / "deploy" / "triton" / "model_repository"


def served_version(model: str) -> Path:
    """The version directory Triton serves for ``model``: the highest number, as every
    model's ``version_policy: { latest: { num_versions: 1 } }`` says."""
    versions = [p for p in (MODEL_REPOSITORY / model).iterdir() if p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name))


class StackError(RuntimeError):
    """A part of the stack did not start."""


def _wait_grpc_serving(address: str, deadline: float, process: subprocess.Popen[bytes], log_file: Path) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"process exited with {process.returncode}; log tail:\n{_tail(log_file)}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise StackError(f"{address} not serving in time; log tail:\n{_tail(log_file)}")


def _wait_http_ok(url: str, deadline: float, process: subprocess.Popen[bytes], log_file: Path) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"process exited with {process.returncode}; log tail:\n{_tail(log_file)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                if reply.status == 200:
                    return
        time.sleep(0.2)
    raise StackError(f"{url} not ready in time; log tail:\n{_tail(log_file)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """PostgreSQL, Redis and Triton (embedded unless URLs are given), then scorer, orchestrator, gateway.

    Args:
        settings: Where things run; see :class:`StackSettings`.
    """

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self._backing: list[EmbeddedPostgres | EmbeddedRedis | TritonServer] = []
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.database_url = settings.database_url or ""
        self.redis_url = settings.redis_url or ""
        self.triton_url = settings.triton_url or ""

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.gateway_port}"

    @property
    def scorer_address(self) -> str:
        return f"{self.settings.host}:{self.settings.scorer_port}"

    @property
    def orchestrator_address(self) -> str:
        return f"{self.settings.host}:{self.settings.orchestrator_port}"

    def start(self) -> None:
        """Starts everything and returns once the gateway answers ``/readyz``.

        Raises:
            StackError: Something did not come up; the message holds its log tail.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_backing()
            deadline = time.monotonic() + self.settings.ready_timeout_s
            scorer = self._spawn(
                "scorer",
                {"XLI_SCORER_ADDRESS": self.scorer_address, "TRITON_URL": self.triton_url, "REDIS_URL": self.redis_url},
            )
            orchestrator = self._spawn(
                "orchestrator",
                {
                    "XLI_ORCHESTRATOR_ADDRESS": self.orchestrator_address,
                    "XLI_SCORER_ADDRESS": self.scorer_address,
                    "DATABASE_URL": self.database_url,
                    "REDIS_URL": self.redis_url,
                },
            )
            gateway = self._spawn(
                "gateway",
                {
                    "XLI_ORCHESTRATOR_ADDRESS": self.orchestrator_address,
                    "XLI_GATEWAY_HOST": self.settings.host,
                    "XLI_GATEWAY_PORT": str(self.settings.gateway_port),
                    # Rate limits live in the same Redis as the session state.
                    "REDIS_URL": self.redis_url,
                },
            )
            _wait_grpc_serving(self.scorer_address, deadline, scorer, self.log_dir / "scorer.log")
            _wait_grpc_serving(self.orchestrator_address, deadline, orchestrator, self.log_dir / "orchestrator.log")
            _wait_http_ok(f"{self.gateway_url}/readyz", deadline, gateway, self.log_dir / "gateway.log")
        except BaseException:
            self.stop()
            raise

    def _start_backing(self) -> None:
        if not self.database_url:
            postgres = EmbeddedPostgres(self.data_dir / "postgres")
            self._backing.append(postgres)
            postgres.start()
            self.database_url = postgres.url
        if not self.redis_url:
            redis = EmbeddedRedis(self.data_dir / "redis")
            self._backing.append(redis)
            redis.start()
            self.redis_url = redis.url
        if not self.triton_url:
            triton = TritonServer(MODEL_REPOSITORY, self.data_dir / "triton")
            self._backing.append(triton)
            triton.start()
            self.triton_url = triton.url

    def _spawn(self, name: str, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, **extra_env, "XLI_DATA_DIR": str(self.data_dir)}
        log_file = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", name],
            env=env,
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        self._processes.append((name, process))
        return process

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The running process of a service (``scorer``, ``orchestrator`` or ``gateway``)."""
        return next(p for n, p in self._processes if n == name)

    def check_alive(self) -> list[str]:
        """Names of service processes that have exited."""
        return [name for name, process in self._processes if process.poll() is not None]

    def stop(self) -> None:
        """Stops the services (gateway first), then the embedded backing services."""
        for _, process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self._processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        for backing in reversed(self._backing):
            with contextlib.suppress(Exception):
                backing.stop()
        self._backing.clear()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
