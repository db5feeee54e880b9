"""The MRMC analysis against the numbers the reference software printed for three published reader studies.

Data: ``Testing/data/mrmc/`` (Van Dyke 1993, Franken 1992, Zanca 2009; see its README). Printed numbers:
``Testing/mrmc_reference.py`` (OR-DBM MRMC 2.51; MRMCaov for DeLong). Each number is compared to the precision it
was printed with: ``|ours − printed| ≤ ½ unit of its last printed digit`` (+1 % of a unit; AUCs: 8 decimals, so
better than 1e-6).
DeLong's covariance is also checked against a brute-force computation straight from DeLong et al. (1988).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import mrmc_reference as ref
import numpy as np
import pytest

from MedXAILib.cli import main
from MedXAILib.study.analysis import analyse_ratings
from MedXAILib.study.auc import empirical_auc, jackknife_aucs
from MedXAILib.study.covariance import auc_covariance
from MedXAILib.study.ratings import read_ratings

DATA = Path(__file__).resolve().parent / "data" / "mrmc"
STUDIES = {"vandyke": ref.VANDYKE, "franken": ref.FRANKEN, "zanca-fed": ref.ZANCA_FED}


def printed(value: float | None, text: str, what: str) -> None:
    """``value`` rounds to ``text`` (a printed number): within half a unit of its last digit, plus 1 % of a unit for
    the reference's own t-quantile routine (seen once: a CI bound printed to 8 decimals, 2.5e-11 past half a unit)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = (len(mantissa.split(".")[1]) if "." in mantissa else 0) - int(exponent or 0)
    tol = 0.505 * 10.0**-decimals
    assert value is not None and abs(value - float(text)) <= tol, f"{what}: ours {value!r}, printed {text}"


@pytest.fixture(scope="module", params=list(STUDIES))
def study(request):
    ratings = read_ratings(DATA / f"{request.param}.csv")
    return STUDIES[request.param], analyse_ratings(ratings), request.param


def test_aucs_and_variance_components(study):
    expected, ours, name = study
    for reader, row in expected["auc"].items():
        for modality, text in row.items():
            printed(ours["auc"][modality][reader], text, f"{name} AUC reader {reader} modality {modality}")
    for key, text in expected["components"].items():
        printed(ours["covariance"][key], text, f"{name} {key}")
    assert ours["covariance"]["method"] == "jackknife"


def _check_rows(rows, ours_diffs, name, fields):
    assert len(ours_diffs) == len(rows)
    for row, d in zip(rows, ours_diffs):
        assert (d["a"], d["b"]) == row[:2]
        for field, text in zip(fields, row[2:]):
            value = d["ci"][0] if field == "lo" else d["ci"][1] if field == "hi" else d[field]
            printed(value, text, f"{name} {row[0]}-{row[1]} {field}")


def test_random_readers_random_cases(study):
    expected, ours, name = study
    e, o = expected["rrrc"], ours["random_readers_random_cases"]
    printed(o["f"], e["f"], f"{name} F")
    printed(o["df2"], e["df2"], f"{name} ddf_H")
    printed(o["p"], e["p"], f"{name} p")
    assert o["df1"] == len(ours["modalities"]) - 1
    _check_rows(e["differences"], o["differences"], name, ("difference", "stderr", "df", "t", "p", "lo", "hi"))
    for m, (auc, se, df, lo, hi, cov2) in e["single"].items():
        s = o["modalities"][m]
        for value, text in ((s["auc"], auc), (s["stderr"], se), (s["df"], df), (s["ci"][0], lo), (s["ci"][1], hi),
                            (s["cov2"], cov2)):
            printed(value, text, f"{name} single-arm {m}")


def test_fixed_readers_random_cases(study):
    expected, ours, name = study
    e, o = expected["frrc"], ours["fixed_readers_random_cases"]
    printed(o["chi2"], e["chi2"], f"{name} X2")
    printed(o["p"], e["p"], f"{name} X2 p")
    assert o["df"] == len(ours["modalities"]) - 1
    _check_rows(e["differences"], o["differences"], name, ("difference", "stderr", "z", "p", "lo", "hi"))
    for m, (auc, se, lo, hi) in e["single"].items():
        s = o["modalities"][m]
        for value, text in ((s["auc"], auc), (s["stderr"], se), (s["ci"][0], lo), (s["ci"][1], hi)):
            printed(value, text, f"{name} FRRC single-arm {m}")
        var, cov2 = e["single_var"][m]
        printed(s["var_error"], var, f"{name} var_error {m}")
        printed(s["cov2"], cov2, f"{name} cov2 {m}")
    for reader, a, b, *values in e["readers"]:
        d = next(x for x in o["readers"][reader] if (x["a"], x["b"]) == (a, b))
        for field, text in zip(("difference", "stderr", "z", "p", "lo", "hi"), values):
            value = d["ci"][0] if field == "lo" else d["ci"][1] if field == "hi" else d[field]
            printed(value, text, f"{name} reader {reader} {a}-{b} {field}")
    for reader, (var, cov1) in e["reader_var"].items():
        printed(ours["covariance"]["by_reader"][reader]["var_error"], var, f"{name} reader {reader} var")
        printed(ours["covariance"]["by_reader"][reader]["cov1"], cov1, f"{name} reader {reader} cov1")


