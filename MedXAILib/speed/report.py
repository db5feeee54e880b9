"""Comparing maps, judging the issue-6 targets, and printing the ratio table.

Agreement measures (maps on the model grid, flattened):
    - :func:`spearman`: Spearman's rank correlation over at most ``max_voxels`` evenly strided voxels (1.0 when both
      maps are constant and equal, 0.0 when only one is constant);
    - :func:`max_relative_difference`: ``max |a − b| / max |b|`` (b is the reference).

Targets (issue 6), judged on one run's rows, per case (``3d``, ``2d``; ``full`` for the last):
    - ``gradcam``/``gradcampp``: MedXAI median ≤ 1.1 × ``forward_backward``, and ≤ captum ``LayerGradCam``'s;
    - ``scorecam``: the fastest MedXAI row whose map has Spearman ≥ 0.95 to the naive loop's is ≥ 5× faster than it;
    - ``occlusion``: captum / MedXAI ≥ 2 and the maps equal to 1e-4 (relative);
    - ``kernelshap``/``lime``: captum / MedXAI ≥ 2 at equal samples, and MedXAI's agreement (Spearman) to the
      high-sample full-grid reference ≥ captum's — judged on the fastest MedXAI setting (exact or coarser scoring)
      whose agreement is at least captum's;
    - ``segment+gradcam`` on ``full``: < 30 s and peak RSS < 8 GiB.

Targets (issue 21): on ``3d``, the exact occlusion, KernelSHAP, LIME and deletion / insertion curves (the model
function's sliding window, with :mod:`MedXAILib.explain.window_cache`) ≤ 1.5 × the whole-grid approximation; with
``--bundles``, ``predict+gradcam`` ≤ 1.5 × ``inference`` on each bundle and LRP / IG peak ≤ 8 GiB on the BraTS bundle;
the cohort agreement of the ``agreement`` case < 2 minutes.
"""

from __future__ import annotations

import math
from typing import Any

GIB_MB = 1024.0


def _rows(rows: list[dict[str, Any]], tag: str, method: str, impl: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["model"].split(":")[0] == tag and r["method"] == method
            and r["implementation"] == impl and r.get("median_s") is not None]


def _one(rows: list[dict[str, Any]], tag: str, method: str, impl: str) -> dict[str, Any] | None:
    found = _rows(rows, tag, method, impl)
    return min(found, key=lambda r: r["median_s"]) if found else None


def scorecam_setting(row: dict[str, Any]) -> str:
    """``exact``, or the approximation a Score-CAM row used (``mask_scale=…``, ``top_k=…``)."""
    p = row.get("params", {})
    parts = [f"{k}={p[k]}" for k in ("mask_scale", "top_k") if k in p and p[k] not in (0, 1, 1.0)]
    return " ".join(parts) or "exact"


def shap_setting(row: dict[str, Any]) -> str:
    """``exact``, or ``score_scale=…`` for a KernelSHAP / LIME row scored on a coarser grid."""
    scale = row.get("params", {}).get("score_scale", 1.0)
    return "exact" if scale in (None, 1, 1.0) else f"score_scale={scale}"


