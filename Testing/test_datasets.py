"""Dataset readers: tiny fake layouts of every published format, plus the shared real cases when present."""

from __future__ import annotations

import csv
import gzip
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import MedXAILib
from MedXAILib.datasets import (
    BRAIN_CHANNELS,
    CHESTXRAY14_FINDINGS,
    PHANTOM_SEED_BASE,
    Case,
    open_dataset,
)
from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = Path(os.environ.get("MEDXAI_TEST_DATA", REPO.parent / "shared" / "medxai-test-data"))
SHAPE = (3, 4, 5)  # (K, J, I)

NIH_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
NIH_BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"


# ---- helpers -------------------------------------------------------------------------------------------------------
def write_nifti(path: Path, value: float, dtype: type = np.float32, shape: tuple[int, int, int] = SHAPE) -> Path:
    """A constant 3D NIfTI whose value tells which file it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.full(shape, value, dtype=dtype))
    img.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(img, str(path))
    return path


def write_label(path: Path, values: list[int]) -> Path:
    arr = np.zeros(SHAPE, dtype=np.uint8)
    for n, v in enumerate(values):
        arr.flat[n] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def write_png(path: Path, size: int = 8, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((size, size), value, dtype=np.uint8)), str(path))
    return path


def first_voxels(vol: Volume) -> list[float]:
    return [float(v) for v in vol.array[:, 0, 0, 0]]


# ---- BraTS 2021 ------------------------------------------------------------------------------------------------------
BRATS21_VALUES = {"t1": 1.0, "t1ce": 2.0, "t2": 3.0, "flair": 4.0}


def make_brats2021(root: Path) -> None:
    for case in ("BraTS2021_00002", "BraTS2021_00000"):
        for mod, v in BRATS21_VALUES.items():
            write_nifti(root / case / f"{case}_{mod}.nii.gz", v)
        write_label(root / case / f"{case}_seg.nii.gz", [0, 1, 2, 4])
    # a case whose files lie directly in root, without seg
    for mod, v in BRATS21_VALUES.items():
        write_nifti(root / f"BraTS2021_00005_{mod}.nii.gz", v)
    # a case missing its t2, and macOS junk that must be ignored
    for mod in ("t1", "t1ce", "flair"):
        write_nifti(root / "BraTS2021_00009" / f"BraTS2021_00009_{mod}.nii.gz", 1.0)
    (root / "BraTS2021_00000" / "._BraTS2021_00000_t1.nii.gz").write_bytes(b"junk")


def test_brats2021_lists_cases_channels_and_labels(tmp_path: Path) -> None:
    make_brats2021(tmp_path)
    ds = open_dataset(f"brats2021:{tmp_path}")
    assert [c.case_id for c in ds] == ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00005"]
    assert [c.patient_id for c in ds] == [c.case_id for c in ds]
    assert ds.task == "segmentation" and ds.channel_names == BRAIN_CHANNELS
    assert ds.regions == {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    assert ds.n_listed == 4 and any("BraTS2021_00009" in n and "t2" in n for n in ds.notes)
    c0 = ds["BraTS2021_00000"]
    assert [p.name for p in c0.image_paths] == [f"BraTS2021_00000_{m}.nii.gz" for m in BRAIN_CHANNELS]
    assert c0.label_path is not None and c0.label_path.name == "BraTS2021_00000_seg.nii.gz"
    assert ds["BraTS2021_00005"].label_path is None
    image, ref = c0.load()
    assert image.channel_names == BRAIN_CHANNELS
    assert first_voxels(image) == [1.0, 2.0, 3.0, 4.0]
    assert isinstance(ref, Volume) and ref.array.dtype == np.int16
    assert sorted(np.unique(ref.array).tolist()) == [0, 1, 2, 4]
    image5, ref5 = ds["BraTS2021_00005"].load()
    assert ref5 is None and image5.shape == SHAPE


def test_listing_reads_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_brats2021(tmp_path)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was read while listing")

    monkeypatch.setattr(sitk, "ReadImage", boom)
    ds = open_dataset(f"brats2021:{tmp_path}")
    assert len(ds) == 3


# ---- BraTS 2023 ------------------------------------------------------------------------------------------------------
def test_brats2023_time_points_share_a_patient(tmp_path: Path) -> None:
    values = {"t1n": 1.0, "t1c": 2.0, "t2w": 3.0, "t2f": 4.0}
    for case, with_seg in (
        ("BraTS-GLI-00001-000", True),
        ("BraTS-GLI-00001-001", False),
        ("BraTS-GLI-00007-000", True),
    ):
        for mod, v in values.items():
            write_nifti(tmp_path / case / f"{case}-{mod}.nii.gz", v, dtype=np.int16)
        if with_seg:
            write_label(tmp_path / case / f"{case}-seg.nii.gz", [1, 2, 3])
    ds = open_dataset(f"brats2023:{tmp_path}")
    assert [c.case_id for c in ds] == ["BraTS-GLI-00001-000", "BraTS-GLI-00001-001", "BraTS-GLI-00007-000"]
    assert [c.patient_id for c in ds] == ["BraTS-GLI-00001", "BraTS-GLI-00001", "BraTS-GLI-00007"]
    assert ds.patient_ids == ["BraTS-GLI-00001", "BraTS-GLI-00007"]
    assert ds["BraTS-GLI-00001-001"].label_path is None
    assert ds.regions["TC"] == (1, 3) and ds.label_names[3] == "enhancing tumour"
    c = ds[0]
    assert [p.name.split("-")[-1] for p in c.image_paths] == ["t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz", "t2f.nii.gz"]
    image, ref = c.load()
    assert image.channel_names == BRAIN_CHANNELS and first_voxels(image) == [1.0, 2.0, 3.0, 4.0]
    assert image.array.dtype == np.float32
    assert isinstance(ref, Volume) and int(ref.array.max()) == 3
    assert ds["BraTS-GLI-00001-001"].load()[1] is None


# ---- MSD Task01 ------------------------------------------------------------------------------------------------------
def make_msd(root: Path, cases: list[str], listed_missing: str | None = None) -> None:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in cases:
        # file channel c holds 10 + c: FLAIR=10, T1w=11, t1gd=12, T2w=13
        vols = [sitk.GetImageFromArray(np.full(SHAPE, 10.0 + c, dtype=np.float32)) for c in range(4)]
        sitk.WriteImage(sitk.JoinSeries(vols), str(root / "imagesTr" / f"{case}.nii.gz"))
        write_label(root / "labelsTr" / f"{case}.nii.gz", [1, 2, 3])
    # the Decathlon tarball ships macOS resource forks: they must not become cases
    (root / "imagesTr" / f"._{cases[0]}.nii.gz").write_bytes(b"junk")
    listed = cases + ([listed_missing] if listed_missing else [])
    info = {
        "name": "BRATS",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": len(listed),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in listed],
        "test": ["./imagesTs/BRATS_485.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(info))


def test_msd_maps_4d_channels_to_names(tmp_path: Path) -> None:
    make_msd(tmp_path, ["BRATS_002", "BRATS_001"], listed_missing="BRATS_003")
    ds = open_dataset(f"msd:{tmp_path}")
    assert [c.case_id for c in ds] == ["BRATS_001", "BRATS_002"]
    assert ds.n_listed == 3 and any("1 of 3" in n for n in ds.notes)
    assert ds.channel_names == BRAIN_CHANNELS
    assert ds.label_names[1] == "edema" and ds.regions == {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}
    c = ds[0]
    assert c.patient_id == "BRATS_001" and c.channel_indices == [1, 2, 3, 0]
    assert c.label_path == (tmp_path / "labelsTr" / "BRATS_001.nii.gz").resolve()
    image, ref = c.load()
    assert image.channel_names == BRAIN_CHANNELS
    assert first_voxels(image) == [11.0, 12.0, 13.0, 10.0]  # t1, t1ce, t2, flair
    assert isinstance(ref, Volume) and ref.shape == image.shape
    flair_first = c.with_channels(["flair", "t1"])
    assert first_voxels(flair_first.load_image()) == [10.0, 11.0]
    with pytest.raises(InputError, match="no dwi channel"):
        c.with_channels(["dwi"])


def test_msd_without_dataset_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(InputError, match="dataset.json"):
        open_dataset(f"msd:{tmp_path}")


# ---- ChestX-ray14 ----------------------------------------------------------------------------------------------------
def make_chestxray14(root: Path, gz: bool = True) -> None:
    rows = [
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143",
        "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
        "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171",
        "00000003_000.png,Hernia,0,3,81,F,PA,2582,2991,0.143,0.143",
        "00000004_000.png,Infiltration|Mass,0,4,82,M,AP,2500,2048,0.168,0.168",  # listed, not on disk
    ]
    text = NIH_ENTRY_HEADER + "\n" + "\n".join(rows) + "\n"
    if gz:
        with gzip.open(root / "Data_Entry_2017_v2020.csv.gz", "wt") as fh:
            fh.write(text)
    else:
        (root / "Data_Entry_2017.csv").write_text(text)
    boxes = [
        "00000001_000.png,Cardiomegaly,100.5,200.25,300,400",
        "00000003_000.png,Infiltrate,10,20,30,40",
        "00000003_000.png,Hernia,1,2,3,4",
        "00009999_000.png,Mass,1,1,1,1",
    ]
    (root / "BBox_List_2017.csv").write_text(NIH_BBOX_HEADER + "\n" + "\n".join(boxes) + "\n")
    write_png(root / "images_001" / "images" / "00000001_000.png", value=10)
    write_png(root / "images_001" / "images" / "00000001_001.png", value=20)
    write_png(root / "images_002" / "images" / "00000002_000.png", value=30)
    write_png(root / "images" / "00000003_000.png", value=40)
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000003_000.png\n00000004_000.png\n")
    (root / "test_list.txt").write_text("00000002_000.png\n")


@pytest.mark.parametrize("gz", [True, False])
def test_chestxray14_labels_patients_boxes(tmp_path: Path, gz: bool) -> None:
    make_chestxray14(tmp_path, gz=gz)
    ds = open_dataset(f"chestxray14:{tmp_path}")
    assert ds.task == "classification" and ds.findings == CHESTXRAY14_FINDINGS
    assert [c.case_id for c in ds] == ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"]
    assert ds.n_listed == 5 and "lists 5 image(s); 4 found on disk" in ds.notes[0]
    assert [c.patient_id for c in ds] == ["1", "1", "2", "3"]
    c1 = ds["00000001_001.png"]
    assert set(c1.labels) == set(CHESTXRAY14_FINDINGS)
    assert {k for k, v in c1.labels.items() if v} == {"Cardiomegaly", "Emphysema"}
    assert not any(ds["00000002_000.png"].labels.values())  # "No Finding" is no finding
    assert ds["00000001_000.png"].boxes == {"Cardiomegaly": (100.5, 200.25, 300.0, 400.0)}
    # BBox_List_2017 spells Infiltration "Infiltrate"
    assert ds["00000003_000.png"].boxes == {"Infiltration": (10.0, 20.0, 30.0, 40.0), "Hernia": (1.0, 2.0, 3.0, 4.0)}
    assert ds["00000002_000.png"].boxes == {}
    assert ds["00000001_000.png"].boxes_for((512, 512)) == {"Cardiomegaly": (50.25, 100.125, 150.0, 200.0)}
    assert ds.official_split == {
        "train_val": ["00000001_000.png", "00000001_001.png", "00000003_000.png"],
        "test": ["00000002_000.png"],
    }
    assert ds["00000001_001.png"].meta["view"] == "PA" and ds["00000001_001.png"].meta["follow_up"] == "1"
    image, labels = ds["00000002_000.png"].load()
    assert image.shape == (1, 8, 8) and image.channel_names == ["xray"] and image.array[0, 0, 0, 0] == 30
    assert labels == ds["00000002_000.png"].labels


def test_chestxray14_refuses_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "Data_Entry_2017.csv").write_text(NIH_ENTRY_HEADER + "\n00000001_000.png,Mass,0,1,1,M,PA,1,1,1,1\n")
    with pytest.raises(InputError, match="lists 1 image") as err:
        open_dataset(f"chestxray14:{tmp_path}")
    assert "images/" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="Data_Entry_2017"):
        open_dataset(f"chestxray14:{empty}")


# ---- DeepMedic BRATS 2015 --------------------------------------------------------------------------------------------
def test_deepmedic_layout(tmp_path: Path) -> None:
    for subset, case in (("train", "brats_2013_pat0005_1"), ("test", "brats_2013_pat0001_1"),
                         ("test", "brats_tcia_pat123_0083"), ("train", "brats_tcia_pat123_0090")):  # fmt: skip
        write_nifti(tmp_path / subset / case / "Flair_subtrMeanDivStd.nii.gz", 5.0)
        write_nifti(tmp_path / subset / case / "T1c_subtrMeanDivStd.nii.gz", 6.0)
        write_label(tmp_path / subset / case / "OTMultiClass.nii.gz", [1, 2, 3, 4])
    ds = open_dataset(f"deepmedic:{tmp_path}")
    assert len(ds) == 4 and ds.channel_names == ["flair", "t1ce"]
    by_id = {c.case_id: c for c in ds}
    assert by_id["brats_2013_pat0005_1"].patient_id == "brats_2013_pat0005"
    # two scans of one TCIA patient share the patient id
    assert by_id["brats_tcia_pat123_0083"].patient_id == by_id["brats_tcia_pat123_0090"].patient_id
    assert ds.official_split["test"] == ["brats_2013_pat0001_1", "brats_tcia_pat123_0083"]
    assert ds.label_names[3] == "non-enhancing tumour" and ds.regions["TC"] == (1, 3, 4)
    image, ref = by_id["brats_2013_pat0001_1"].load()
    assert image.channel_names == ["flair", "t1ce"] and first_voxels(image) == [5.0, 6.0]
    assert isinstance(ref, Volume) and sorted(np.unique(ref.array).tolist()) == [0, 1, 2, 3, 4]


# ---- CSV manifest ----------------------------------------------------------------------------------------------------
def test_csv_manifest_segmentation_and_findings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_nifti(data / "a_t1.nii.gz", 1.0)
    write_nifti(data / "a_t2.nii.gz", 2.0)
    write_label(data / "a_seg.nii.gz", [1])
    write_nifti(data / "b_t1.nii.gz", 1.0)
    write_nifti(data / "b_t2.nii.gz", 2.0)
    manifest = tmp_path / "cohort.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "patient_id", "image:t2", "image:t1", "label", "site"])
        w.writerow(["a", "P1", "data/a_t2.nii.gz", "data/a_t1.nii.gz", "data/a_seg.nii.gz", "x"])
        w.writerow(["b", "P1", "data/b_t2.nii.gz", str(data / "b_t1.nii.gz"), "", "y"])
    ds = open_dataset(f"csv:{manifest}")
    assert ds.channel_names == ["t2", "t1"] and [c.patient_id for c in ds] == ["P1", "P1"]
    a, b = ds.cases
    assert a.label_path == data / "a_seg.nii.gz" and b.label_path is None and a.meta["site"] == "x"
    image, ref = a.load()
    assert first_voxels(image) == [2.0, 1.0] and image.channel_names == ["t2", "t1"]
    assert isinstance(ref, Volume)

    write_png(data / "x1.png")
    cls = tmp_path / "cls.csv"
    cls.write_text(
        "case_id,patient_id,image,Nodule,Effusion,box:Nodule\nx1,7,data/x1.png,1,0,1.5 2 3 4\nx2,7,data/x1.png,0,1,\n"
    )
    ds2 = open_dataset(f"csv:{cls}")
    assert ds2.task == "classification" and ds2.findings == ["Nodule", "Effusion"]
    assert ds2[0].labels == {"Nodule": 1, "Effusion": 0} and ds2[0].boxes == {"Nodule": (1.5, 2.0, 3.0, 4.0)}
    assert ds2[1].boxes == {}
    _, labels = ds2[1].load()
    assert labels == {"Nodule": 0, "Effusion": 1}


def test_csv_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("case_id,image\na,a.nii.gz\n")
    with pytest.raises(InputError, match="patient_id"):
        open_dataset(f"csv:{bad}")
    bad.write_text("case_id,patient_id,image\na,1,missing.nii.gz\n")
    with pytest.raises(InputError, match="do not exist"):
        open_dataset(f"csv:{bad}")
    write_nifti(tmp_path / "a.nii.gz", 1.0)
    bad.write_text("case_id,patient_id,image\na,1,a.nii.gz\na,2,a.nii.gz\n")
    with pytest.raises(InputError, match="twice"):
        open_dataset(f"csv:{bad}")
    with pytest.raises(InputError, match="file not found"):
        open_dataset(f"csv:{tmp_path / 'nope.csv'}")


# ---- phantoms --------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_phantoms(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A stand-in ``MedXAILib.phantoms`` that records the seeds it is asked for."""
    seeds: list[int] = []
    mod = types.ModuleType("MedXAILib.phantoms")

    def make_brain_phantom(seed: int) -> types.SimpleNamespace:
        seeds.append(seed)
        image = Volume(np.full((4, 2, 3, 3), float(seed), np.float32), channel_names=BRAIN_CHANNELS)
        return types.SimpleNamespace(image=image, label=image.with_array(np.ones((1, 2, 3, 3), np.int16), ["label"]))

    def make_chest_phantom(seed: int) -> types.SimpleNamespace:
        seeds.append(seed)
        image = Volume(np.zeros((1, 1, 8, 8), np.float32), channel_names=["xray"])
        return types.SimpleNamespace(image=image, labels=np.array([1, 0, 1]), boxes={"nodule": (1, 2, 3, 4)})

    mod.make_brain_phantom = make_brain_phantom  # type: ignore[attr-defined]
    mod.make_chest_phantom = make_chest_phantom  # type: ignore[attr-defined]
    mod.CHEST_FINDINGS = ["nodule", "cardiomegaly", "effusion"]  # type: ignore[attr-defined]
    mod.BRAIN_LABELS = ["background", "necrotic core", "oedema", "enhancing rim"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "MedXAILib.phantoms", mod)
    monkeypatch.setattr(MedXAILib, "phantoms", mod, raising=False)
    return seeds


