"""What the panel offers: the models (``models --json``) and each method's parameters (``methods --json``).

Both lists come from the CLI, so the panel offers exactly what the installed core supports:

- ``python -m MedXAILib models --json`` prints ``{"models": [{"name", "source", "task", "spatial_dims", "channels",
  "classes", "card"}, …]}``. A core without that command makes the list fall back to the built-in models, read from
  their description files (``MedXAILib/builtin_models/*.json``; no torch needed).
- A model file or folder (TorchScript, checkpoint, MONAI bundle, nnU-Net results) is described by loading it in a
  child process with the core's own loader (:data:`DESCRIBE_SCRIPT`), so its task, channels and classes come from
  its adapter whatever the format.
- ``python -m MedXAILib methods --json`` gives each method's parameters and defaults; :func:`parameter_specs` turns
  them into widget specifications (type, default, range, choices, help) and :func:`method_arguments` turns the
  values a user set back into ``--param key=value`` flags.

Pure Python (no Slicer, no Qt, no torch).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

TASKS = ("segmentation", "classification")

#: Run in a child (``python -c``): describe a model file or folder with the core's own loader, print one JSON line.
DESCRIBE_SCRIPT = """
import json, sys
from pathlib import Path
from MedXAILib.errors import MedXAIError
try:
    from MedXAILib.models import load_model
    model = load_model(sys.argv[1], device="cpu")
    d = model.description
except MedXAIError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
from MedXAILib.models.nnunet_folder import is_nnunet_folder
try:
    card = model.card()
except Exception:
    card = getattr(d, "card", None) or {}
path = Path(sys.argv[1])
source = "nnunet" if path.is_dir() and is_nnunet_folder(path) else "bundle" if path.is_dir() else "file"
print(json.dumps({"model": {"name": d.name, "load": sys.argv[1], "source": source, "task": d.task,
                            "spatial_dims": d.spatial_dims, "channels": list(d.channel_names),
                            "classes": list(d.class_names),
                            "label_values": list(d.label_values) if d.label_values else None,
                            "card": card if isinstance(card, dict) else {}}}, default=str))
