"""Measure benchmark throughput with 1 and 2 local Dask workers on the same cohort (the table in docs/cluster.md).

    python docs/cluster_scaling.py --pairs 2 --workers 1,2 --out /tmp/scaling

Runs `python -m MedXAILib benchmark --dataset phantom:4 --model demo-brain-tumour --methods gradcam,saliency
--folds 2 --steps 5 --cluster local:N --progress json` into a fresh folder per run, timestamps every finished unit,
and prints one JSON line per run: wall seconds, seconds to the first unit (worker start-up included), units per
minute over the whole run and between the first and last unit, the CPU seconds of the run's processes (client and
workers, from getrusage of the waited-for children) and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def one_run(cluster: str, out: Path, dataset: str, methods: str) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "MedXAILib", "benchmark", "--dataset", dataset, "--model", "demo-brain-tumour",
           "--methods", methods, "--folds", "2", "--steps", "5", "--output", str(out), "--cluster", cluster,
           "--progress", "json"]
    load0 = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stamps = []
    assert proc.stdout is not None
    for line in proc.stdout:
        stage = json.loads(line).get("stage", "")
        if " on " in stage and stage.endswith(")") and "/" in stage:  # "case × method on worker (n/N)"
            stamps.append(time.time() - t0)
    proc.wait()
    wall = time.time() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 if len(stamps) > 1 else None
    return {"cluster": cluster, "units": len(stamps), "wall_s": round(wall, 1),
            "first_unit_s": round(stamps[0], 1) if stamps else None,
            "units_per_min_wall": round(len(stamps) / wall * 60, 2),
            "units_per_min_steady": round(steady, 2) if steady else None, "cpu_s": round(cpu, 1),
            "load1_start": round(load0, 2), "load1_end": round(os.getloadavg()[0], 2), "rc": proc.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="repetitions of the whole set (default 2)")
    parser.add_argument("--workers", default="1,2", help="local worker counts to compare (default 1,2)")
    parser.add_argument("--dataset", default="phantom:4")
    parser.add_argument("--methods", default="gradcam,saliency")
    parser.add_argument("--out", default="scaling-runs", help="folder for the runs' outputs")
    args = parser.parse_args()
    for rep in range(1, args.pairs + 1):
        for n in [int(v) for v in args.workers.split(",")]:
            row = one_run(f"local:{n}", Path(args.out) / f"pair{rep}_local{n}", args.dataset, args.methods)
            print(json.dumps({"pair": rep, **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
