"""Seeded malformed inputs for the CLI fuzz test (issue 17).

Each :class:`Case` is one command line over files derived from the intact world of :mod:`bad_inputs`, with what
must happen:

- ``refuse``: exit 2 with one ``error:`` line (truncations, broken gzip streams, corrupt headers, wrong ranks and
  types, bad descriptions, unusable weights);
- ``same``: a harmless change (gzip timestamp, a header comment): exit 0 with exactly the intact input's output;
- ``ok``: a valid variant (another voxel type, an optional field left out): exit 0 with outputs on the input's grid;
- ``either``: header fields ITK interprets in its own way (qform/sform codes, pixdim under an sform): a refusal, or
  exit 0 with outputs on the grid the file describes as read.

Every case also has to leave its inputs byte-identical and no file but its declared outputs behind.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk
from bad_inputs import write_nifti

EXPECT = ("refuse", "same", "ok", "either")


@dataclass
class Case:
    """One fuzz case: ``argv`` with ``{case}`` / ``{out}`` placeholders for its input and output folders."""

    seed: int
    kind: str
    command: str
    expect: str
    argv: list[str]
    outputs: list[str] = field(default_factory=list)  # output file names (in the case's output folder)
    build: Callable[[Path], None] | None = None  # writes the case's malformed files into its input folder
    baseline: str | None = None  # key of the intact run whose outputs a "same" case must reproduce

    @property
    def name(self) -> str:
        return f"{self.seed:03d}-{self.command}-{self.kind}"


def extend_world(w: dict[str, Path]) -> dict[str, Path]:
    """Add the other formats and the raw arrays the generator draws from."""
    import gzip as _gzip

    root = w["root"]
    w["c0_raw"] = root / "c0.nii"
    w["c0_raw"].write_bytes(_gzip.decompress(w["c0"].read_bytes()))
    w["pred_raw"] = root / "pred.nii"
    w["pred_raw"].write_bytes(_gzip.decompress(w["pred"].read_bytes()))
    img = sitk.ReadImage(str(w["c0"]))
    for key, name, compress in (("c0_nrrd", "c0z.nrrd", True), ("c0_nrrd_raw", "c0.nrrd", False),
                                ("c0_mha", "c0z.mha", True), ("c0_mha_raw", "c0.mha", False)):
        w[key] = root / name
        sitk.WriteImage(img, str(w[key]), useCompression=compress)
    w["arrays"] = {k: sitk.GetArrayFromImage(sitk.ReadImage(str(w[k]))) for k in ("c0", "c1", "ref")}  # type: ignore
    return w


# ---- byte-level mutations ------------------------------------------------------------------------------------------
def _cut(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(len(data) * rng.uniform(0.02, 0.98))]


def _flip(data: bytes, lo: int, hi: int, rng: np.random.Generator) -> bytes:
    d = bytearray(data)
    i = int(rng.integers(lo, hi))
    d[i] ^= int(rng.integers(1, 256))
    return bytes(d)


# NIfTI-1 header fields: (name, offset, struct format, values, expectation)
NIFTI_FIELDS: list[tuple[str, int, str, list[Any], str]] = [
    ("sizeof_hdr", 0, "i", [0, 347, 349, 1000, -348], "refuse"),
    ("dim0", 40, "h", [0, 8, -1, 100], "refuse"),
    ("dim1", 42, "h", [0, -5, 17, 40, 15, 8], "refuse"),
    ("dim3", 46, "h", [0, -1, 32, 2], "refuse"),
    ("datatype", 70, "h", [77, 3, 0, 9999], "refuse"),
    ("bitpix", 72, "h", [0, 7, 64, 128], "refuse"),
    ("vox_offset", 108, "f", [0.0, 100.0, 1e9, float("nan"), -1.0, 353.5], "refuse"),
    ("magic", 344, "4s", [b"n+3\0", b"xxxx", b"\0\0\0\0"], "refuse"),
    ("pixdim1", 80, "f", [1e30, float("inf")], "either"),
    ("qform_code", 252, "h", [1234, -1, 0], "either"),
    ("sform_code", 254, "h", [0, 1234, -7], "either"),
    ("descrip", 148, "80s", [b"garbage \xff\xfe" * 8, b"\0" * 80], "same"),
    ("aux_file", 228, "24s", [b"whatever"], "same"),
]


def _nifti_field(raw: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    name, off, fmt, values, expect = NIFTI_FIELDS[int(rng.integers(len(NIFTI_FIELDS)))]
    value = values[int(rng.integers(len(values)))]
    d = bytearray(raw)
    struct.pack_into("<" + fmt, d, off, value)
    # the datatype 3 is not a NIfTI code; 2 (uint8) keeps bitpix 32 inconsistent: both refused
    return bytes(d), f"{name}={value!r}"[:40], expect


# ---- the generator ---------------------------------------------------------------------------------------------------
def channel_argv(command: str, world: dict[str, Path], c0: str, c1: str | None, model: str | None = None) -> list[str]:
    m = model or str(world["seg"])
    inputs = ["--input", c0] + (["--input", c1] if c1 else [])
    argv = [command, "--model", m, *inputs, "--output", "{out}/o.nii.gz"]
    if command == "explain":
        argv += ["--method", "gradcam"]
    return argv


def outputs_of(command: str) -> list[str]:
    return {"segment": ["o.nii.gz", "o.nii.gz.json"], "explain": ["o.nii.gz", "o.nii.gz.json"],
            "evaluate": ["e.json"]}[command]


def generate(world: dict[str, Path], n: int, seed: int = 17) -> list[Case]:
    """``n`` cases from ``seed``: a fixed mix of the kinds above, each drawn with its own seed."""
    kinds = [
        ("truncate-channel", 30), ("truncate-label", 20), ("truncate-other-format", 15),
        ("gzip-flip", 20), ("gzip-header-benign", 6),
        ("nifti-header", 45), ("dtype-rank", 30), ("label-map", 20), ("description", 45), ("weights", 14),
    ]
    total = sum(k for _, k in kinds)
    plan: list[str] = []
    for kind, weight in kinds:
        plan += [kind] * max(1, round(weight * n / total))
    plan = plan[:n] + [kinds[0][0]] * max(0, n - len(plan))
    cases = []
    for i, kind in enumerate(plan):
        rng = np.random.default_rng([seed, i])
        cases.append(BUILDERS[kind](i, rng, world))
    return cases


def _command(rng: np.random.Generator) -> str:
    return "segment" if rng.random() < 0.5 else "explain"


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return build


def _truncate_channel(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    src = w["c0"] if rng.random() < 0.5 else w["c0_raw"]
    name = "c0" + ("".join(src.suffixes))
    cmd = _command(rng)
    data = _cut(src.read_bytes(), rng)
    argv = channel_argv(cmd, w, "{case}/" + name, str(w["c1"]))
    return Case(i, f"truncate-{name}", cmd, "refuse", argv, outputs_of(cmd), _write(name, data))


def _truncate_label(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    src = [w["pred"], w["ref"], w["pred_raw"]][int(rng.integers(3))]
    name = "lab" + "".join(src.suffixes)
    data = _cut(src.read_bytes(), rng)
    as_pred = rng.random() < 0.5
    argv = ["evaluate", "--prediction", "{case}/" + name if as_pred else str(w["pred"]),
            "--reference", str(w["ref"]) if as_pred else "{case}/" + name, "--output", "{out}/e.json"]
    return Case(i, f"truncate-{name}", "evaluate", "refuse", argv, ["e.json"], _write(name, data))


def _truncate_other(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    key = ["c0_nrrd", "c0_mha", "c0_nrrd_raw", "c0_mha_raw", "xray"][int(rng.integers(5))]
    src = w[key]
    data = _cut(src.read_bytes(), rng)
    name = "x" + src.suffix
    if key == "xray":
        argv = ["explain", "--model", str(w["cls"]), "--input", "{case}/" + name, "--output", "{out}/o.nii.gz"]
        return Case(i, "truncate-png", "explain", "refuse", argv, outputs_of("explain"), _write(name, data))
    cmd = _command(rng)
    argv = channel_argv(cmd, w, "{case}/" + name, str(w["c1"]))
    return Case(i, f"truncate-{key}", cmd, "refuse", argv, outputs_of(cmd), _write(name, data))


def _gzip_flip(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    label = rng.random() < 0.4
    src = w["ref"] if label else w["c0"]
    data = _flip(src.read_bytes(), 10, len(src.read_bytes()), rng)
    if label:
        argv = ["evaluate", "--prediction", str(w["pred"]), "--reference", "{case}/r.nii.gz",
                "--output", "{out}/e.json"]
        return Case(i, "gzip-flip-label", "evaluate", "refuse", argv, ["e.json"], _write("r.nii.gz", data))
    cmd = _command(rng)
    argv = channel_argv(cmd, w, "{case}/c.nii.gz", str(w["c1"]))
    return Case(i, "gzip-flip", cmd, "refuse", argv, outputs_of(cmd), _write("c.nii.gz", data))


def _gzip_benign(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    data = _flip(w["c0"].read_bytes(), 4, 10, rng)  # mtime, extra flags, OS: not part of the data
    cmd = _command(rng)
    argv = channel_argv(cmd, w, "{case}/c.nii.gz", str(w["c1"]))
    return Case(i, "gzip-header-benign", cmd, "same", argv, outputs_of(cmd), _write("c.nii.gz", data), baseline=cmd)


def _nifti_header(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    data, what, expect = _nifti_field(w["c0_raw"].read_bytes(), rng)
    zipped = rng.random() < 0.5
    name = "h.nii.gz" if zipped else "h.nii"
    payload = gzip.compress(data, mtime=0) if zipped else data
    cmd = _command(rng)
    argv = channel_argv(cmd, w, "{case}/" + name, str(w["c1"]))
    return Case(i, f"nifti-{what}", cmd, expect, argv, outputs_of(cmd), _write(name, payload),
                baseline=cmd if expect == "same" else None)


def _dtype_rank(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    arr = w["arrays"]["c0"]
    variants: list[tuple[str, Callable[[], np.ndarray], str, bool]] = [
        ("complex64", lambda: arr.astype(np.complex64), "refuse", False),
        ("int8", lambda: np.clip(arr * 20, -127, 127).astype(np.int8), "ok", False),
        ("uint16", lambda: (np.abs(arr) * 1000).astype(np.uint16), "ok", False),
        ("float64", lambda: arr.astype(np.float64), "ok", False),
        ("int32", lambda: (arr * 1000).astype(np.int32), "ok", False),
        ("nan-voxel", lambda: np.where(np.arange(arr.size).reshape(arr.shape) == 77, np.nan, arr).astype(np.float32),
         "refuse", False),
        ("inf-voxel", lambda: np.where(np.arange(arr.size).reshape(arr.shape) == 5, np.inf, arr).astype(np.float32),
         "refuse", False),
        ("2d-slice", lambda: arr[0], "refuse", False),
        ("one-slice", lambda: arr[:1], "refuse", False),
        ("4d-two-channels", lambda: np.stack([arr, w["arrays"]["c1"]]), "ok", True),
        ("4d-three-channels", lambda: np.stack([arr, arr, arr]), "refuse", True),
        ("vector-3", lambda: np.stack([arr, arr, arr], -1), "refuse", True),
        ("other-grid", lambda: arr[:, :, :12], "refuse", False),
    ]
    name, make, expect, single = variants[int(rng.integers(len(variants)))]
    cmd = _command(rng)

    def build(folder: Path) -> None:
        data = make()
        if name == "vector-3":
            img = sitk.GetImageFromArray(data, isVector=True)
            sitk.WriteImage(img, str(folder / "d.nii.gz"))
        elif name.startswith("4d"):  # a 4D scalar image: channels on the 4th axis (MSD layout)
            sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(x) for x in data]), str(folder / "d.nii.gz"))
        else:
            write_nifti(folder / "d.nii.gz", data)

    argv = channel_argv(cmd, w, "{case}/d.nii.gz", None if single else str(w["c1"]))
    return Case(i, f"dtype-{name}", cmd, expect, argv, outputs_of(cmd), build)


def _label_map(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    ref = w["arrays"]["ref"]
    variants: list[tuple[str, Callable[[], np.ndarray], str]] = [
        ("fraction", lambda: ref.astype(np.float32) + 0.5, "refuse"),
        ("negative", lambda: ref.astype(np.int16) - 1, "refuse"),
        ("3e9", lambda: np.where(ref == 2, 3e9, ref).astype(np.float64), "refuse"),
        ("nan", lambda: np.where(ref == 2, np.nan, ref).astype(np.float32), "refuse"),
        ("other-grid", lambda: ref[:, :12], "refuse"),
        ("uint16", lambda: ref.astype(np.uint16), "ok"),
        ("float-integers", lambda: ref.astype(np.float32), "ok"),
    ]
    name, make, expect = variants[int(rng.integers(len(variants)))]
    as_pred = rng.random() < 0.5

    def build(folder: Path) -> None:
        write_nifti(folder / "l.nii.gz", make())

    argv = ["evaluate", "--prediction", "{case}/l.nii.gz" if as_pred else str(w["pred"]),
            "--reference", str(w["ref"]) if as_pred else "{case}/l.nii.gz", "--output", "{out}/e.json"]
    return Case(i, f"label-{name}", "evaluate", expect, argv, ["e.json"], build)


DESCRIPTION_VALUES: list[Any] = [5, "x", [], {}, None, -1, 2.5, True, [1, "a"], "zscore", [[1]], {"a": 1}]


def _description(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    base = json.loads((w["seg"] / "model.json").read_text())
    fields = ["name", "task", "spatial_dims", "channel_names", "class_names", "output", "preprocessing",
              "patch_size", "architecture", "cam_layer", "weights", "label_values", "training"]
    special = rng.random()
    desc = dict(base)
    cmd = _command(rng)
    raw: str | None = None
    if special < 0.12:
        k = int(rng.choice([1, 2, 4, 5]))
        desc["class_names"] = ["background"] + [f"l{j}" for j in range(1, k)]
        what = f"{k}-class-names"
    elif special < 0.2:
        desc["unknown_key"] = 1
        what = "unknown-key"
    elif special < 0.28:
        desc.pop(["task", "channel_names", "class_names", "spatial_dims"][int(rng.integers(4))])
        what = "missing-key"
    elif special < 0.36:
        raw = json.dumps(desc)[: int(rng.integers(1, 200))]
        what = "cut-json"
    else:
        key = fields[int(rng.integers(len(fields)))]
        value = DESCRIPTION_VALUES[int(rng.integers(len(DESCRIPTION_VALUES)))]
        desc[key] = value
        what = f"{key}={json.dumps(value)}"
    expect = "refuse"
    if raw is None and what in ("cam_layer=null", "patch_size=null", "label_values=null", "training={}",
                                "preprocessing={}", 'name="x"', 'name="zscore"'):
        expect = "ok"
    if what in ('cam_layer="x"', 'cam_layer="zscore"'):  # no such layer: harmless to segment, refused by gradcam
        expect = "ok" if cmd == "segment" else "refuse"

    def build(folder: Path) -> None:
        model = folder / "m"
        shutil.copytree(w["seg"], model)
        (model / "model.json").write_text(raw if raw is not None else json.dumps(desc))

    argv = channel_argv(cmd, w, str(w["c0"]), str(w["c1"]), model="{case}/m")
    return Case(i, f"description-{what}"[:60], cmd, expect, argv, outputs_of(cmd), build)


def _weights(i: int, rng: np.random.Generator, w: dict[str, Path]) -> Case:
    data = (w["seg"] / "weights.pt").read_bytes()
    choice = int(rng.integers(4))
    if choice == 0:
        new, what = b"", "empty"
    elif choice == 1:
        new, what = _cut(data, rng), "cut"
    elif choice == 2:
        new, what = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "random-bytes"
    else:
        new, what = _flip(data, len(data) // 4, len(data) - 200, rng), "flipped"
    cmd = _command(rng)

    def build(folder: Path) -> None:
        model = folder / "m"
        shutil.copytree(w["seg"], model)
        (model / "weights.pt").write_bytes(new)

    argv = channel_argv(cmd, w, str(w["c0"]), str(w["c1"]), model="{case}/m")
    # a flipped byte inside a tensor's data is a valid file with other weights: run, results on the input grid
    return Case(i, f"weights-{what}", cmd, "either" if what == "flipped" else "refuse", argv, outputs_of(cmd), build)


BUILDERS: dict[str, Callable[[int, np.random.Generator, dict[str, Path]], Case]] = {
    "truncate-channel": _truncate_channel,
    "truncate-label": _truncate_label,
    "truncate-other-format": _truncate_other,
    "gzip-flip": _gzip_flip,
    "gzip-header-benign": _gzip_benign,
    "nifti-header": _nifti_header,
    "dtype-rank": _dtype_rank,
    "label-map": _label_map,
    "description": _description,
    "weights": _weights,
}
