"""The benchmark on Dask: a LocalCluster of two worker processes, and a real `dask scheduler` + two `dask worker`
processes on 127.0.0.1 where one worker is SIGKILLed mid-run. Every row must come back exactly once."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import save_model, tiny_unet_model

from MedXAILib.benchmark import UnitStore
from MedXAILib.cli import main
from MedXAILib.cluster import parse_address, unit_resources
from MedXAILib.errors import InputError
from MedXAILib.io import write_volume
from MedXAILib.volume import Volume, make_ijk_to_ras

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cluster_addresses_are_parsed_or_refused_with_the_fix() -> None:
    assert parse_address("local:2") == ("local", 2)
    assert parse_address("tcp://10.0.0.5:8786") == ("remote", "tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "slurm"):
        with pytest.raises(InputError, match="local:N"):
            parse_address(bad)
    assert unit_resources("cuda") == {"GPU": 1} and unit_resources("cuda:1") == {"GPU": 1}
    assert unit_resources("cpu") is None and unit_resources("auto") is None


def test_bad_cluster_address_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["benchmark", "--dataset", "phantom:2", "--model", "demo-brain-tumour", "--methods", "random",
                 "--folds", "2", "--output", str(tmp_path / "o"), "--cluster", "8786", "--progress", "none"])
    assert code == 2 and "tcp://" in capsys.readouterr().err


@pytest.mark.slow  # two worker processes import torch and MONAI (~15-25 s on 2 shared cores)
def test_local_cluster_two_workers_eight_unique_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(["benchmark", "--dataset", "phantom:4", "--model", "demo-brain-tumour", "--methods",
                 "gradcam,saliency", "--folds", "2", "--metrics", "localisation", "--output", str(out),
                 "--cluster", "local:2", "--worker-threads", "1", "--progress", "none"]) == 0
    rows = _rows(out / "cases.csv")
    keys = [(r["case_id"], r["method"]) for r in rows]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert len({r["worker"] for r in rows}) == 2, [r["worker"] for r in rows]
    splits = json.loads((out / "splits.json").read_text())
    fold_of = {c: f["index"] for f in splits["folds"] for c in f["test"]}
    assert all(int(r["fold"]) == fold_of[r["case_id"]] for r in rows)


# ---- a real scheduler and two workers as separate processes ---------------------------------------------------
def _cohort(root: Path, n: int) -> Path:
    """``n`` tiny 2-channel cases (one patient each) and one case whose image file is not an image."""
    rows = ["case_id,patient_id,image:c0,image:c1,label"]
    geom = make_ijk_to_ras((1.2, 0.9, 2.5), (10.0, -5.0, 3.0))
    for k in range(n):
        rng = np.random.default_rng(k)
        img = rng.normal(size=(2, 8, 16, 16)).astype(np.float32)
        lab = np.zeros((1, 8, 16, 16), np.int16)
        lab[0, 2:6, 4 + k % 5 : 9 + k % 5, 5:11] = 1
        img[:, lab[0] > 0] += 2.0
        for c in range(2):
            write_volume(Volume(img[c : c + 1], geom), root / f"case{k}_c{c}.nii.gz")
        write_volume(Volume(lab, geom), root / f"case{k}_seg.nii.gz")
        rows.append(f"case{k},p{k},case{k}_c0.nii.gz,case{k}_c1.nii.gz,case{k}_seg.nii.gz")
    (root / "broken_c0.nii.gz").write_bytes(b"this is not a NIfTI file")
    rows.append(f"broken,p{n},broken_c0.nii.gz,case0_c1.nii.gz,case0_seg.nii.gz")
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")
    return root / "cohort.csv"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, then SIGKILL what is left after a grace period; reap the leaders."""
    for p in procs:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 5
    while time.time() < deadline and any(_group_alive(p.pid) for p in procs):
        for p in procs:
            p.poll()
        time.sleep(0.1)
    for p in procs:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.slow  # a scheduler and two workers start as separate processes (~20-40 s on 2 shared cores)