"""


@dataclass
class ModelEntry:
    """One model the panel can run.

    Attributes:
        name: what ``--model`` takes (a built-in or zoo name, ``totalsegmentator:TASK``, or a path): the record's
            ``load`` field (its ``name`` when it has none). The panel keys its list and the parameter node on it.
        source: ``builtin``, ``cached``, ``zoo``, ``bundle``, ``nnunet``, ``totalsegmentator`` or ``file``.
        task: ``segmentation`` or ``classification``.
        spatial_dims: 2 or 3.
        channels: the input channel names, in order (one input row each).
        classes: the class names, in output order (index 0 is background for segmentation).
        card: the model card (name, version, training data, intended use, …) as the CLI reports it.
        label_values: the value each class takes in label maps when it is not its index (BraTS: 0, 1, 2, 4).
    """

    name: str
    source: str
    task: str
    spatial_dims: int
    channels: list[str]
    classes: list[str]
    card: dict[str, Any] = field(default_factory=dict)
    label_values: list[int] | None = None
    title: str = ""

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    @property
    def display_name(self) -> str:
        """The name shown in the model list (the catalogue's ``name``; ``total`` for ``totalsegmentator:total``)."""
        return self.title or self.name

    @property
    def is_nnunet(self) -> bool:
        """An nnU-Net results folder or a TotalSegmentator task (folds, checkpoint and mirroring apply)."""
        return self.source in ("nnunet", "totalsegmentator")

    @property
    def parts(self) -> list[str]:
        """The nnU-Net models a TotalSegmentator task is made of (one dataset each; empty for other models)."""
        parts = (self.card or {}).get("parts")
        return [str(p) for p in parts] if isinstance(parts, list) else []

    @property
    def needs_class_target(self) -> bool:
        """A task of several nnU-Net models: the class (the organ) picks the model that runs (``--target``)."""
        return self.source == "totalsegmentator" and len(self.parts) > 1

    def target_classes(self) -> list[str]:
        """Classes a user can choose as a target (a segmentation model's background left out)."""
        if self.task == "segmentation" and self.classes and self.classes[0].lower() in ("background", "bg"):
            return self.classes[1:]
        return list(self.classes)

    def label_names(self) -> dict[int, str]:
        """``{label value: class name}`` of a segmentation model's label map, background left out."""
        if self.task != "segmentation":
            return {}
        values = self.label_values if self.label_values and len(self.label_values) == len(self.classes) else None
        pairs = zip(values, self.classes) if values else enumerate(self.classes)
        return {int(v): name for v, name in pairs if int(v) != 0}

    def summary(self) -> str:
        """One line for the model list's tooltip: task, inputs, classes and where it comes from."""
        dims = f"{self.spatial_dims}D"
        inputs = ", ".join(self.channels) or "?"
        classes = ", ".join(self.target_classes()) or "?"
        line = f"{self.task} ({dims}) · inputs: {inputs} · classes: {classes} · source: {self.source}"
        card = self.card or {}
        for key, label in (("version", "version"), ("training_data", "trained on"), ("intended_use", "use")):
            if card.get(key):
                line += f" · {label}: {card[key]}"
        return line

    def card_rows(self, card: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """The model card as ``(label, text)`` rows for the panel (``card``: the one a run reported, else the
        catalogue's); entries the card does not have are left out, an unknown one reads "unknown"."""
        card = dict(card or self.card or {})
        rows = [("task", f"{self.task}, {self.spatial_dims}D"), ("inputs", ", ".join(self.channels) or "?"),
                ("classes", ", ".join(self.target_classes()) or "?")]
        for key, label in CARD_FIELDS:
            value = card.get(key)
            if value not in (None, "", [], {}):
                rows.append((label, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
        rows.append(("source", self.source))
        return rows


#: Model-card entries shown in the panel, in order: (key in the card, label).
CARD_FIELDS = (("name", "name"), ("version", "version"), ("training_data", "trained on"),
               ("intended_use", "intended use"), ("limitations", "limitations"), ("parts", "models"),
               ("folds", "folds"), ("configuration", "configuration"))


def entry_from_dict(data: Mapping[str, Any]) -> ModelEntry:
    """A :class:`ModelEntry` from one record of ``models --json`` (or of :data:`DESCRIBE_SCRIPT`).

    Raises:
        ValueError: a required field is missing or invalid (the message names it).
    """
    title = str(data.get("name") or "").strip()
    name = str(data.get("load") or title).strip()
    if not name:
        raise ValueError("a model record without a name")
    task = data.get("task")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")
    channels = data.get("channels", data.get("channel_names"))
    classes = data.get("classes", data.get("class_names"))
    if not isinstance(channels, list) or not channels:
        raise ValueError(f"model {name!r}: no channel names")
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"model {name!r}: no class names")
    dims = int(data.get("spatial_dims") or 3)
    card = data.get("card") if isinstance(data.get("card"), dict) else {}
    values = data.get("label_values")
    values = [int(v) for v in values] if isinstance(values, list) and len(values) == len(classes) else None
    return ModelEntry(name, str(data.get("source") or "file"), str(task), dims, [str(c) for c in channels],
                      [str(c) for c in classes], dict(card), values, title if title != name else "")


def parse_models_json(text: str) -> list[ModelEntry]:
    """The entries of ``models --json`` output; records that are not valid are skipped.

    Raises:
        ValueError: the text holds no ``{"models": [...]}`` object.
    """
    data = _last_json_object(text)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValueError("`models --json` printed no {\"models\": [...]} object")
    out = []
    for record in data["models"]:
        if isinstance(record, dict):
            try:
                out.append(entry_from_dict(record))
            except ValueError:
                continue
    return out


def parse_describe_json(text: str) -> ModelEntry:
    """The entry printed by :data:`DESCRIBE_SCRIPT`.

    Raises:
        ValueError: nothing valid was printed.
    """
    data = _last_json_object(text)
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError("the model description printed nothing readable")
    return entry_from_dict(data["model"])


def _last_json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def builtin_models_folder() -> Path | None:
    """The core's ``builtin_models`` folder (None when the core is not importable)."""
    spec = importlib.util.find_spec("MedXAILib")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "builtin_models"
    return folder if folder.is_dir() else None


def builtin_entries(folder: Path | None = None) -> list[ModelEntry]:
    """The built-in models, read from their description files (the fallback list; no torch needed)."""
    folder = folder or builtin_models_folder()
    out = []
    for path in sorted(folder.glob("*.json")) if folder else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entry = entry_from_dict({**data, "source": "builtin"})
        except (OSError, ValueError, TypeError):
            continue
        out.append(entry)
    return out


def is_missing_command(stderr: Sequence[str], command: str = "models") -> bool:
    """Did the CLI reject ``command`` as unknown (an older core)?"""
    text = "\n".join(stderr)
    return "invalid choice" in text and repr(command) in text or f"unknown command {command}" in text


# ---- method parameters ---------------------------------------------------------------------------------------------
@dataclass
class ParameterSpec:
    """One method parameter as a widget: ``kind`` is ``bool``, ``int``, ``float``, ``choice`` or ``str``."""

    name: str
    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] = field(default_factory=list)
    help: str = ""


def _spec(name: str, value: Any) -> ParameterSpec:
    """A spec from ``methods --json``: a bare default, or ``{"default", "type", "min", "max", "choices", "help"}``."""
    if isinstance(value, dict) and "default" in value:
        default = value.get("default")
        kind = str(value.get("type") or "").lower()
        choices = [str(c) for c in value.get("choices") or []]
        spec = ParameterSpec(name, kind, default, value.get("min", value.get("minimum")),
                             value.get("max", value.get("maximum")), choices, str(value.get("help") or ""))
    else:
        spec = ParameterSpec(name, "", value)
    if spec.choices:
        spec.kind = "choice"
    if spec.kind not in ("bool", "int", "float", "choice", "str"):
        default = spec.default
        spec.kind = ("bool" if isinstance(default, bool) else "int" if isinstance(default, int)
                     else "float" if isinstance(default, float) else "str")
    if spec.kind in ("int", "float") and spec.minimum is None:
        spec.minimum = 0.0 if isinstance(spec.default, (int, float)) and spec.default >= 0 else -1e9
    if spec.kind in ("int", "float") and spec.maximum is None:
        spec.maximum = 1e9
    if spec.kind == "str" and isinstance(spec.default, list):
        spec.default = ",".join(str(v) for v in spec.default)
    return spec


def parse_methods_json(text: str) -> dict[str, dict[str, Any]]:
    """``{method name: record}`` from ``methods --json``.

    Raises:
        ValueError: no ``{"methods": [...]}`` object.
    """
    data = _last_json_object(text)
    if not isinstance(data, dict) or not isinstance(data.get("methods"), list):
        raise ValueError("`methods --json` printed no {\"methods\": [...]} object")
    return {str(m["name"]): m for m in data["methods"] if isinstance(m, dict) and m.get("name")}


def parameter_specs(record: Mapping[str, Any]) -> list[ParameterSpec]:
    """Widget specifications of one method's parameters, in the CLI's order."""
    params = record.get("params") or {}
    return [_spec(str(name), value) for name, value in params.items()]


def supports(record: Mapping[str, Any], entry: ModelEntry) -> bool:
    """Can the method explain this model (its dimension and task)?"""
    dims = record.get("dims") or [2, 3]
    tasks = record.get("tasks") or list(TASKS)
    return entry.spatial_dims in dims and entry.task in tasks


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def method_arguments(specs: Sequence[ParameterSpec], values: Mapping[str, Any]) -> list[str]:
    """``--param key=value`` flags for the values that differ from their defaults (empty strings are left out).

    Raises:
        ValueError: a value names no parameter of the method.
    """
    known = {s.name: s for s in specs}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown method parameter(s) {unknown}; known: {sorted(known)}")
    args: list[str] = []
    for name, value in values.items():
        spec = known[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if spec.kind == "int":
            value = int(round(float(value)))
        elif spec.kind == "float":
            value = float(value)
        if value == spec.default and type(value) is type(spec.default):
            continue
        args += ["--param", f"{name}={_text(value)}"]
    return args


# ---- spin boxes ----------------------------------------------------------------------------------------------------
#: Qt's largest number of decimals for a QDoubleSpinBox (DBL_MAX_10_EXP + DBL_DIG).
QT_MAX_DECIMALS = 323


def decimals_needed(value: Any) -> int:
    """How many digits after the decimal point write ``value`` exactly in its shortest form (``1e-06`` → 6,
    ``0.15`` → 2, ``32.0`` → 0); 0 for a non-number or a non-finite one."""
    import decimal
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    exponent = decimal.Decimal(repr(float(value))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def spin_box_decimals(spec: ParameterSpec, minimum_decimals: int = 2) -> int:
    """Decimals of a float parameter's spin box: enough to hold its default and both ends of its range exactly.

    A QDoubleSpinBox rounds every value, and its range, to its decimals; four decimals turned LRP's default
    ``epsilon=1e-06`` into 0.0. At least ``minimum_decimals`` (for typing), at most :data:`QT_MAX_DECIMALS`.
    """
    needed = max(decimals_needed(spec.default), decimals_needed(spec.minimum), decimals_needed(spec.maximum))
    return min(QT_MAX_DECIMALS, max(minimum_decimals, needed))


def spin_box_step(spec: ParameterSpec) -> float:
    """The spin box's single step: the default's order of magnitude (1e-06 → 1e-06, 0.15 → 0.1, 8 → 1), never finer
    than the box's decimals; 1 for an integer parameter."""
    import math

    if spec.kind == "int":
        return 1.0
    decimals = spin_box_decimals(spec)
    default = spec.default if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool) else 0
    if not default or not math.isfinite(default):
        return 10.0 ** -min(decimals, 2)
    return max(10.0 ** math.floor(math.log10(abs(default))), 10.0 ** -decimals)


# ---- model options (nnU-Net folders and TotalSegmentator tasks) -----------------------------------------------------
#: Commands that take the model options of ``add_model_arguments`` (``--folds``, ``--checkpoint``, ``--fast``).
MODEL_OPTION_COMMANDS = ("segment", "classify", "explain", "compare", "report")
#: Commands whose ``--param`` takes the model option ``tta=true|false`` (nnU-Net mirroring): the model is opened
#: before their ``--param`` items are read as method parameters (``compare`` and ``report`` read them first).
MIRRORING_COMMANDS = ("segment", "explain")
#: Commands whose ``--target`` only picks the model of a TotalSegmentator task of several models (``explain``,
#: ``compare`` and ``report`` take the organ as the explained class, which picks the model as well).
ORGAN_ONLY_COMMANDS = ("segment",)


@dataclass
class ModelOptions:
    """How an nnU-Net model runs (the panel's *Advanced* box), as the CLI's flags.

    Attributes:
        folds: the folds to ensemble (``"0,1,2"`` or ``"all"``); empty: every fold present.
        checkpoint: ``"final"`` (checkpoint_final.pth) or ``"best"``.
        mirroring: test-time mirroring (nnU-Net's default when the trainer allows it); False adds ``tta=false``.
        fast: TotalSegmentator's low-resolution model (``--fast``).
        organ: for a TotalSegmentator task of several models, the class whose model runs (``--target``).
    """

    folds: str = ""
    checkpoint: str = "final"
    mirroring: bool = True
    fast: bool = False
    organ: str = ""

    def arguments(self, command: str, entry: ModelEntry | None) -> list[str]:
        """The flags ``command`` takes for ``entry`` (none for a model that is not nnU-Net)."""
        if entry is None or not entry.is_nnunet or command not in MODEL_OPTION_COMMANDS:
            return []
        args: list[str] = []
        folds = self.folds.replace(" ", "")
        if folds:
            args += ["--folds", folds]
        if self.checkpoint and self.checkpoint != "final":
            args += ["--checkpoint", self.checkpoint]
        if self.fast and entry.source == "totalsegmentator" and not entry.name.endswith("_fast"):
            args += ["--fast"]
        if not self.mirroring and command in MIRRORING_COMMANDS:
            args += ["--param", "tta=false"]
        if entry.needs_class_target and self.organ and command in ORGAN_ONLY_COMMANDS:
            args += ["--target", self.organ]
        return args
