"""The benchmark on a Dask cluster: units go to the workers with their settings, records come back to the client.

Flow::

    client: plan → pending units ──submit(remote_unit, settings, case, method, fold)──► scheduler ──► workers
    worker: compute_unit (reads the case and model from the shared file system; writes nothing)
            ──► {record (with its worker label), the heat map encoded as the store keeps it (float16 .npz bytes),
                 new random-order control}
    client: as each future finishes → commit_unit (control, map, record: one atomic file each) → progress

The store stays the one truth: a killed client is restarted with the same command and runs only what has no record.
A worker killed mid-unit loses only that unit: the scheduler sees the closed connection and runs the unit again on
another worker, and the client commits whichever result its future returns, once. A user error inside a unit (a bad
case file) is a record with ``status = "error"``, not an exception, so Dask never retries it; a unit that kills
every worker it touches ends as ``KilledWorker`` after ``distributed.scheduler.allowed-failures`` (default 3) tries
and is recorded as failed; the run goes on either way.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from ..errors import InputError
from ..progress import ProgressCallback
from .store import UnitStore, unit_key
from .units import commit_unit, compute_unit


def remote_unit(settings: dict[str, Any], case_id: str, method: str, fold: int) -> dict[str, Any]:
    """Run on a Dask worker: one unit computed (one at a time per process), nothing written.

    Returns ``{"record": dict, "map_npz": the map as the store keeps it (bytes) or None, "control": dict or None}``:
    the worker encodes the map, so the client only writes bytes (encoding is the costly part of a commit).
    """
    from ..cluster import UNIT_LOCK, set_torch_threads

    with UNIT_LOCK:
        set_torch_threads(int(settings.get("threads", 1)))
        record, heat, control = compute_unit(settings, case_id, method, fold)
    map_npz = UnitStore.encode_map(heat) if heat is not None else None
    return {"record": record, "map_npz": map_npz, "control": control}


def run_on_cluster(
    settings: dict[str, Any],
    pending: list[tuple[str, str, int]],
    address: str,
    finished: Callable[[dict[str, Any]], None],
    progress: ProgressCallback,
    client: Any = None,
) -> None:
    """Submit ``pending`` (case, method, fold) units to the cluster at ``address``; commit each result as it returns.

    ``finished(record)`` is called once per unit, in completion order (progress counts units across the cluster).
    ``client``: a Dask client already connected to ``address`` (the runner connects before it writes anything);
    without one, this connects and disconnects.

    Raises:
        InputError: no cluster at ``address``, no worker able to run the units, or a scheduler / workers that
            cannot load MedXAI's code (install it there, the same version as here).
    """
    from distributed import as_completed

    from ..cluster import connect, describe_failure, environment_error, n_workers, unit_resources

    if client is None:
        with connect(address, device=str(settings.get("device", "cpu")),
                     worker_threads=int(settings.get("threads", 1))) as connected:
            return run_on_cluster(settings, pending, address, finished, progress, client=connected)
    store = UnitStore(settings["output"])
    resources = unit_resources(str(settings.get("device", "cpu")))
    run_id = uuid.uuid4().hex[:8]
    progress(0.0, f"{len(pending)} units to {n_workers(client)} Dask workers at {address}")
    futures = {}
    for case_id, method, fold in pending:
        fut = client.submit(remote_unit, settings, case_id, method, fold, pure=False, retries=0,
                            key=f"medxai-unit-{unit_key(case_id, method)}-{run_id}", resources=resources)
        futures[fut] = (case_id, method, fold)
    try:
        for fut in as_completed(list(futures)):
            case_id, method, fold = futures.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - the future's failure, recorded as this unit's
                fix = environment_error(exc)
                if fix:
                    raise InputError(fix) from None
                result = {"record": {"case_id": case_id, "method": method, "fold": int(fold), "status": "error",
                                     "error": describe_failure(exc), "worker": ""},
                          "map_npz": None, "control": None}
            finally:
                fut.release()
            record = result["record"]
            commit_unit(store, record, None, result["control"], map_npz=result["map_npz"])
            finished(record)
    finally:
        if futures:
            client.cancel(list(futures))


__all__ = ["remote_unit", "run_on_cluster"]