def test_random_readers_fixed_cases(study):
    expected, ours, name = study
    e, o = expected["rrfc"], ours["random_readers_fixed_cases"]
    printed(o["f"], e["f"], f"{name} RRFC F")
    printed(o["p"], e["p"], f"{name} RRFC p")
    assert o["df2"] == (len(ours["modalities"]) - 1) * (len(ours["readers"]) - 1)
    _check_rows(e["differences"], o["differences"], name, ("difference", "stderr", "df", "t", "p", "lo", "hi"))
    for m, (auc, ms_r, se, df, lo, hi) in e["single"].items():
        s = o["modalities"][m]
        for value, text in ((s["auc"], auc), (s["ms_r"], ms_r), (s["stderr"], se), (s["df"], df),
                            (s["ci"][0], lo), (s["ci"][1], hi)):
            printed(value, text, f"{name} RRFC single-arm {m}")


def test_delong_option_matches_mrmcaov_on_van_dyke():
    ours = analyse_ratings(read_ratings(DATA / "vandyke.csv"), covariance="delong")
    e = ref.VANDYKE_DELONG_MRMCAOV
    assert ours["covariance"]["method"] == "delong"
    for key, text in e["components"].items():
        printed(ours["covariance"][key], text, f"DeLong {key}")
    o = ours["random_readers_random_cases"]
    for key in ("f", "df2", "p", "denominator"):
        printed(o[key], e["rrrc"][key], f"DeLong {key}")
    _check_rows(e["rrrc"]["differences"], o["differences"], "DeLong",
                ("difference", "stderr", "df", "t", "p", "lo", "hi"))
    for m, (auc, se, df, lo, hi, cov2) in e["rrrc"]["single"].items():
        s = o["modalities"][m]
        for value, text in ((s["auc"], auc), (s["stderr"], se), (s["df"], df), (s["ci"][0], lo), (s["ci"][1], hi),
                            (s["cov2"], cov2)):
            printed(value, text, f"DeLong single-arm {m}")


def test_reader_auc_standard_errors_match_mrmcaov():
    ours = analyse_ratings(read_ratings(DATA / "vandyke.csv"))
    for (reader, modality), text in ref.VANDYKE_READER_SE_MRMCAOV.items():
        printed(ours["fixed_readers_random_cases"]["reader_auc"][reader][modality]["stderr"], text,
                f"reader {reader} modality {modality} SE")


def _delong_brute_force(x_a, y_a, x_b, y_b) -> float:
    """DeLong et al. (1988), eq. for the covariance of two AUCs on the same cases, from the full ψ matrices."""
    def psi(x, y):  # (n1, n0): 1 if y > x, ½ if tied
        return (y[:, None] > x[None, :]) + 0.5 * (y[:, None] == x[None, :])
    pa, pb = psi(x_a, y_a), psi(x_b, y_b)
    n1, n0 = pa.shape
    auc_a, auc_b = pa.mean(), pb.mean()
    s10 = sum((pa[i].mean() - auc_a) * (pb[i].mean() - auc_b) for i in range(n1)) / (n1 - 1)
    s01 = sum((pa[:, j].mean() - auc_a) * (pb[:, j].mean() - auc_b) for j in range(n0)) / (n0 - 1)
    return s10 / n1 + s01 / n0


def test_delong_covariance_against_brute_force():
    r = read_ratings(DATA / "franken.csv")
    cov = auc_covariance(r.scores, r.truth, "delong")
    y = r.truth.astype(bool)
    for (t, j), (u, k) in itertools.combinations_with_replacement([(0, 0), (1, 0), (0, 2), (1, 3)], 2):
        a, b = r.scores[t, j], r.scores[u, k]
        assert cov[t, j, u, k] == pytest.approx(_delong_brute_force(a[~y], a[y], b[~y], b[y]), rel=1e-12)


def test_jackknife_aucs_against_recomputation():
    r = read_ratings(DATA / "vandyke.csv")
    s, y = r.scores[1, 4], r.truth.astype(bool)
    jk = jackknife_aucs(s, y)
    for k in (0, 5, 68, 69, 113):
        keep = np.arange(s.size) != k
        assert jk[k] == pytest.approx(empirical_auc(s[keep][~y[keep]], s[keep][y[keep]]), abs=1e-15)