def test_phantom_cases_are_lazy_and_seeded(fake_phantoms: list[int]) -> None:
    ds = open_dataset("phantom:12")
    assert len(ds) == 12 and fake_phantoms == []  # nothing generated by listing
    assert [c.patient_id for c in ds] == [c.case_id for c in ds]
    assert len(set(c.case_id for c in ds)) == 12
    assert [c.meta["seed"] for c in ds] == [PHANTOM_SEED_BASE + i for i in range(12)]
    assert min(c.meta["seed"] for c in ds) >= 10_000  # disjoint from the demo models' training seeds
    assert ds.task == "segmentation" and ds.channel_names == BRAIN_CHANNELS
    assert ds.label_names[3] == "enhancing rim" and ds.regions["TC"] == (1, 3)
    image, ref = ds[3].load()
    assert fake_phantoms == [10_003] and image.array[0, 0, 0, 0] == 10_003
    assert isinstance(ref, Volume) and ref.array.dtype == np.int16
    assert open_dataset("phantom-brain:2")[1].meta["seed"] == 10_001


def test_chest_phantom_fills_truth_on_load(fake_phantoms: list[int]) -> None:
    ds = open_dataset("phantom-chest:3")
    assert ds.task == "classification" and ds.findings == ["nodule", "cardiomegaly", "effusion"]
    c = ds[2]
    assert c.labels is None
    image, labels = c.load()
    assert labels == {"nodule": 1, "cardiomegaly": 0, "effusion": 1}
    assert c.labels == labels and c.boxes == {"nodule": (1.0, 2.0, 3.0, 4.0)}
    assert fake_phantoms == [10_002] and image.channel_names == ["xray"]


