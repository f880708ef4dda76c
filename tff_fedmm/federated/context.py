"""The one place where tff_fedmm chooses and installs TFF's execution context.

TFF 0.87 installs a C++ context on import whose `worker_binary` inherits the parent's stdout/stderr
and is only stopped by a `__del__` that does not run at interpreter exit: the worker outlives Python
and keeps shell pipes open (`fedmm run | cat` hangs). We start the worker ourselves instead, with its
output sent to /dev/null, with a parent-death signal so even SIGKILL of Python takes it down, and
with an atexit hook that terminates it; then connect TFF's remote executor to it. Remote workers
(`--workers host:port,...`) use the same executor stack over gRPC.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1
_GRPC_OPTIONS = [
    ("grpc.max_message_length", 1_000_000_000),
    ("grpc.max_receive_message_length", 1_000_000_000),
    ("grpc.max_send_message_length", 1_000_000_000),
]
_READY_TIMEOUT_S = 60.0


def worker_binary_path() -> str:
    """Path of the C++ worker shipped inside the tensorflow_federated wheel."""
    import tensorflow_federated

    path = os.path.join(os.path.dirname(tensorflow_federated.__file__), "data", "worker_binary")
    if not os.path.isfile(path):
        raise RuntimeError(f"TFF worker binary not found at {path}: is tensorflow-federated installed?")
    return path


def _die_with_parent() -> None:
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
        preexec_fn=_die_with_parent,
        close_fds=True,
    )
    if log is not subprocess.DEVNULL:
        log.close()
    worker = Worker(port=port, process=process)
    atexit.register(worker.stop)
    return worker


def _executor_factory(addresses: Sequence[str], default_num_clients: int = 0):
    """An executor factory over gRPC workers; CLIENTS cardinality defaults to 0 as TFF's own does."""
    import grpc
    import tensorflow_federated as tff

    stubs = [
        tff.framework.RemoteExecutorGrpcStub(grpc.insecure_channel(a, _GRPC_OPTIONS)) for a in addresses
    ]
    deadline = time.monotonic() + _READY_TIMEOUT_S
    for address, stub in zip(addresses, stubs):
        while not stub.is_ready:
            if time.monotonic() > deadline:
                raise RuntimeError(f"TFF worker at {address} did not become ready within {_READY_TIMEOUT_S:.0f}s")
            time.sleep(0.05)

    def stack_fn(stub):
        def make(cardinalities):
            cardinalities.setdefault(tff.CLIENTS, default_num_clients)
            if cardinalities[tff.CLIENTS] is None:
                cardinalities[tff.CLIENTS] = default_num_clients
            executor = tff.framework.RemoteExecutor(stub)
            executor.set_cardinalities(cardinalities)
            return executor

        return make

    return [tff.framework.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn(s)) for s in stubs]


_state: dict[str, object] = {}


def install_execution_context(workers: Sequence[str] | None = None) -> None:
    """Installs the default TFF context once per process: an owned local worker, or remote workers.

    With several workers, TFF's mergeable-computation context splits the clients across them.
    Calling again with the same argument is a no-op, so every entry point can simply call it.
    """
    key = tuple(workers or ())
    if _state.get("key") == key:
        return
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.backends.native import compiler

    tf_comp = tff.tensorflow
    if not key:
        local = start_worker()
        _state["worker"] = local
        addresses = [local.address]
    else:
        addresses = list(key)
    factories = _executor_factory(addresses)
    if len(factories) == 1:
        context = tff.framework.SyncExecutionContext(
            executor_fn=factories[0],
            compiler_fn=compiler.desugar_and_transform_to_native,
            transform_args=tf_comp.transform_args,
            transform_result=tf_comp.transform_result,
        )
    else:
        async_contexts = [
            tff.framework.AsyncExecutionContext(
                executor_fn=f,
                compiler_fn=compiler.desugar_and_transform_to_native,
                transform_args=tf_comp.transform_args,
                transform_result=tf_comp.transform_result,
            )
            for f in factories
        ]
        context = tff.backends.native.create_mergeable_comp_execution_context(async_contexts)
    tff.framework.set_default_context(context)
    _state["key"] = key
