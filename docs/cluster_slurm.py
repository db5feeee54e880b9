"""Run a MedXAI benchmark on a SLURM cluster through dask-jobqueue (see docs/cluster.md).

Run this on a login node of the cluster, from a Python environment that has MedXAI installed and that the compute
nodes can see (a shared file system), after `pip install dask-jobqueue`:

    python docs/cluster_slurm.py --jobs 8 --partition gpu --gpu -- \
        --dataset brats2021:/shared/data/BraTS2021 --model /shared/models/unet --methods gradcam,lrp,ig \
        --folds 5 --output /shared/results/bench --device cuda

Everything after `--` is passed to `python -m MedXAILib benchmark`; `--cluster` is added. Each SLURM job is one Dask
worker process with one Dask thread (one unit at a time) and `--cpus` torch threads; with `--gpu` it asks SLURM for a
GPU and advertises the Dask resource GPU=1 that `--device cuda` units request. Jobs leave on their own after
`--walltime`, and all of them are cancelled when this script ends. The benchmark resumes from its output folder, so a
run cut short by the wall time continues with the same command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any


def make_cluster(partition: str, cpus: int, memory: str, walltime: str, gpu: bool, env: str | None) -> Any:
    """A dask-jobqueue SLURMCluster whose jobs each run one MedXAI worker (nothing is submitted before ``scale``)."""
    from dask_jobqueue import SLURMCluster

    prologue = [f"export OMP_NUM_THREADS={cpus}", f"export MKL_NUM_THREADS={cpus}"]
    extra: dict[str, Any] = {}
    if env:
        prologue.insert(0, f"source {env}/bin/activate")
        extra["python"] = f"{env}/bin/python"
    return SLURMCluster(
        queue=partition,
        processes=1,  # one worker process per job,
        cores=1,  # with one Dask thread: a MedXAI worker runs one unit at a time ...
        job_cpu=cpus,  # ... and torch uses the job's CPUs inside it (OMP_NUM_THREADS, --worker-threads)
        memory=memory,
        walltime=walltime,
        job_extra_directives=["--gres=gpu:1"] if gpu else [],
        worker_extra_args=["--resources", "GPU=1"] if gpu else [],
        job_script_prologue=prologue,
        # the scheduler runs in this process: listen where compute nodes reach it, no public dashboard
        scheduler_options={"dashboard_address": "127.0.0.1:0"},
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs = Dask workers (default 4)")
    parser.add_argument("--partition", default="gpu", help="SLURM partition (default gpu)")
    parser.add_argument("--cpus", type=int, default=4, help="CPUs per job = --worker-threads (default 4)")
    parser.add_argument("--memory", default="16GB", help="memory per job (default 16GB)")
    parser.add_argument("--walltime", default="04:00:00", help="SLURM time limit per job (default 04:00:00)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per job (use with --device cuda)")
    parser.add_argument("--env", default=None, help="a virtualenv on the shared file system to activate in jobs")
    parser.add_argument("--print-job-script", action="store_true", help="print the sbatch script and stop")
    args = parser.parse_args(ours)
    cluster = make_cluster(args.partition, args.cpus, args.memory, args.walltime, args.gpu, args.env)
    try:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        cluster.scale(jobs=args.jobs)
        cmd = [sys.executable, "-m", "MedXAILib", "benchmark", *rest, "--cluster", cluster.scheduler_address,
               "--worker-threads", str(args.cpus)]
        return subprocess.call(cmd)
    finally:
        cluster.close()  # cancels every job this script submitted


if __name__ == "__main__":
    raise SystemExit(main())