def test_cli_writes_the_documented_mrmc_json(tmp_path):
    out = tmp_path / "analysis"
    assert main(["study", "analyse", "--ratings", str(DATA / "vandyke.csv"), "--output", str(out)]) == 0
    result = json.loads((out / "mrmc.json").read_text())
    for key in ("modalities", "readers", "auc", "mean_auc", "covariance", "random_readers_random_cases",
                "fixed_readers_random_cases", "random_readers_fixed_cases"):
        assert key in result
    assert result["modalities"] == ["1", "2"] and result["readers"] == ["1", "2", "3", "4", "5"]
    assert set(result["covariance"]) >= {"method", "var_error", "cov1", "cov2", "cov3", "var_r", "var_tr"}
    rrrc = result["random_readers_random_cases"]
    assert set(rrrc) >= {"f", "df1", "df2", "p", "differences"}
    assert set(rrrc["differences"][0]) >= {"a", "b", "difference", "stderr", "df", "p", "ci"}
    assert set(result["fixed_readers_random_cases"]) >= {"chi2", "df", "p", "differences"}
    assert set(result["random_readers_fixed_cases"]) >= {"f", "df1", "df2", "p", "differences"}
    printed(result["mean_auc"]["1"], "0.89703704", "CLI mean AUC")
    assert (out / "report.html").is_file() and (out / "roc.png").is_file()


@pytest.mark.parametrize("row", ref.SAMPLE_SIZE_RJAFROC, ids=lambda r: f"{r[0]}-{r[2]}-J{r[3]}-K{r[4]}")
def test_power_matches_rjafroc(row):
    from MedXAILib.study.sample_size import power

    name, effect, analysis, readers, cases, text = row
    pilot = analyse_ratings(read_ratings(DATA / f"{name}.csv"))
    printed(power(effect, readers, cases, pilot["n_cases"], pilot["covariance"], analysis), text, "power")


@pytest.mark.parametrize("row", ref.CASES_FOR_POWER_RJAFROC, ids=lambda r: f"{r[0]}-J{r[2]}")
def test_cases_needed_match_rjafroc(row, tmp_path, capsys):
    name, effect, readers, cases, text = row
    pilot = analyse_ratings(read_ratings(DATA / f"{name}.csv"))
    (tmp_path / "mrmc.json").write_text(json.dumps(pilot))
    out = tmp_path / "size.json"
    assert main(["study", "size", "--pilot", str(tmp_path / "mrmc.json"), "--effect", str(effect), "--power", "0.8",
                 "--readers", str(readers), "--output", str(out)]) == 0
    row_out = json.loads(out.read_text())["table"]["random_readers_random_cases"][0]
    assert row_out["readers"] == readers and row_out["cases"] == cases
    if text:
        printed(row_out["power"], text, "power at the cases found")
    assert f"{cases}" in capsys.readouterr().out


def test_split_plot_with_cases_nested_within_readers_matches_mrmcaov():
    """Van Dyke recoded so that each reader reads their own copy of the cases (split-plot, one reader per block)."""
    import csv

    from MedXAILib.study.ratings import ratings_from_rows

    rows = list(csv.DictReader(open(DATA / "vandyke.csv")))
    for row in rows:
        row["case"] = f"{row['reader']}.{row['case']}"
    ours = analyse_ratings(ratings_from_rows(rows, design="split-plot"))
    e = ref.VANDYKE_NESTED_MRMCAOV
    assert ours["design"] == "split-plot" and len(ours["reader_groups"]) == 5
    cov = ours["covariance"]
    assert cov["cov2"] == 0.0 and cov["cov3"] == 0.0
    factor = (569 / 570) / (113 / 114)  # MRMCaov's jackknife over all 570 case codes (see mrmc_reference)
    printed(cov["var_error"] * factor, e["var_error"], "nested var_error")
    printed(cov["cov1"] * factor, e["cov1"], "nested cov1")
    o = ours["random_readers_random_cases"]
    for key in ("f", "df2", "p"):
        printed(o[key], e["rrrc"][key], f"nested {key}")
    _check_rows(e["rrrc"]["differences"], o["differences"], "nested",
                ("difference", "stderr", "df", "t", "p", "lo", "hi"))
    for m, (auc, se, df, lo, hi) in e["rrrc"]["single"].items():
        s = o["modalities"][m]
        for value, text in ((s["auc"], auc), (s["stderr"], se), (s["df"], df), (s["ci"][0], lo), (s["ci"][1], hi)):
            printed(value, text, f"nested single-arm {m}")
