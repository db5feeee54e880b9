"""Issue 22: a seeded fuzz run of model files through ``segment`` — bundle configs and metadata, nnU-Net plans and
dataset.json — written as an attacker or a careless author would (:mod:`model_file_cases`).

``MEDXAI_MODEL_FUZZ_CASES`` cases (default 160: about 100 bundle and 60 nnU-Net variants), run in-process. Every case
is judged by rules that do not use MedXAI's own checks:

- ``code-ran``: the payload's marker file exists (the payload module, ``itkreader.py`` … were imported, or an
  expression ran), or a file appeared in ``$TORCH_HOME`` / the temporary folder (a download, ``tempfile.mkstemp``);
- ``hang``: the command did not return within :data:`CASE_SECONDS`; ``memory``: the process's peak resident memory
  grew by more than :data:`MEMORY_BYTES` during the case (an unbounded read or expansion, even one that ended in an
  error);
- ``traceback``: an exception escaped, or stderr holds a traceback;
- ``unclean-refusal``: exit 2 without exactly one ``error:`` line (``warning:`` lines aside);
- ``leftover``: a refused command left a file, or a successful one left files beyond its declared outputs;
- ``modified-input``: a file that existed before changed (sha256);
- ``accepted``: a case that must be refused ran to exit 0; ``unexpected-refusal``: a harmless variant was refused.

``MEDXAI_MODEL_FUZZ_REPORT=FILE`` writes the counts per class and per case as JSON (the closing note quotes them,
before and after the change).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from model_file_cases import LOWER_READERS, PAYLOAD, ModelCase, bundle_cases, nnunet_cases

from MedXAILib.cli import main

N_CASES = int(os.environ.get("MEDXAI_MODEL_FUZZ_CASES", "160"))
CASE_SECONDS = 30
MEMORY_BYTES = 1 << 30
OUTPUTS = ("o.nii.gz", "o.nii.gz.json")
PROBLEMS = ("code-ran", "hang", "memory", "traceback", "unclean-refusal", "leftover", "modified-input", "accepted",
            "unexpected-refusal")


def snapshot(root: Path) -> dict[str, str]:
    """``relative path → sha256`` of every regular file under ``root``; links and special files by their kind and
    target only (a named pipe or a link to ``/dev/zero`` is never opened)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return out


class _TimeoutError(Exception):
    pass


def run_case(argv: list[str]) -> tuple[int | None, str | None, bool, int]:
    """``(exit code, traceback text, timed out, growth of peak memory in bytes)`` of one in-process CLI call, bounded
    by :data:`CASE_SECONDS` (a timeout counts even when the code under test catches the interrupting exception and
    reports an error)."""
    fired: list[bool] = []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def alarm(_sig: int, _frame: object) -> None:
        fired.append(True)
        raise _TimeoutError()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CASE_SECONDS)
    try:
        code: int | None = int(main(argv))
        tb = None
    except SystemExit as exc:
        code, tb = int(exc.code or 0), None
    except _TimeoutError:
        code, tb = None, None
    except BaseException:  # noqa: BLE001 - a traceback (MemoryError, RecursionError included) is what is counted
        code, tb = None, traceback.format_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * 1024  # ru_maxrss is in KiB on Linux
    return code, tb, bool(fired), grown


def _forget_payload() -> None:
    for name in (PAYLOAD, *LOWER_READERS):
        sys.modules.pop(name, None)


