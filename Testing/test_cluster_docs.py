"""docs/cluster_slurm.py renders a SLURM job that starts one single-threaded MedXAI worker (with a GPU on request).

Needs the optional dask-jobqueue (skipped without it); nothing is submitted (no SLURM needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster_slurm.py"


def test_slurm_example_job_script(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is optional (pip install dask-jobqueue)")
    spec = importlib.util.spec_from_file_location("cluster_slurm", DOC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--print-job-script", "--gpu", "--cpus", "6", "--env", "/shared/venv", "--partition",
                        "gpu"]) == 0
    script = capsys.readouterr().out
    for expected in ("#SBATCH -p gpu", "--cpus-per-task=6", "--gres=gpu:1", "source /shared/venv/bin/activate",
                     "OMP_NUM_THREADS=6", "/shared/venv/bin/python -m distributed.cli.dask_worker", "--nthreads 1",
                     "--resources GPU=1"):
        assert expected in script, expected
