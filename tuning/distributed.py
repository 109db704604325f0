"""Distributed tuning: one chief process serves the oracle over gRPC, workers run the trials.

keras-tuner picks the role from three environment variables: `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT` (where the chief listens) and `KERASTUNER_TUNER_ID` (`chief`, or a
worker's name such as `tuner0`). `configure` sets them from the plainer flags
`--chief HOST:PORT [--worker-id NAME]`; variables already set keep working without the flags.

Dead workers: keras-tuner's chief would wait forever for a trial whose worker died. Here a worker
sends a heartbeat every `HEARTBEAT_SECONDS` while it runs a trial (`Heartbeat`, a cheap
`get_trial` call); the chief's serving loop (`serve`) reaps workers silent for `worker_timeout`
seconds (`SupervisedOracle.reap`: the trial goes back for a retry or fails), and stops once the
search is over or every worker it has seen is gone. Until its first worker calls, the chief
waits as long as it takes (workers may be started later, on other machines).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from concurrent import futures

from keras_tuner.src.engine import conditions

IP, PORT, TUNER_ID = "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"
HEARTBEAT_SECONDS = 3.0
DEFAULT_WORKER_TIMEOUT = 300.0
MIN_WORKER_TIMEOUT = 3 * HEARTBEAT_SECONDS


def configure(chief: str | None = None, worker_id: str | None = None) -> str:
    """Set keras-tuner's environment variables from `--chief`/`--worker-id`; return the role.

    `--chief HOST:PORT` alone (or with `--worker-id chief`) makes this process the chief,
    listening there; with `--worker-id NAME` it is a worker of that chief. Without flags the
    variables decide, and without variables the search runs in this process alone ("local").
    """
    if worker_id is not None and "chief" in worker_id and worker_id != "chief":
        raise ValueError(f"--worker-id must not contain 'chief'. Received: {worker_id!r}")
    if chief is not None:
        host, sep, port = chief.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--chief must be HOST:PORT. Received: {chief!r}")
        os.environ[IP], os.environ[PORT] = host, port
        os.environ[TUNER_ID] = worker_id or "chief"
    elif worker_id is not None:
        if IP not in os.environ or PORT not in os.environ:
            raise ValueError(f"--worker-id needs --chief HOST:PORT (or {IP} and {PORT})")
        os.environ[TUNER_ID] = worker_id
    if IP in os.environ and (PORT not in os.environ or TUNER_ID not in os.environ):
        raise ValueError(f"{IP} is set: {PORT} and {TUNER_ID} are needed too")
    return role()


def role() -> str:
    """ "local", "chief" or "worker", as keras-tuner reads the environment."""
    if IP not in os.environ:
        return "local"
    return "chief" if "chief" in os.environ.get(TUNER_ID, "") else "worker"


def address() -> str:
    return f"{os.environ[IP]}:{os.environ[PORT]}"


def serve(oracle, worker_timeout: float = DEFAULT_WORKER_TIMEOUT) -> None:
    """Serve `oracle` (a `SupervisedOracle`) to the workers until the search is over.

    Replaces keras-tuner's `oracle_chief.start_server`, which waits forever for dead workers and
    cannot stop when every worker has gone. Sets `oracle.stop_reason` when it stops early.
    """
    # lazy: gRPC and the tuner's protocol load only in a distributed search
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    handlers = futures.ThreadPoolExecutor(max_workers=1)
    server = grpc.server(handlers)
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address())
    except RuntimeError:
        bound = 0
    if not bound:
        raise OSError(f"the chief cannot listen on {address()}: is the port in use?")
    server.start()
    print(f"Chief oracle listening on {address()}; waiting for workers", flush=True)
    try:
        while True:
            time.sleep(1)
            oracle.reap(worker_timeout)
            if servicer.stop_triggered and oracle_chief.exit_chief(oracle):
                return
            if oracle.workers_gone():
                oracle.stop_reason = oracle.stop_reason or (
                    f"every worker stopped reporting (none for {worker_timeout:g} s); "
                    "start workers and run the chief again to continue"
                )
                return
    finally:
        # wait for a call in progress to end: returning at once let the process exit while a
        # handler wrote oracle.json, leaving a temporary file (found by crash_fuzz.py distributed)
        server.stop(grace=2).wait()
        handlers.shutdown(wait=True)


def survive_chief_restarts(client) -> None:
    """Make a worker's oracle client (keras-tuner's `OracleClient`) call the chief again when a
    call was cut off because the chief died mid-call (gRPC UNAVAILABLE). keras-tuner's calls
    wait for a chief that is not there yet (`wait_for_ready`), but one cut off mid-call raised,
    and the worker died with a traceback when its chief was killed and started again. Calling
    again is safe: a chief started again has sent every running trial back for a retry, so a
    repeated report about one is ignored ("late worker") and the worker is handed a trial."""
    # lazy: gRPC and the tuner's protocol load only in a distributed search
    import grpc

    stub = client.stub
    for name in ("GetSpace", "UpdateSpace", "CreateTrial", "UpdateTrial", "EndTrial",
                 "GetTrial", "GetBestTrials"):  # fmt: skip
        method = getattr(stub, name, None)
        if method is None:
            continue

        def call(request, *args, _method=method, **kwargs):
            while True:
                try:
                    return _method(request, *args, **kwargs)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    print(f"the chief went away mid-call ({err.details()}): calling again",
                          flush=True)  # fmt: skip
                    time.sleep(1)

        setattr(stub, name, call)


class Heartbeat:
    """A worker's background thread telling the chief its trial is still running.

    While `trial_id` is set, it calls `oracle.get_trial(trial_id)` every `every` seconds; the
    chief's `SupervisedOracle` counts any call about a running trial as a sign of life.
    """

    def __init__(self, oracle, every: float = HEARTBEAT_SECONDS):
        self.oracle, self.every = oracle, every
        self.trial_id: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.every):
            trial_id = self.trial_id
            if trial_id is None:
                continue
            try:
                self.oracle.get_trial(trial_id)
            except Exception as err:  # the chief may be gone or busy; the trial goes on
                print(f"heartbeat for trial {trial_id} failed: {err}", flush=True)


def _hold_back_condition_prints() -> None:
    """keras-tuner 1.4.8 prints a bare hyperparameter value (`print(self.values[0])` in
    `conditions.Parent.to_proto`) each time a conditional scope is sent between chief and
    workers: lines like `gru` that read as ours. Its output is held back."""
    to_proto = conditions.Parent.to_proto
    if getattr(to_proto, "quiet", False):
        return

    def quiet_to_proto(self):
        with contextlib.redirect_stdout(io.StringIO()):
            return to_proto(self)

    quiet_to_proto.quiet = True
    conditions.Parent.to_proto = quiet_to_proto


_hold_back_condition_prints()