def test_real_phantom_module_round_trip() -> None:
    pytest.importorskip("MedXAILib.phantoms", reason="MedXAILib.phantoms is not written yet")
    from MedXAILib import phantoms

    if not hasattr(phantoms, "make_brain_phantom"):
        pytest.skip("MedXAILib.phantoms has no make_brain_phantom yet")
    image, ref = open_dataset("phantom:1")[0].load()
    assert image.n_channels == 4 and isinstance(ref, Volume) and ref.same_geometry(image)
    direct = phantoms.make_brain_phantom(PHANTOM_SEED_BASE)
    np.testing.assert_array_equal(image.array, direct.image.array)


# ---- errors ----------------------------------------------------------------------------------------------------------
def test_errors_name_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="KIND one of") as err:
        open_dataset(f"brats2020:{tmp_path}")
    assert "brats2021:DIR expects" in str(err.value) and "chestxray14:DIR expects" in str(err.value)
    with pytest.raises(InputError, match="KIND one of"):
        open_dataset(str(tmp_path))
    with pytest.raises(InputError, match="folder not found.*BraTS2021_00000_"):
        open_dataset(f"brats2021:{tmp_path / 'missing'}")
    with pytest.raises(InputError, match="no case found.*BraTS-GLI-00000-000"):
        open_dataset(f"brats2023:{tmp_path}")
    with pytest.raises(InputError, match="no case found.*OTMultiClass"):
        open_dataset(f"deepmedic:{tmp_path}")
    for bad in ("phantom:0", "phantom:x", "phantom-chest:-2"):
        with pytest.raises(InputError, match="positive integer"):
            open_dataset(bad)