def judge(case: ModelCase, code: int | None, tb: str | None, hung: bool, grown: int, err: str,
          before: dict[str, str], after: dict[str, str], out_rel: str, marker: Path) -> list[str]:
    """The problems of one case (see the module docstring); empty when it obeys every rule."""
    problems: list[str] = []
    new = sorted(set(after) - set(before))
    declared = {f"{out_rel}/{o}" for o in OUTPUTS}
    stray = [f for f in new if f not in declared]
    if marker.exists() or any(f.startswith(("torch_home/", "tmp/")) for f in new):
        problems.append("code-ran")
    if hung:
        problems.append("hang")
    if grown > MEMORY_BYTES:
        problems.append("memory")
    if tb is not None or "Traceback" in err:
        problems.append("traceback")
    if any(after.get(k) != v for k, v in before.items()):
        problems.append("modified-input")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code == 2:
        errors = [ln for ln in lines if ln.startswith("error:")]
        others = [ln for ln in lines if ln not in errors and not ln.startswith("warning:")]
        if len(errors) != 1 or others:
            problems.append("unclean-refusal")
        if new:
            problems.append("leftover")
        if case.expect == "ok":
            problems.append("unexpected-refusal")
    elif code == 0:
        if stray or (case.expect == "ok" and set(new) != declared):
            problems.append("leftover")
        if case.expect == "refuse":
            problems.append("accepted")
    elif not hung and tb is None:
        problems.append(f"exit-{code}")
    return problems


def generate(n: int, seed: int = 22) -> list[ModelCase]:
    rng = np.random.default_rng(seed)
    n_bundle = int(round(n * 0.62))
    return bundle_cases(rng, 0, n_bundle) + nnunet_cases(rng, n_bundle, n - n_bundle)


@pytest.mark.usefixtures("one_torch_thread")
def test_fuzz_model_files(tmp_path_factory: pytest.TempPathFactory, capfd: pytest.CaptureFixture,
                          monkeypatch: pytest.MonkeyPatch, model_file_world: dict[str, Path]) -> None:
    pytest.importorskip("nnunetv2", reason="nnU-Net v2 is not installed (the nnU-Net half of the cases needs it)")
    t0 = time.perf_counter()
    root = tmp_path_factory.mktemp("model-fuzz")
    world = model_file_world
    for sub in ("torch_home", "tmp"):
        (root / sub).mkdir()
    monkeypatch.syspath_prepend(str(world["payload"]))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch_home"))
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    capfd.readouterr()
    counts: Counter[str] = Counter()
    per_class: dict[str, Counter[str]] = {}
    verdicts = []
    for case in generate(N_CASES):
        case_dir, out_dir = root / "cases" / case.name, root / "out" / case.name
        case_dir.mkdir(parents=True)
        out_dir.mkdir(parents=True)
        model = case.build(case_dir, world)
        argv = ["segment", "--model", str(model), "--input", str(world["ct"]), "--output",
                str(out_dir / "o.nii.gz"), "--progress", "none"]
        before = {**snapshot(root), **{f"world/{k}": v for k, v in snapshot(world["root"]).items()}}
        code, tb, hung, grown = run_case(argv)
        _, err = capfd.readouterr()
        after = {**snapshot(root), **{f"world/{k}": v for k, v in snapshot(world["root"]).items()}}
        problems = judge(case, code, tb, hung, grown, err, before, after, str(out_dir.relative_to(root)),
                         world["marker"])
        klass = per_class.setdefault(case.klass, Counter())
        klass["cases"] += 1
        counts["cases"] += 1
        for p in problems:
            counts[p] += 1
            klass[p] += 1
        if code == 2 and not problems:
            counts["clean-refusals"] += 1
        verdicts.append({"case": case.name, "what": case.what, "expect": case.expect, "exit": code,
                         "problems": problems, "traceback": (tb or "")[-600:] or None,
                         "error": next((ln for ln in err.splitlines() if ln.startswith("error:")), None)})
        world["marker"].unlink(missing_ok=True)
        _forget_payload()
        for sub in ("torch_home", "tmp"):
            shutil.rmtree(root / sub)
            (root / sub).mkdir()
        shutil.rmtree(case_dir)
        shutil.rmtree(out_dir)
    counts["seconds"] = round(time.perf_counter() - t0)
    summary = {k: counts.get(k, 0) for k in ("cases", "clean-refusals", *PROBLEMS, "seconds")}
    report = os.environ.get("MEDXAI_MODEL_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({"summary": summary, "per_class": per_class, "cases": verdicts},
                                           indent=1, default=str))
    print("model-file fuzz summary:", json.dumps(summary), json.dumps(per_class))
    assert summary["cases"] >= min(N_CASES, 150)
    bad = [v for v in verdicts if v["problems"]]
    assert not bad, json.dumps(bad[:6], indent=1)