def _fastest_agreeing(rows: list[dict[str, Any]], tag: str, method: str,
                      reference: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fastest MedXAI row of ``method`` whose high-sample agreement is ≥ the reference row's; else the most
    agreeing one (so a failing verdict shows the best there was)."""
    found = _rows(rows, tag, method, "medxai")
    if not found:
        return None
    need = None if reference is None else reference.get("agreement_to_high_sample")
    ok = [r for r in found if need is not None and (r.get("agreement_to_high_sample") or -2.0) >= need]
    if ok:
        return min(ok, key=lambda r: r["median_s"])
    return max(found, key=lambda r: r.get("agreement_to_high_sample") or -2.0)


def _target(name: str, tag: str, passed: bool | None, value: str, need: str) -> dict[str, Any]:
    return {"target": name, "case": tag, "passed": passed, "measured": value, "required": need}


def evaluate_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pass/fail of every issue-6 target that the rows allow judging (``passed`` None: not measured)."""
    out: list[dict[str, Any]] = []
    tags = sorted({r["model"].split(":")[0] for r in rows} & {"3d", "2d"})
    for tag in tags:
        fb = _one(rows, tag, "forward_backward", "torch")
        cap = _one(rows, tag, "gradcam", "captum")
        for m in ("gradcam", "gradcampp"):
            ours = _one(rows, tag, m, "medxai")
            if ours is None or fb is None:
                out.append(_target(f"{m} <= 1.1 x forward+backward", tag, None, "not measured", "<= 1.1"))
            else:
                q = ours["median_s"] / fb["median_s"]
                out.append(_target(f"{m} <= 1.1 x forward+backward", tag, q <= 1.1, f"{q:.3f}", "<= 1.1"))
            if ours is None or cap is None:
                out.append(_target(f"{m} no slower than captum LayerGradCam", tag, None, "not measured", "<= 1.0"))
            else:
                q = ours["median_s"] / cap["median_s"]
                out.append(_target(f"{m} no slower than captum LayerGradCam", tag, q <= 1.0, f"{q:.3f}", "<= 1.0"))
        naive = _one(rows, tag, "scorecam", "naive")
        cands = [r for r in _rows(rows, tag, "scorecam", "medxai") if (r.get("spearman_to_reference") or 0) >= 0.95]
        if naive is None or not _rows(rows, tag, "scorecam", "medxai"):
            out.append(_target("scorecam >= 5x faster than the plain loop at Spearman >= 0.95", tag, None,
                               "not measured", ">= 5, rho >= 0.95"))
        elif not cands:
            best = max(_rows(rows, tag, "scorecam", "medxai"), key=lambda r: r.get("spearman_to_reference") or -1)
            out.append(_target("scorecam >= 5x faster than the plain loop at Spearman >= 0.95", tag, False,
                               f"no setting reaches rho 0.95 (best rho {best.get('spearman_to_reference')})",
                               ">= 5, rho >= 0.95"))
        else:
            best = min(cands, key=lambda r: r["median_s"])
            q = naive["median_s"] / best["median_s"]
            out.append(_target("scorecam >= 5x faster than the plain loop at Spearman >= 0.95", tag, q >= 5.0,
                               f"{q:.2f}x at rho {best['spearman_to_reference']:.4f} ({scorecam_setting(best)})",
                               ">= 5, rho >= 0.95"))
        ours, cap = _one(rows, tag, "occlusion", "medxai"), _one(rows, tag, "occlusion", "captum")
        if ours is None or cap is None:
            out.append(_target("occlusion >= 2x faster than captum, equal map (1e-4)", tag, None, "not measured",
                               ">= 2, diff <= 1e-4"))
        else:
            q = cap["median_s"] / ours["median_s"]
            diff = ours.get("max_rel_diff_to_reference", math.inf)
            out.append(_target("occlusion >= 2x faster than captum, equal map (1e-4)", tag, q >= 2.0 and diff <= 1e-4,
                               f"{q:.2f}x, max rel diff {diff:.2g}", ">= 2, diff <= 1e-4"))
        for m in ("kernelshap", "lime"):
            cap = _one(rows, tag, m, "captum")
            ours = _fastest_agreeing(rows, tag, m, cap)
            name = f"{m} >= 2x faster than captum at equal samples, agreement >= captum's"
            if ours is None or cap is None:
                out.append(_target(name, tag, None, "not measured", ">= 2, rho_ours >= rho_captum"))
                continue
            q = cap["median_s"] / ours["median_s"]
            ra, rb = ours.get("agreement_to_high_sample"), cap.get("agreement_to_high_sample")
            agree = ra is not None and rb is not None and ra >= rb
            out.append(_target(name, tag, q >= 2.0 and agree,
                               f"{q:.2f}x ({shap_setting(ours)}), rho {ra} vs captum {rb}",
                               ">= 2, rho_ours >= rho_captum"))
    out += _issue21_targets(rows)
    full = _one(rows, "full", "segment+gradcam", "medxai")
    if full is None:
        out.append(_target("full case segment+gradcam < 30 s, peak RSS < 8 GiB", "full", None, "not measured",
                           "< 30 s, < 8 GiB"))
    else:
        peak = full.get("peak_mb")
        ok = full["median_s"] < 30.0 and peak is not None and peak < 8 * GIB_MB
        out.append(_target("full case segment+gradcam < 30 s, peak RSS < 8 GiB", "full", ok,
                           f"{full['median_s']:.1f} s, {peak if peak is None else round(peak / GIB_MB, 2)} GiB",
                           "< 30 s, < 8 GiB"))
    return out


def _issue21_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 21: exact and affordable — the exact perturbation rows against the whole-grid approximation, the
    bundles' exact Grad-CAM against their inference, LRP and IG memory on the full BraTS bundle, the cohort
    agreement's time."""
    from .exact import exact_ratios

    out: list[dict[str, Any]] = []
    ratios = exact_ratios(rows)
    for name in ("occlusion", "kernelshap", "lime", "deletion_insertion"):
        q = ratios.get(name)
        out.append(_target(f"exact {name} <= 1.5 x the whole-grid approximation", "3d",
                           None if q is None else q <= 1.5, "not measured" if q is None else f"{q:.3f}", "<= 1.5"))
    labels = sorted({r["model"] for r in rows if r["model"].startswith("bundle:")})
    for label in labels:
        inf = [r for r in rows if r["model"] == label and r["method"] == "inference" and r.get("median_s")]
        cam = [r for r in rows if r["model"] == label and r["method"] == "predict+gradcam" and r.get("median_s")]
        name = f"{label.split(':', 1)[1]}: exact predict+gradcam <= 1.5 x inference"
        if inf and cam:
            q = cam[0]["median_s"] / inf[0]["median_s"]
            out.append(_target(name, "bundle", q <= 1.5, f"{q:.3f}", "<= 1.5"))
        else:
            out.append(_target(name, "bundle", None, "not measured", "<= 1.5"))
        for method in ("lrp", "ig"):
            mem = [r for r in rows if r["model"] == label and r["method"] == method and r.get("child_process")]
            if not mem:
                continue
            peak = mem[0].get("peak_mb")
            est = mem[0].get("estimated_peak_mb")
            text = "failed" if peak is None else f"{peak / GIB_MB:.2f} GiB (dry-run estimate {est / GIB_MB:.2f} GiB)"
            out.append(_target(f"{label.split(':', 1)[1]}: {method} peak memory <= 8 GiB", "bundle",
                               None if peak is None else peak <= 8 * GIB_MB, text, "<= 8 GiB"))
    agree = [r for r in rows if r["method"] == "agreement" and r.get("median_s") is not None]
    if agree:
        r = agree[0]
        out.append(_target(f"cohort agreement of {r.get('units')} BraTS-size units < 2 min", "agreement",
                           r["median_s"] < 120.0, f"{r['median_s']:.1f} s", "< 120 s"))
    return out


def ratio_table(rows: list[dict[str, Any]]) -> str:
    """One line per timed row: median, ×forward, ×forward+backward, and the reference's time ÷ MedXAI's."""
    lines = [f"{'case':<5} {'method':<16} {'implementation':<16} {'median s':>9} {'peak MB':>8} {'x fwd':>7} "
             f"{'x f+b':>7} {'speed-up':>9}  agreement"]
    for r in rows:
        tag = r["model"].split(":")[0]
        if r.get("median_s") is None:
            why = r.get("skipped") or r.get("error") or ""
            lines.append(f"{tag:<5} {r['method']:<16} {r['implementation']:<16} {'—':>9}  {why[:90]}")
            continue
        if tag == "bundle":  # one row per bundle: name it (its note column is free)
            peak = "—" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
            lines.append(f"{tag:<5} {r['method']:<16} {r['implementation']:<16} {r['median_s']:>9.3f} {peak:>8} "
                         f"{'—':>7} {'—':>7} {'—':>9}  {r['model'].split(':', 1)[1]}")
            continue
        fwd, fb = _one(rows, tag, "forward", "torch"), _one(rows, tag, "forward_backward", "torch")
        x_fwd = f"{r['median_s'] / fwd['median_s']:.2f}" if fwd else "—"
        x_fb = f"{r['median_s'] / fb['median_s']:.2f}" if fb else "—"
        speed = "—"
        if r["implementation"] not in ("medxai", "torch"):
            ours = _one(rows, tag, r["method"], "medxai")
            if r["method"] == "scorecam":
                fast = [o for o in _rows(rows, tag, "scorecam", "medxai")
                        if (o.get("spearman_to_reference") or 0) >= 0.95]
                ours = min(fast, key=lambda o: o["median_s"]) if fast else ours
            elif r["method"] in ("kernelshap", "lime"):
                ours = _fastest_agreeing(rows, tag, r["method"], r)
            if ours is not None:
                speed = f"{r['median_s'] / ours['median_s']:.2f}x"
        agree = []
        for key, label in (("spearman_to_reference", "rho_ref"), ("spearman_to_medxai", "rho_medxai"),
                           ("max_rel_diff_to_reference", "diff_ref"), ("max_rel_diff_to_medxai", "diff_medxai"),
                           ("agreement_to_high_sample", "rho_high")):
            if key in r:
                agree.append(f"{label}={r[key]}")
        if "params" in r and r["method"] == "scorecam" and r["implementation"] == "medxai":
            agree.append(scorecam_setting(r))
        if "params" in r and r["method"] in ("kernelshap", "lime") and r["implementation"] == "medxai":
            agree.append(shap_setting(r))
        if "note" in r:
            agree.append(r["note"])
        peak = "—" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
        lines.append(f"{tag:<5} {r['method']:<16} {r['implementation']:<16} {r['median_s']:>9.3f} {peak:>8} "
                     f"{x_fwd:>7} {x_fb:>7} {speed:>9}  {' '.join(agree)}")
    return "\n".join(lines)


def scaling_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'volume (K,J,I)':<16} {'voxels':>10} {'method':<17} {'median s':>9} {'peak MB':>8}"]
    for r in rows:
        shape = "x".join(str(s) for s in r["input_shape"][1:])
        med = "—" if r.get("median_s") is None else f"{r['median_s']:.3f}"
        peak = "—" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
        lines.append(f"{shape:<16} {r.get('voxels', 0):>10} {r['method']:<17} {med:>9} {peak:>8}")
    return "\n".join(lines)


def targets_table(targets: list[dict[str, Any]]) -> str:
    lines = []
    for t in targets:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["passed"]]
        lines.append(f"{verdict}  [{t['case']}] {t['target']}: {t['measured']} (required {t['required']})")
    return "\n".join(lines)
