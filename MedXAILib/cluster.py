"""Running independent pieces of work on a Dask cluster: a local one (``local:N``) or an existing scheduler.

The benchmark's (case, method) units and ``train``'s folds are pure functions of a JSON-ready settings dict, so they
travel to a Dask worker unchanged. This module holds what both need:

- :func:`parse_address` — ``local:N`` (a :class:`distributed.LocalCluster` of N worker processes on this machine,
  bound to 127.0.0.1) or ``tcp://host:port`` / ``tls://…`` (an existing scheduler, e.g. one started by hand with
  ``dask scheduler`` or by ``dask-jobqueue`` on SLURM);
- :func:`connect` — a context manager that yields a connected :class:`distributed.Client` and closes everything it
  started (the local cluster's worker processes included) on the way out, also on error or Ctrl-C;
- :func:`unit_resources` — ``{"GPU": 1}`` when the work runs on CUDA, so a mixed cluster sends it only to workers
  started with ``--resources GPU=1``;
- :func:`worker_label` — which host/worker computed a result (the benchmark's ``worker`` column);
- :func:`describe_failure` — a future's exception as one line for a failed-unit record (a unit that kept killing
  its workers ends as :class:`distributed.KilledWorker` after ``distributed.scheduler.allowed-failures`` tries).

Workers read cases and models from paths they can see (a shared file system); results go back to the client, which
writes them, so workers need no write access to the output. Dask is imported lazily: nothing here costs anything
when ``--cluster`` is not used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import warnings
from typing import Any, Iterator

from .errors import InputError

#: How long to wait for the scheduler to answer and for the first worker to join (seconds).
CONNECT_TIMEOUT_S = 30.0
WORKER_WAIT_S = 120.0
_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$")
#: One unit at a time per worker process: explainers hook into the shared, cached model, so two threads of one
#: process must not run units at once (start workers with ``--nthreads 1``; this lock makes more threads harmless).
UNIT_LOCK = threading.Lock()


def max_local_workers() -> int:
    """The most ``local:N`` worker processes: four per core (at least 8); each is a full Python with torch."""
    return max(8, 4 * (os.cpu_count() or 1))


def parse_address(address: str) -> tuple[str, Any]:
    """``("local", N)`` for ``local:N`` (N ≥ 1), ``("remote", address)`` for a scheduler address.

    Raises:
        InputError: anything else, with the two accepted forms.
    """
    text = str(address).strip()
    if text.startswith("local:") or text == "local":
        n_text = text.partition(":")[2].strip()
        n = (int(n_text) if len(n_text) <= 9 else 10**9) if n_text.isascii() and n_text.isdigit() else 0
        if n < 1:
            raise InputError(f"--cluster {address!r}: local:N needs a positive number of worker processes, "
                             "e.g. local:2")
        most = max_local_workers()
        if n > most:
            raise InputError(f"--cluster {address!r}: at most {most} local worker processes on this machine's "
                             f"{os.cpu_count() or 1} cores; for more, start workers on other machines "
                             "(docs/cluster.md)")
        return "local", n
    if _ADDRESS.match(text):
        return "remote", text
    raise InputError(
        f"--cluster {address!r}: give a Dask scheduler address such as tcp://10.0.0.5:8786 (start one with "
        "`dask scheduler`), or local:N for N worker processes on this machine"
    )


def unit_resources(device: str) -> dict[str, float] | None:
    """The Dask resources a unit asks for: one GPU on ``cuda`` devices, nothing on ``cpu`` / ``auto``."""
    return {"GPU": 1} if str(device).startswith("cuda") else None


def worker_label() -> str:
    """``host/name`` of the Dask worker running this call (``host/pid<PID>`` outside a Dask worker)."""
    host = socket.gethostname()
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return f"{host}/pid{os.getpid()}"
    name = str(worker.name)
    if name == str(worker.address):  # `dask worker` without --name: the name is the address
        return name.split("://", 1)[-1]
    return f"{host}/{name}"


def set_torch_threads(threads: int) -> None:
    """Torch intra-op threads of this process (``--worker-threads``)."""
    import torch

    n = max(1, int(threads))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def describe_failure(exc: BaseException) -> str:
    """One line for a unit whose Dask future failed (not a user error inside the unit: those are records)."""
    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - dask is a core dependency
        KilledWorker = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, KilledWorker):
        return ("the unit's worker died every time it ran this unit (Dask gave up after "
                "distributed.scheduler.allowed-failures tries); out of memory or a crash in native code?")
    return f"{type(exc).__name__}: {exc}"


def environment_error(exc: BaseException) -> str | None:
    """The fix, when a future failed because the scheduler or a worker cannot load MedXAI's code, else None.

    Recent ``distributed`` versions deserialize the task on the scheduler too, so both need MedXAI installed.
    """
    text = f"{type(exc).__name__}: {exc}"
    missing = isinstance(exc, ModuleNotFoundError) and str(getattr(exc, "name", "") or "").startswith("MedXAILib")
    if missing or "deserializ" in text.lower():
        first = text.splitlines()[0].split(". ")[0].rstrip(".")
        return (f"the Dask scheduler or a worker cannot load MedXAI's tasks ({first}); install MedXAI (the same "
                "version as here: `pip install medxai-*.whl`, or `pip install -e /shared/medxai`) in the environment "
                "of the scheduler and of every worker (docs/cluster.md)")
    return None


def _workers(client: Any) -> dict[str, Any]:
    """The scheduler's worker table (all of them: older ``distributed`` lists every worker without ``n_workers``)."""
    import inspect

    try:
        every = "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        every = False
    info = client.scheduler_info(n_workers=-1) if every else client.scheduler_info()
    return dict(info.get("workers", {}))


