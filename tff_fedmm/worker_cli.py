"""`fedmm worker`: serve TFF computations on this machine for a driver's `--workers host:port,...`.

It runs TFF's C++ `worker_binary` (shipped in the tensorflow_federated wheel) in the foreground: one
line with the address once it accepts connections, its own log on stderr, Ctrl-C / SIGTERM forwarded,
and the worker's exit status as ours. The worker listens on every interface (`[::]:PORT`) over
*insecure* gRPC: anyone who reaches the port can run TensorFlow on the machine, so use it only on a
trusted network (or behind an SSH tunnel / firewall rule).

Nothing here imports TensorFlow or TensorFlow Federated: `fedmm worker --help` stays instant.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time

from tff_fedmm.federated.workers import die_with_parent

DEFAULT_PORT = 10000  # worker_binary's own default
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0  # after a stop request, SIGKILL if the worker is still running


def add_worker_command(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser(
        "worker", help="serve TFF computations on this machine for `run/compare --workers host:port,...`",
        description="Runs TFF's worker_binary in the foreground on every interface of this machine. The gRPC "
                    "connection is insecure: use it on a trusted network only. Stop it with Ctrl-C.")
    worker.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"TCP port to listen on, all interfaces (default {DEFAULT_PORT})")
    worker.add_argument("--max-message-mb", type=positive_int, default=None, metavar="N",
                        help="largest gRPC message in megabytes (default: worker_binary's, 10000)")
    worker.set_defaults(handler=run_worker)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {port}")
    return port


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _child_setup() -> None:
    """In the child before exec: die with us, and undo an ignored SIGINT inherited from a background job
    (a non-interactive shell starts `cmd &` with SIGINT ignored; the worker would then ignore Ctrl-C)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    die_with_parent()


def run_worker(args: argparse.Namespace) -> int:
    from tff_fedmm.errors import UsageError
    from tff_fedmm.federated.workers import worker_binary_path

    if _accepts_connections(args.port):
        raise UsageError(f"--port: port {args.port} is already in use on this machine; choose another")
    command = [worker_binary_path(), f"--port={args.port}"]
    if args.max_message_mb:
        command.append(f"--grpc_max_message_length_megabytes={args.max_message_mb}")
    # stdin detached; stdout/stderr are the worker's log, shown in this terminal.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)

    requested: list[tuple[int, float]] = []  # (signal, when) of each stop request

    def forward(signum, _frame):
        requested.append((signum, time.monotonic()))
        if process.poll() is None:  # a second request does not wait for a graceful stop
            process.send_signal(signum if len(requested) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while process.poll() is None and not requested and not _accepts_connections(args.port):
            if time.monotonic() > deadline:
                print(f"fedmm worker: worker_binary did not listen on port {args.port} within "
                      f"{READY_TIMEOUT_S:.0f}s; stopping it", file=sys.stderr)
                forward(signal.SIGTERM, None)
                break
            time.sleep(0.05)
        if process.poll() is None and not requested:
            print(f"fedmm worker: serving TFF on {socket.gethostname()}:{args.port} (all interfaces, insecure "
                  f"gRPC: trusted network only; pid {process.pid}); Ctrl-C stops it", flush=True)
        while True:
            try:
                status = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if requested and time.monotonic() - requested[0][1] > STOP_GRACE_S:
                    process.kill()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if requested:
        print(f"fedmm worker: stopped ({signal.Signals(requested[0][0]).name})", file=sys.stderr)
    return 128 - status if status < 0 else status  # killed by a signal: report it the way a shell would


def worker_list(text: str) -> list[str]:
    """argparse type of `--workers`: `host:port,host:port` -> the addresses."""
    from tff_fedmm.federated.workers import parse_workers

    try:
        return parse_workers(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
