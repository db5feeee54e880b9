"""The one-page case report: rendered to PNG with pdftoppm, its text read with pdftotext, the sections checked."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import save_model, tiny_unet_model

from MedXAILib.cli import main
from MedXAILib.io import write_volume
from MedXAILib.phantoms import make_brain_phantom, make_chest_phantom
from MedXAILib.report import model_card

SECTIONS = ("Prediction", "Explanation", "Model", "Provenance", "sanity check", "stability", "training data",
            "intended use", "Not for diagnostic use", "software", "MedXAI 0.")


def _pdf_text(pdf: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext/pdftoppm not installed (apt-get install poppler-utils)")
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout


def _render(pdf: Path) -> np.ndarray:
    """Render the PDF with pdftoppm; check it is one A4 page and return the page as an RGB array."""
    from PIL import Image

    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(pdf.with_suffix(""))], check=True)
    pages = sorted(pdf.parent.glob(pdf.stem + "-*.png"))
    assert len(pages) == 1, pages  # one page
    page = np.asarray(Image.open(pages[0]).convert("RGB"))
    assert abs(page.shape[0] / page.shape[1] - 297 / 210) < 0.01  # A4 portrait
    return page


def _images_drawn(page: np.ndarray, top: float, bottom: float) -> None:
    """The image band holds pictures: many distinct grey levels and some dark (black-background) pixels."""
    band = page[int(top * page.shape[0]): int(bottom * page.shape[0])]
    assert len(np.unique(band.reshape(-1, 3), axis=0)) > 200
    assert (band.max(axis=2) < 40).mean() > 0.02


@pytest.fixture
def brain_case(tmp_path) -> dict[str, object]:
    phantom = make_brain_phantom(seed=3, shape=(32, 48, 48), spacing=4.0)
    paths = []
    for c, name in enumerate(phantom.image.channel_names or ["t1", "t1ce", "t2", "flair"]):
        paths.append(write_volume(phantom.image.channel(c), tmp_path / f"{name}.nii.gz"))
    reference = write_volume(phantom.label, tmp_path / "label.nii.gz")
    model = tiny_unet_model(channels=4, classes=4)
    model.description.channel_names = ["t1", "t1ce", "t2", "flair"]
    model.description.class_names = ["background", "necrotic core", "oedema", "enhancing rim"]
    return {"inputs": paths, "reference": reference, "model": save_model(model, tmp_path / "model")}


def test_segmentation_report_has_every_section(brain_case, tmp_path, one_torch_thread):
    out = tmp_path / "case.html"
    args = ["report", "--model", str(brain_case["model"]), "--reference", str(brain_case["reference"]),
            "--output", str(out), "--case", "phantom-3", "--progress", "none"]
    for p in brain_case["inputs"]:
        args += ["--input", str(p)]
    assert main(args) == 0
    pdf = out.with_suffix(".pdf")
    text = _pdf_text(pdf)
    for section in SECTIONS + ("Dice", "HD95", "mL", "necrotic core", "oedema", "enhancing rim", "phantom-3",
                               "axial", "coronal", "sagittal", "localisation"):
        assert section in text, section
    assert "sanity check" in text and ("PASSED" in text or "FAILED" in text)
    page = _render(pdf)
    _images_drawn(page, 0.09, 0.50)
    html = out.read_text()
    for section in ("<h2>Prediction</h2>", "<h2>Explanation</h2>", "<h2>Model</h2>", "data:image/png;base64,",
                    "Not for diagnostic use"):
        assert section in html
    summary = json.loads((tmp_path / "case.html.json").read_text())
    assert summary["task"] == "segmentation" and summary["card"]["diagnostic_use"] is False


def test_classification_report_lists_top_classes(tmp_path, one_torch_thread):
    phantom = make_chest_phantom(seed=5, findings=(1, 0, 1))
    image = write_volume(phantom.image, tmp_path / "xray.nii.gz")
    out = tmp_path / "xray.html"
    boxes = [f"{name}:{','.join(str(v) for v in box)}" for name, box in phantom.boxes.items()]
    assert boxes
    assert main(["report", "--model", "demo-chest-xray", "--input", str(image), "--output", str(out),
                 "--pdf", str(tmp_path / "page.pdf"), "--quality", "sanity", "--progress", "none",
                 *[a for b in boxes for a in ("--box", b)]]) == 0
    text = _pdf_text(tmp_path / "page.pdf")
    for section in ("Prediction", "nodule", "cardiomegaly", "effusion", "predicted", "probability", "reference box",
                    "demo-chest-xray", "synthetic phantoms", "sanity check", "Not for diagnostic use"):
        assert section in text, section
    assert "not run" in text  # stability was not asked for, and the page says so
    _images_drawn(_render(tmp_path / "page.pdf"), 0.09, 0.44)


def test_model_card_states_diagnostic_use_only_when_metadata_says_so():
    model = tiny_unet_model()
    card = model_card(model)
    assert card["diagnostic_use"] is False and card["statement"].startswith("Not for diagnostic use")
    assert card["version"].startswith("weights sha256:") and card["training_data"] == "not stated"
    model.description.training = {"version": "2.1", "data": "400 CT scans", "intended_use": "triage research",
                                  "diagnostic_use": True, "regulatory": "CE class IIa (example)"}
    card = model_card(model)
    assert card["version"] == "2.1" and card["training_data"] == "400 CT scans"
    assert card["diagnostic_use"] is True and "CE class IIa" in card["statement"]


def test_benchmark_case_report(tmp_path, one_torch_thread):
    """`report --benchmark RUN --case ID` shows the run's stored map and numbers for that case."""
    from MedXAILib.volume import Volume, make_ijk_to_ras

    model = tiny_unet_model(channels=1, classes=2)
    model.description.channel_names = ["ct"]
    model.description.class_names = ["background", "liver"]
    folder = save_model(model, tmp_path / "model")
    rows = ["case_id,patient_id,image:ct,label"]
    geom = make_ijk_to_ras((1.5, 1.5, 3.0))
    for n in range(2):
        rng = np.random.default_rng(n)
        img = rng.normal(size=(1, 8, 24, 24)).astype(np.float32)
        lab = np.zeros((1, 8, 24, 24), np.int16)
        lab[0, 2:6, 6 + n: 14 + n, 8:16] = 1
        img[lab > 0] += 2.0
        write_volume(Volume(img, geom), tmp_path / f"c{n}.nii.gz")
        write_volume(Volume(lab, geom), tmp_path / f"c{n}_seg.nii.gz")
        rows.append(f"c{n},p{n},c{n}.nii.gz,c{n}_seg.nii.gz")
    (tmp_path / "cohort.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    assert main(["benchmark", "--dataset", f"csv:{tmp_path / 'cohort.csv'}", "--model", str(folder), "--methods",
                 "gradcam", "--metrics", "localisation,sanity", "--folds", "2", "--sanity-stages", "2",
                 "--output", str(run), "--progress", "none"]) == 0
    out = tmp_path / "c1.html"
    assert main(["report", "--benchmark", str(run), "--case", "c1", "--output", str(out), "--progress", "none"]) == 0
    stored = json.loads((run / "units" / "c1__gradcam.json").read_text())
    text = _pdf_text(out.with_suffix(".pdf"))
    for section in SECTIONS[:4] + ("Dice", "HD95", "c1", "benchmark", "liver"):
        assert section in text, section
    verdict = "PASSED" if stored["sanity_passed"] else "FAILED"
    assert f"{verdict}: SSIM to the randomised model's map {stored['sanity_ssim']:.3g}" in " ".join(text.split())
    _images_drawn(_render(out.with_suffix(".pdf")), 0.09, 0.50)
    assert main(["report", "--benchmark", str(run), "--case", "nope", "--output", str(tmp_path / "x.html"),
                 "--progress", "none"]) == 2
