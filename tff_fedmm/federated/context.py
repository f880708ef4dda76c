"""The one place where tff_fedmm chooses and installs TFF's execution context.

TFF 0.87 installs a C++ context on import whose `worker_binary` inherits the parent's stdout/stderr
and is only stopped by a `__del__` that does not run at interpreter exit: the worker outlives Python
and keeps shell pipes open (`fedmm run | cat` hangs). We start the worker ourselves instead, with its
output sent to /dev/null, with a parent-death signal so even SIGKILL of Python takes it down, and
with an atexit hook that terminates it; then connect TFF's remote executor to it.

Remote workers (`--workers host:port,...`, each started with `fedmm worker --port PORT`) use the same
executor stack over gRPC. With two or more, TFF's mergeable-computation context runs every call in
subrounds: each client (market) in turn goes to a free worker, which runs it up to the (single)
aggregation stage; the driver merges the partial aggregates in client order and the workers run the
rest. Our variant of that context (`federated.mergeable`) returns CLIENTS-placed results in
argument order — TFF's own returns them in the order the workers finish — and sums exactly as one
worker does, so a run on workers reproduces the single-process numbers.

A worker that cannot be reached within `worker_timeout()` seconds (env `FEDMM_WORKER_TIMEOUT`,
default 20) fails with `WorkerUnavailableError` naming its address — at start, and also mid-run,
where TFF itself would retry an UNAVAILABLE worker forever.

Nothing at module level imports TensorFlow (worker processes and addresses: `federated.workers`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from tff_fedmm.errors import UsageError
from tff_fedmm.federated.workers import (
    WORKER_TIMEOUT_ENV, Worker, WorkerUnavailableError, parse_workers, start_worker, worker_timeout,
)

_GRPC_OPTIONS = [
    ("grpc.max_message_length", 1_000_000_000),
    ("grpc.max_receive_message_length", 1_000_000_000),
    ("grpc.max_send_message_length", 1_000_000_000),
]
LOCAL_READY_TIMEOUT_S = 60.0  # our own freshly started worker on a busy machine


def _wait_ready(channels: dict[str, object], timeout_s: float, local: Worker | None = None) -> None:
    """Waits (all workers in parallel) until every gRPC channel connects; names the ones that do not."""
    import grpc

    futures = {address: grpc.channel_ready_future(channel) for address, channel in channels.items()}
    deadline = time.monotonic() + timeout_s
    missing = []
    for address, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except grpc.FutureTimeoutError:
            future.cancel()
            missing.append(address)
    if not missing:
        return
    if local is not None:
        status = local.process.poll()
        raise RuntimeError(f"the local TFF worker_binary (port {local.port}) "
                           + (f"exited with status {status}" if status is not None
                              else f"did not accept connections within {timeout_s:.0f}s"))
    raise WorkerUnavailableError(
        f"--workers: cannot reach TFF worker{'s' if len(missing) > 1 else ''} {', '.join(missing)} within "
        f"{timeout_s:g}s; start one on each machine with `fedmm worker --port PORT` and check host, port and "
        f"firewall ({WORKER_TIMEOUT_ENV}=SECONDS waits longer)")


def _bounded_stub(channel, address: str, timeout_s: float, remote: bool):
    """TFF's gRPC stub, except that a worker unreachable for `timeout_s` raises WorkerUnavailableError.

    TFF marks UNAVAILABLE / FAILED_PRECONDITION as retryable and `AsyncExecutionContext.invoke` retries
    them without limit (backing off to 30 s): a stopped worker would hang the run forever. Retries within
    the window still happen (a restarted worker is picked up again).
    """
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.impl.executors import executors_errors

    base = tff.framework.RemoteExecutorGrpcStub

    class BoundedStub(base):
        def __init__(self):
            super().__init__(channel)
            self._failing_since: float | None = None
            self._lock = threading.Lock()

        def _call(self, method, request):
            try:
                response = getattr(base, method)(self, request)
            except executors_errors.RetryableGRPCError as err:
                now = time.monotonic()
                with self._lock:
                    self._failing_since = self._failing_since or now
                    failing_for = now - self._failing_since
                if failing_for > timeout_s:
                    where = f"TFF worker {address}" if remote else "the local TFF worker_binary"
                    raise WorkerUnavailableError(
                        f"lost {where}: unreachable for {failing_for:.0f}s ({_grpc_code(err)}); "
                        f"is it still running? ({WORKER_TIMEOUT_ENV}=SECONDS waits longer)") from None
                raise
            with self._lock:
                self._failing_since = None
            return response

    for method in ("get_executor", "create_value", "create_struct", "create_call", "create_selection",
                   "compute", "dispose", "dispose_executor"):
        setattr(BoundedStub, method, lambda self, request, _m=method: self._call(_m, request))
    return BoundedStub()


def _grpc_code(err: Exception) -> str:
    cause = err.args[0] if err.args else None
    code = getattr(cause, "code", None)
    try:
        return str(code().name) if callable(code) else type(err).__name__
    except Exception:  # noqa: BLE001  (a description only)
        return type(err).__name__


def _executor_factories(addresses: Sequence[str], timeout_s: float, local: Worker | None = None,
                        default_num_clients: int = 0):
    """One executor factory per gRPC worker; CLIENTS cardinality defaults to 0 as TFF's own does.

    The workers are reached first (gRPC only): an unreachable one fails before the seconds it takes to
    import TensorFlow Federated.
    """
    import grpc

    channels = {a: grpc.insecure_channel(a, _GRPC_OPTIONS) for a in addresses}
    try:
        _wait_ready(channels, LOCAL_READY_TIMEOUT_S if local else timeout_s, local)
    except BaseException:
        for channel in channels.values():
            channel.close()
        raise
    import tensorflow_federated as tff

    stubs = [_bounded_stub(channel, a, timeout_s, remote=local is None) for a, channel in channels.items()]

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


def _compile(comp):
    """TFF's native compilation, after replacing secure-sum intrinsics by their plain bodies.

    `--secure-agg` builds computations with `federated_secure_sum_bitwidth`, which no local runtime
    implements; TFF's own test contexts compile them this way (`tff.backends.test`): the clipping,
    quantization and types of the secure aggregation stay, only the cryptographic protocol is simulated.
    A computation without secure intrinsics is unchanged.
    """
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.backends.native import compiler

    return compiler.desugar_and_transform_to_native(tff.backends.test.replace_secure_intrinsics_with_bodies(comp))


def connect(addresses: Sequence[str], timeout_s: float | None = None, local: Worker | None = None,
            per_client: bool = True):
    """A TFF execution context over running workers, not installed: a synchronous context for one
    worker, the order-preserving mergeable-computation context for several (`per_client`: see
    `federated.mergeable`).

    `local`: the owned worker behind the single address (readiness then waits for the process).
    Raises `WorkerUnavailableError` when a worker is not reachable within `timeout_s`.
    """
    timeout_s = worker_timeout() if timeout_s is None else float(timeout_s)
    factories = _executor_factories(list(addresses), timeout_s, local)
    import tensorflow_federated as tff

    def async_context(factory):
        return tff.framework.AsyncExecutionContext(
            executor_fn=factory, compiler_fn=_compile,
            transform_args=tff.tensorflow.transform_args, transform_result=tff.tensorflow.transform_result)

    if len(factories) == 1:
        return tff.framework.SyncExecutionContext(
            executor_fn=factories[0], compiler_fn=_compile,
            transform_args=tff.tensorflow.transform_args, transform_result=tff.tensorflow.transform_result)
    from tff_fedmm.federated.mergeable import ordered_mergeable_context

    return ordered_mergeable_context([async_context(f) for f in factories], per_client)


_state: dict[str, object] = {}


def install_execution_context(workers: str | Sequence[str] | None = None, *,
                              timeout_s: float | None = None) -> None:
    """Installs the default TFF context once per process: an owned local worker, or remote workers.

    `workers`: None for a local worker of our own, else `host:port` addresses of `fedmm worker`s
    (a comma-separated string or a list). With several, TFF's mergeable-computation context splits the
    clients across them. `timeout_s` (default `worker_timeout()`) bounds how long a remote worker may be
    unreachable. Calling again with the same workers is a no-op, so every entry point can call it.
    Raises `UsageError` for a malformed address, `WorkerUnavailableError` for an unreachable worker.
    """
    try:
        key = tuple(parse_workers(workers)) if workers else ()
    except ValueError as err:
        raise UsageError(f"--workers: {err}") from None
    if _state.get("key") == key:
        return
    timeout_s = worker_timeout() if timeout_s is None else float(timeout_s)
    previous = _state.get("worker")
    local = None
    if not key:
        local = start_worker()
        addresses = [local.address]
    else:
        addresses = list(key)
    try:
        context = connect(addresses, timeout_s, local)
    except BaseException:
        if local is not None:
            local.stop()
        raise
    import tensorflow_federated as tff

    tff.framework.set_default_context(context)
    _state.pop("worker", None)
    if local is not None:
        _state["worker"] = local
    if isinstance(previous, Worker):  # switching away from our own worker: it has nothing left to serve
        previous.stop()
    _state["key"] = key