def test_case_without_generator_or_truth() -> None:
    c = Case("c", "p", image_paths=[Path("/nonexistent.nii.gz")])
    assert c.task is None
    with pytest.raises(InputError, match="not found"):
        c.load()


# ---- real shared data ------------------------------------------------------------------------------------------------
def need_real(sub: str) -> Path:
    path = TEST_DATA / sub
    if not path.is_dir():
        pytest.skip(f"real test data {path} not present (set MEDXAI_TEST_DATA to the medxai-test-data folder)")
    return path


@pytest.mark.slow
def test_real_deepmedic_six_cases() -> None:
    ds = open_dataset(f"deepmedic:{need_real('deepmedic-brats2015')}")
    assert len(ds) == 6 and len(ds.patient_ids) == 6
    assert all(c.channel_names == ["flair", "t1ce"] and c.label_path is not None for c in ds)
    assert set(ds.official_split) == {"train", "validation", "test"}
    image, ref = ds["brats_2013_pat0001_1"].load()
    assert image.shape == (155, 240, 240) and image.n_channels == 2
    assert isinstance(ref, Volume) and set(np.unique(ref.array).tolist()) <= {0, 1, 2, 3, 4}
    assert int((ref.array > 0).sum()) > 1000


def test_real_chestxray14_fifty_images_official_labels() -> None:
    root = need_real("nih-chestxray14")
    ds = open_dataset(f"chestxray14:{root}")
    assert len(ds) == 50 and ds.n_listed > 100_000
    # the derived labels.csv holds the same official labels, one 0/1 column per finding
    with open(root / "labels.csv", newline="") as fh:
        expected = {row["Image Index"]: row for row in csv.DictReader(fh)}
    assert set(expected) == {c.case_id for c in ds}
    for c in ds:
        row = expected[c.case_id]
        assert c.patient_id == str(int(row["Patient ID"]))
        assert c.labels == {f: int(row[f]) for f in CHESTXRAY14_FINDINGS}
    with_boxes = [c for c in ds if c.boxes]
    assert len(with_boxes) == 12
    with open(root / "bboxes.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            finding = "Infiltration" if row["Finding Label"] == "Infiltrate" else row["Finding Label"]
            box = ds[row["Image Index"]].boxes[finding]
            np.testing.assert_allclose(box, [float(row[k]) for k in "xywh"])
            assert ds[row["Image Index"]].labels[finding] == 1  # every box is on a labelled finding
    image, _ = with_boxes[0].load()
    assert image.shape == (1, 1024, 1024) and image.n_channels == 1


@pytest.mark.slow
def test_real_brats2023_case_without_seg() -> None:
    ds = open_dataset(f"brats2023:{need_real('brainlesion-tutorials')}")
    assert [c.case_id for c in ds] == ["BraTS-GLI-00001-000"]
    c = ds[0]
    assert c.patient_id == "BraTS-GLI-00001" and c.label_path is None
    assert c.channel_names == BRAIN_CHANNELS
    assert [p.name[-10:] for p in c.image_paths] == ["t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz", "t2f.nii.gz"]
    image, ref = c.load()
    assert ref is None and image.n_channels == 4 and image.shape == (155, 240, 240)