def _check_workers(client: Any, address: str, resources: dict[str, float] | None) -> None:
    workers = _workers(client)
    if resources:
        able = [w for w in workers.values() if all(w.get("resources", {}).get(k, 0) >= v
                                                    for k, v in resources.items())]
        if not able:
            need = ",".join(f"{k}={v:g}" for k, v in resources.items())
            raise InputError(
                f"no worker of the Dask cluster at {address} offers the resource {need} that --device cuda needs; "
                f"start GPU workers with `dask worker {address} --nthreads 1 --resources {need}`, or use --device cpu"
            )


def _check_tasks_load(client: Any, address: str) -> None:
    """Run one small MedXAI function on a worker: a scheduler or worker that cannot import MedXAI is refused now,
    before the command writes anything, with the fix (install it there)."""
    try:
        client.submit(worker_label, pure=False).result(timeout=WORKER_WAIT_S)
    except Exception as exc:  # noqa: BLE001 - whatever Dask raises for a task that cannot be loaded or run
        fix = environment_error(exc)
        if fix:
            raise InputError(fix) from None
        raise InputError(f"--cluster {address}: a test task failed on the cluster ({describe_failure(exc)}); check "
                         "that the workers run the same MedXAI, torch and dask as here") from None


@contextlib.contextmanager
def session(address: str | None, device: str = "cpu", worker_threads: int = 1) -> Iterator[Any]:
    """:func:`connect` to ``address``, or yield None when there is none (work runs in this process)."""
    if address is None:
        yield None
        return
    with connect(address, device=device, worker_threads=worker_threads) as client:
        yield client


@contextlib.contextmanager
def connect(address: str, device: str = "cpu", worker_threads: int = 1) -> Iterator[Any]:
    """A :class:`distributed.Client` on ``address`` (see :func:`parse_address`); everything started is closed after.

    ``local:N`` starts N worker processes with one Dask thread each, bound to 127.0.0.1 (nothing is reachable from
    another machine), no dashboard, each advertising ``GPU=1`` when ``device`` is CUDA. A remote address must
    have at least one worker within :data:`WORKER_WAIT_S` seconds.

    Raises:
        InputError: bad address, unreachable scheduler, no worker, no worker with the resources ``device`` needs,
            or workers that cannot load MedXAI's tasks.
    """
    kind, value = parse_address(address)
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask[distributed] is in requirements.txt
        raise InputError(f"--cluster needs dask[distributed] (pip install 'dask[distributed]'): {exc}") from None
    resources = unit_resources(device)
    cluster = None
    client = None
    threads = str(max(1, int(worker_threads)))
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}),
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), warnings.catch_warnings():
            # the scheduler's internal HTTP server (health checks; bound to 127.0.0.1) moves off a busy 8787 quietly
            warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
            if kind == "local":
                cluster = LocalCluster(
                    n_workers=int(value), threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, resources=resources, silence_logs=logging.ERROR,
                )
                client = Client(cluster)
            else:
                try:
                    client = Client(value, timeout=f"{CONNECT_TIMEOUT_S:g}s")
                except (OSError, TimeoutError) as exc:
                    raise InputError(
                        f"--cluster {value}: no Dask scheduler answered ({exc}); start one with `dask scheduler` "
                        "and workers with `dask worker ADDRESS --nthreads 1`, or use local:N"
                    ) from None
                try:
                    client.wait_for_workers(1, timeout=WORKER_WAIT_S)
                except (TimeoutError, OSError):
                    raise InputError(
                        f"--cluster {value}: the scheduler has no worker after {WORKER_WAIT_S:g} s; start some with "
                        f"`dask worker {value} --nthreads 1`"
                    ) from None
        _check_workers(client, str(value), resources)
        _check_tasks_load(client, str(value))
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def n_workers(client: Any) -> int:
    """Workers currently connected to the client's scheduler."""
    try:
        return len(_workers(client))
    except Exception:  # noqa: BLE001 - informational only
        return 0


__all__ = ["UNIT_LOCK", "connect", "describe_failure", "environment_error", "n_workers", "parse_address", "session",
           "set_torch_threads", "unit_resources", "worker_label"]
