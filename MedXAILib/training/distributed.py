"""``train --cluster``: the K folds trained in parallel on Dask, one fold per worker task.

Flow::

    client: plan, folds, fingerprints ──submit(remote_fold, config, k)──► scheduler ──► workers
    worker: the same plan from the same config (reads the cases from the shared file system), the same fold,
            fit_fold (seeded by fold_seed, config.threads torch threads) ──► {training block, description,
            CPU state_dict, fingerprint}; nothing is written on the worker
    client: checks the fingerprint (the worker saw the same cases and options), write_fold (atomic rename)

So a fold trained on a worker is the fold the serial run trains: same folds, same seeds, same thread count, same
weights; it loads back with ``--model DIR/fold{k}`` as today. A fold that fails with a user error fails the run with
that message (as the serial run does) after the other folds have been written, so a rerun resumes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from typing import Any, Callable

from ..errors import InputError, MedXAIError
from ..progress import ProgressCallback

_CACHES: dict[str, Any] = {}


def _cache_for(config: Any) -> Any:
    """One case cache per process and data/preprocessing options (prepared arrays are reused across folds)."""
    from .data import CaseCache

    key = json.dumps({k: v for k, v in asdict(config).items() if k in ("dataset", "task", "spacing", "input_size",
                                                                        "architecture", "patch")},
                     sort_keys=True, default=str)
    if key not in _CACHES:
        _CACHES.clear()
        _CACHES[key] = CaseCache()
    return _CACHES[key]


def remote_fold(config_dict: dict[str, Any], fold_index: int) -> dict[str, Any]:
    """Run on a Dask worker: plan and fit fold ``fold_index`` of ``config_dict`` (a :class:`TrainConfig` as a dict).

    Returns ``{"training", "description", "state", "fingerprint"}``; a user error comes back as
    ``{"error": message}`` so Dask does not retry it.
    """
    from ..cluster import UNIT_LOCK
    from ..splits import patient_kfold
    from .config import TrainConfig
    from .data import plan_training
    from .fold import fingerprint, fit_fold

    with UNIT_LOCK:
        try:
            config = TrainConfig(**config_dict)
            cache = _cache_for(config)
            plan = plan_training(config, cache)
            fold = patient_kfold(plan.dataset.cases, config.folds, config.seed)[fold_index]
            training, desc, state = fit_fold(config, plan, fold, cache)
        except MedXAIError as exc:
            return {"error": f"fold {fold_index}: {exc}"}
        return {"training": training, "description": desc, "state": state,
                "fingerprint": fingerprint(config, plan, fold.train, fold.test)}


def train_on_cluster(
    config: Any,
    pending: list[tuple[Any, str]],
    address: str,
    on_fold: Callable[[int, dict[str, Any]], None],
    progress: ProgressCallback,
    client: Any = None,
) -> None:
    """Train the ``pending`` (fold, fingerprint) pairs on the cluster at ``address``; write each fold as it returns.

    ``on_fold(k, training)`` is called once per written fold, in completion order. ``client``: a Dask client already
    connected to ``address`` (the caller connects before it writes anything); without one, this connects.

    Raises:
        InputError: no cluster / no suitable worker; a worker that saw different data (fingerprint mismatch); a
            fold that failed (after the others were written, so a rerun only redoes what is missing).
    """
    from pathlib import Path

    from distributed import as_completed

    from ..cluster import connect, describe_failure, environment_error, n_workers, unit_resources
    from .fold import write_fold

    if client is None:
        with connect(address, device=config.device, worker_threads=config.threads) as connected:
            return train_on_cluster(config, pending, address, on_fold, progress, client=connected)
    out = Path(config.output)
    run_id = uuid.uuid4().hex[:8]
    cfg = asdict(config)
    failures: list[str] = []
    progress(0.02, f"{len(pending)} fold(s) to {n_workers(client)} Dask workers at {address}")
    futures = {
        client.submit(remote_fold, cfg, fold.index, pure=False, retries=0, key=f"medxai-fold{fold.index}-{run_id}",
                      resources=unit_resources(config.device)): (fold, fp)
        for fold, fp in pending
    }
    done = 0
    try:
        for fut in as_completed(list(futures)):
            fold, fp = futures.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker or a bug: reported with the fold
                fix = environment_error(exc)
                if fix:
                    raise InputError(fix) from None
                result = {"error": f"fold {fold.index}: {describe_failure(exc)}"}
            finally:
                fut.release()
            done += 1
            if "error" in result:
                failures.append(result["error"])
                continue
            if result["fingerprint"] != fp:
                failures.append(f"fold {fold.index}: the worker saw other cases or options than this machine "
                                "(fingerprint mismatch); workers must see the same dataset path and files")
                continue
            write_fold(out, fold.index, result["description"], result["state"])
            on_fold(fold.index, result["training"])
            where = result["training"].get("worker", "?")
            progress(0.02 + 0.97 * done / len(pending),
                     f"fold {fold.index} trained on {where} ({done}/{len(pending)})")
    finally:
        if futures:
            client.cancel(list(futures))
    if failures:
        raise InputError("; ".join(failures) + " (the other folds were written; rerun to retry the failed ones)")


__all__ = ["remote_fold", "train_on_cluster"]