def test_real_scheduler_survives_a_sigkilled_worker_with_every_row_once(tmp_path: Path) -> None:
    model = save_model(tiny_unet_model(channels=2, classes=2), tmp_path / "model")
    cohort = _cohort(tmp_path, 6)
    out = tmp_path / "bench"
    sched_file = tmp_path / "scheduler.json"
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("scheduler", "wA", "wB")}  # noqa: SIM115
    procs: list[subprocess.Popen] = []
    killed: dict[str, object] = {}
    stop_watch = threading.Event()
    observer = None

    def spawn(args: list[str], log: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, cwd=tmp_path, stdout=logs[log],
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
               str(sched_file), "--idle-timeout", "300"], "scheduler")
        deadline = time.time() + 60
        while time.time() < deadline and not sched_file.exists():
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        workers = {}
        for name in ("wA", "wB"):
            workers[name] = spawn(["worker", address, "--name", name, "--nthreads", "1", "--host", "127.0.0.1",
                                   "--no-dashboard", "--death-timeout", "60"], name)
        from distributed import Client

        observer = Client(address, timeout=60)  # the test's own view of the scheduler
        observer.wait_for_workers(2, timeout=120)
        observer.run(exec, "import torch, monai, MedXAILib.benchmark.runner")  # both warm: wA gets work early
        address_of = {w["name"]: a for a, w in observer.scheduler_info()["workers"].items()}

        def watch() -> None:
            """After worker A's first committed unit, wait until it is running another, then SIGKILL its whole
            process group (nanny and worker) and note which units it held."""
            seen_first = False
            while not stop_watch.is_set():
                if not seen_first:
                    seen_first = any(str(r.get("worker", "")).endswith("/wA") for r in UnitStore(out).records())
                if seen_first:
                    held = observer.processing(workers=[address_of["wA"]]).get(address_of["wA"], [])
                    if held:
                        os.killpg(workers["wA"].pid, signal.SIGKILL)
                        killed.update(held=[str(k) for k in held], done=len(list(UnitStore(out).records())))
                        return
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        code = main(["benchmark", "--dataset", f"csv:{cohort}", "--model", str(model), "--methods", "gradcam,random",
                     "--folds", "2", "--metrics", "localisation,faithfulness", "--steps", "4", "--output", str(out),
                     "--cluster", address, "--progress", "none"])
        stop_watch.set()
        watcher.join(timeout=5)
        assert code == 0
        assert killed, "worker A never held a unit after its first one: the fault was not injected"
        assert killed["done"] < 14  # killed mid-run
        rows = _rows(out / "cases.csv")
        keys = [(r["case_id"], r["method"]) for r in rows]
        assert len(keys) == 14 and len(set(keys)) == 14  # 7 cases × 2 methods, each exactly once
        assert len(list(UnitStore(out).records())) == 14
        broken = [r for r in rows if r["case_id"] == "broken"]
        assert all(r["status"] == "error" and r["error"] for r in broken)  # recorded once with its message
        good = [r for r in rows if r["case_id"] != "broken"]
        assert all(r["status"] == "ok" for r in good), [r["error"] for r in good]
        by_worker = {r["worker"].rsplit("/", 1)[-1] for r in rows}
        assert by_worker == {"wA", "wB"}
        worker_of = {f"{r['case_id']}__{r['method']}": r["worker"] for r in rows}
        lost = [next(u for u in worker_of if key.startswith(f"medxai-unit-{u}-")) for key in killed["held"]]
        assert lost and all(worker_of[u].endswith("/wB") for u in lost)  # the units wA held were redone by wB
        n_a = sum(r["worker"].endswith("/wA") for r in rows)
        print(f"fault test: wA SIGKILLed holding {lost} after {killed['done']} of 14 units were committed; "
              f"rows by wA {n_a}, by wB {14 - n_a}; {len(broken)} broken-case rows recorded as errors")
    finally:
        stop_watch.set()
        if observer is not None:
            observer.close()
        _stop(procs)
        for fh in logs.values():
            fh.close()
    assert not any(_group_alive(p.pid) for p in procs), "a scheduler or worker process was left behind"
