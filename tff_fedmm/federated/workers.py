"""TFF worker processes: starting one we own, finding the binary, and naming remote ones.

`worker_binary` (shipped in the tensorflow_federated wheel) serves TFF computations over gRPC. The local
one is started by `start_worker` so that it cannot outlive us (stdio detached, parent-death signal,
atexit stop); remote ones are `fedmm worker --port PORT` processes named by `--workers host:port,...`.
Nothing here imports TensorFlow: `--help` and the address checks stay fast.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from tff_fedmm.errors import UsageError

_PR_SET_PDEATHSIG = 1
DEFAULT_WORKER_TIMEOUT_S = 20.0
WORKER_TIMEOUT_ENV = "FEDMM_WORKER_TIMEOUT"


class WorkerUnavailableError(UsageError):
    """A TFF worker could not be reached (not started, wrong address, firewall) or was lost mid-run.

    A `UsageError` so that the CLI prints it as one line and exits non-zero."""


def worker_timeout() -> float:
    """Seconds a remote worker may stay unreachable: env FEDMM_WORKER_TIMEOUT, default 20."""
    text = os.environ.get(WORKER_TIMEOUT_ENV)
    if text is None or not text.strip():
        return DEFAULT_WORKER_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{WORKER_TIMEOUT_ENV}: expected a positive number of seconds, got {text!r}")
    return value


def parse_workers(value: str | Sequence[str]) -> list[str]:
    """`host:port,host:port` (or a list of such strings) -> the addresses; ValueError says what is wrong.

    Hosts are names or IPv4 addresses, or IPv6 in brackets (`[::1]:8000`); ports are 1-65535; an
    address may appear once.
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    addresses = []
    for part in parts:
        if not isinstance(part, str):
            raise ValueError(f"expected host:port strings, got {part!r}")
        address = part.strip()
        if not address:
            if isinstance(value, str) and value.strip():
                continue  # a stray comma
            raise ValueError("expected a comma-separated list of host:port, got an empty value")
        host, sep, port_text = address.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{address!r} is not host:port (e.g. 10.0.0.5:10000)")
        if host.startswith("["):
            if not host.endswith("]") or len(host) == 2:
                raise ValueError(f"{address!r}: an IPv6 host goes in brackets, e.g. [::1]:10000")
        elif ":" in host or any(c.isspace() for c in host) or "/" in host:
            raise ValueError(f"{address!r} is not host:port (IPv6 hosts go in brackets, e.g. [::1]:10000)")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"{address!r}: port {port_text!r} is not an integer") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{address!r}: port {port} is outside 1-65535")
        address = f"{host}:{port}"
        if address in addresses:
            raise ValueError(f"{address} is listed twice")
        addresses.append(address)
    if not addresses:
        raise ValueError("expected a comma-separated list of host:port, got an empty value")
    return addresses


def worker_binary_path() -> str:
    """Path of the C++ worker shipped inside the tensorflow_federated wheel (found without importing it)."""
    spec = importlib.util.find_spec("tensorflow_federated")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, "data", "worker_binary")
        if os.path.isfile(path):
            return path
    raise RuntimeError(f"TFF worker binary not found under {locations or 'tensorflow_federated'}: "
                       "is tensorflow-federated installed?")


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Worker:
    """A `worker_binary` process owned by this Python process."""

    port: int
    process: subprocess.Popen = field(repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(port: int | None = None, log_path: str | None = None) -> Worker:
    """Starts a worker that dies with us: stdin/stdout/stderr detached, PDEATHSIG set."""
    port = port or free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [worker_binary_path(), f"--port={port}", "--max_concurrent_computation_calls=-1"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        preexec_fn=die_with_parent,
        close_fds=True,
        # glibc's default of 8 malloc arenas per core let the worker's RSS fill up to ~560 MB over 50
        # rounds before levelling off; with 2 it levels off at ~330 MB (`fedmm bench`, BUILD_NOTES).
        env={"MALLOC_ARENA_MAX": "2", **os.environ},
    )
    if log is not subprocess.DEVNULL:
        log.close()
    worker = Worker(port=port, process=process)
    atexit.register(worker.stop)
    return worker
