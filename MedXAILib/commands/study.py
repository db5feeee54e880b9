"""``study``: reader studies — create a study folder, simulate readers, analyse the reads (MRMC), size a study.

- ``study create``: cases (a manifest CSV or ``phantoms:chest:N``) × arms × readers → a study folder with every
  arm's material computed once with the model, counterbalanced reading lists and a hash of every file;
- ``study simulate``: simulated readers read the study through the same reading loop as the Slicer module (or, with
  ``--replicates``, whole simulated studies in memory: a power analysis);
- ``study analyse``: the multi-reader multi-case ROC analysis (Obuchowski–Rockette, Hillis df) of a study's reads or
  of a ratings CSV (``reader,modality,case,truth,rating``) → ``mrmc.json``, ``report.html``, figures;
- ``study size``: readers and cases for a full study from a pilot's ``mrmc.json`` (Hillis–Obuchowski).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from ..errors import InputError
from ..output_names import WILDCARD
from ..outputs import OutputSpec
from .common import add_model_arguments, open_model, progress_from


def _study_files(folder: Path, _args: argparse.Namespace) -> list[Path]:
    """The files of a new study folder (:mod:`MedXAILib.study.create`): the protocol, each case's material and hidden
    truth (named by the random reading id, unknown before the run), and the empty folder for the reads."""
    return [folder / "study.json", folder / "cases" / WILDCARD / WILDCARD, folder / "truth" / WILDCARD]


def _analysis_files(folder: Path, _args: argparse.Namespace) -> list[Path]:
    """The files of ``study analyse --output DIR`` (:func:`MedXAILib.study.report.write_outputs`)."""
    from ..study.report import OUTPUT_FILES

    return [folder / name for name in OUTPUT_FILES]


HELP = "reader studies: create a blinded study, simulate readers, analyse the reads (MRMC), size a study"
DESCRIPTION = (
    "Reader studies. create: a blinded study folder, every arm's material computed once with the model. simulate: "
    "simulated readers read it through the Slicer module's reading loop (--replicates: a power analysis). analyse: "
    "the MRMC ROC analysis (Obuchowski-Rockette, Hillis df) of a study's reads or a ratings CSV. size: readers and "
    "cases for a full study from a pilot. See docs/reader-study.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser("create", help="make a study folder (cases × arms × readers), the model run once per case")
    p.add_argument("--cases", required=True, metavar="MANIFEST",
                   help="CSV with id, input (files separated by ';', or a DICOM folder), truth (0/1) and optionally "
                   "reference (mask) or box; or phantoms:chest:N[:SEED] for the built-in chest X-ray phantoms")
    add_model_arguments(p, inputs=False)
    p.add_argument("--arms", required=True, help="comma-separated arms: image, ai, ai+METHOD (e.g. "
                   "image,ai,ai+gradcam,ai+counterfactual)")
    p.add_argument("--readers", required=True, help="comma-separated reader names (e.g. r1,r2,r3)")
    p.add_argument("--design", default="fully-crossed", help="fully-crossed (default) or split-plot")
    p.add_argument("--groups", type=int, default=2, help="split-plot: number of reader groups (default 2)")
    p.add_argument("--sessions", type=int, help="reading sessions per reader, a multiple of the number of arms "
                   "(default: one per arm)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reading ids and orders (default 0)")
    p.add_argument("--finding", help="what readers look for (default: the target class)")
    p.add_argument("--target", help="the model's class that predicts the finding (default: the finding's name)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability at which the AI calls the finding")
    p.add_argument("--method-param", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="a parameter of an arm's explanation method; repeatable")
    p.add_argument("--allow-changes", action="store_true", help="readers may change a submitted read")
    p.add_argument("--output", required=True, metavar="STUDY", help="the study folder to create (new or empty)")
    p.set_defaults(_run=run_create, _module=SimpleNamespace(
        OUTPUTS={"output": OutputSpec(folder=True, derived=_study_files)}, RESUMABLE=True))

    p = sub.add_parser("simulate", help="simulated readers read the study (or, with --replicates, a power analysis)")
    p.add_argument("--study", required=True, help="the study folder")
    p.add_argument("--readers", default=None, help="how many of the protocol's readers (a number: the first N) or "
                   "their names (comma-separated); default all")
    p.add_argument("--skill", type=float, default=1.5, help="readers' mean d' (separation of the classes, default 1.5)")
    p.add_argument("--skill-sd", type=float, default=0.3, help="spread of d' between readers (default 0.3)")
    p.add_argument("--ai-reliance", type=float, default=0.3, help="weight readers give the AI's output, 0–1")
    p.add_argument("--map-gain", type=float, default=0.0, help="added evidence where a shown map points at the "
                   "finding (0: readers do not gain from the map)")
    p.add_argument("--case-correlation", type=float, default=0.3, help="share of case difficulty common to readers")
    p.add_argument("--localise", type=float, default=0.7, help="probability of clicking inside the finding")
    p.add_argument("--seconds", type=float, default=30.0, help="typical reading time (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicates", type=int, help="run this many simulated studies in memory and print the power "
                   "of each test (nothing is written)")
    p.set_defaults(_run=run_simulate, _module=SimpleNamespace(OUTPUTS={}, RESUMABLE=True))

    p = sub.add_parser("analyse", help="MRMC ROC analysis of a study's reads or of a ratings CSV")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="a study folder (its reads, checked against the protocol and file hashes)")
    src.add_argument("--ratings", help="a CSV with reader,modality,case,truth,rating (optional decision, seconds)")
    p.add_argument("--design", default=None, help="--ratings: fully-crossed (default) or split-plot")
    p.add_argument("--covariance", default="jackknife", help="jackknife (default) or delong")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for mrmc.json, report.html and figures")
    p.set_defaults(_run=run_analyse,
                   _module=SimpleNamespace(OUTPUTS={"output": OutputSpec(folder=True, derived=_analysis_files)}))

    p = sub.add_parser("size", help="readers and cases for a full study from a pilot's mrmc.json")
    p.add_argument("--pilot", required=True, help="mrmc.json of a pilot (from study analyse)")
    p.add_argument("--effect", type=float, required=True, help="difference in mean AUC to detect (e.g. 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--readers", help="numbers of readers to size for, comma-separated (default 3–15)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--output", help="also write the table as JSON here")
    p.set_defaults(_run=run_size, _module=SimpleNamespace(OUTPUTS={"output": OutputSpec((".json",))}))


def run(args: argparse.Namespace) -> int:  # the CLI dispatches to the subcommand's own _run
    return int(args._run(args) or 0)


def _list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _method_params(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        method, sep, kv = item.partition(":")
        key, eq, value = kv.partition("=")
        if not sep or not eq or not method.strip() or not key.strip():
            raise InputError(f"--method-param {item!r}: write METHOD:KEY=VALUE (e.g. gradcam:layer=layer4)")
        out.setdefault(method.strip(), {})[key.strip()] = value.strip()
    return out


def run_create(args: argparse.Namespace) -> int:
    from ..study.create import DEFAULT_FORM, StudySettings, create_study, phantom_cases, read_manifest

    cases = phantom_cases(args.cases) if args.cases.startswith("phantoms:") else read_manifest(args.cases)
    settings = StudySettings(arms=_list(args.arms), readers=_list(args.readers), design=args.design,
                             sessions=args.sessions, seed=args.seed, groups=args.groups, finding=args.finding,
                             target=args.target, threshold=args.threshold,
                             method_params=_method_params(args.method_param),
                             form={**DEFAULT_FORM, "allow_changes": bool(args.allow_changes)})
    if settings.design not in ("fully-crossed", "split-plot"):
        raise InputError(f"--design {settings.design!r}: use fully-crossed or split-plot")
    progress = progress_from(args)
    model = open_model(args)
    out = create_study(cases, model, args.model, settings, args.output, progress=progress)
    if args.progress != "json":
        print(f"created {out}: {len(cases)} cases x {len(settings.arms)} arms, readers {', '.join(settings.readers)}")
    return 0


def _reader_model(args: argparse.Namespace):  # noqa: ANN202 - ReaderModel, imported lazily
    from ..study.simulate import ReaderModel

    model = ReaderModel(skill=args.skill, skill_sd=args.skill_sd, ai_reliance=args.ai_reliance,
                        map_gain=args.map_gain, case_correlation=args.case_correlation, localise=args.localise,
                        seconds=args.seconds)
    model.check()
    return model


def run_simulate(args: argparse.Namespace) -> int:
    from ..study.protocol import load_study
    from ..study.simulate import simulate_power, simulate_reads

    model = _reader_model(args)
    study = load_study(args.study)
    if args.replicates is not None:
        result = simulate_power(study, model, args.replicates, args.seed)
        print(json.dumps(result, indent=2))
        return 0
    written = simulate_reads(study, args.readers if args.readers is not None else len(study.readers), model,
                             args.seed)
    print(f"wrote {sum(written.values())} simulated reads in {args.study}/reads: "
          + ", ".join(f"{r} {n}" for r, n in written.items()))
    return 0


def _refuse_output_in_protected_folders(study: str, output: str) -> None:
    """The analysis must not write into the study's ``cases/`` or ``truth/``: their files are hashed, and the study
    would be refused from then on ("… was added after the study was created")."""
    from ..study.protocol import PROTECTED

    out = Path(output).resolve()
    for sub in PROTECTED:
        base = (Path(study) / sub).resolve()
        if out == base or base in out.parents:
            raise InputError(f"--output {output}: inside the study's {sub}/ folder, whose files are hashed (the "
                             f"study would be refused afterwards); write the analysis beside it, e.g. "
                             f"{Path(study) / 'analysis'}")


def run_analyse(args: argparse.Namespace) -> int:
    from ..study.analysis import analyse_ratings, finite_or_null, roc_curves
    from ..study.covariance import COVARIANCE_METHODS
    from ..study.ratings import DESIGNS, read_ratings
    from ..study.report import write_outputs

    if args.covariance not in COVARIANCE_METHODS:
        raise InputError(f"--covariance {args.covariance!r}: use one of {', '.join(COVARIANCE_METHODS)}")
    if not 0.0 < args.alpha < 0.5:
        raise InputError(f"--alpha {args.alpha}: a significance level between 0 and 0.5")
    if args.design is not None and args.design not in DESIGNS:
        raise InputError(f"--design {args.design!r}: unknown design; use one of {', '.join(DESIGNS)}")
    extra = {}
    if args.study:
        if args.design:
            raise InputError("--design comes from the study's protocol; give it only with --ratings")
        from ..study.protocol import load_study
        from ..study.summaries import latest_records, localisation_summary, reliance_summary, study_ratings

        _refuse_output_in_protected_folders(args.study, args.output)
        study = load_study(args.study)
        records = latest_records(study)
        ratings = study_ratings(study, records)
        extra = {"study": {"study_id": study.study_id, "finding": study.protocol["finding"],
                           "model": study.protocol["model"]["name"]},
                 "reliance": reliance_summary(study, records), "localisation": localisation_summary(study, records)}
    else:
        ratings = read_ratings(args.ratings, design=args.design or "fully-crossed")
    mrmc = analyse_ratings(ratings, covariance=args.covariance, alpha=args.alpha)
    mrmc.update(finite_or_null(extra))
    write_outputs(args.output, mrmc, roc_curves(ratings))
    rrrc = mrmc["random_readers_random_cases"]
    print("mean AUC: " + ", ".join(f"{m} {v:.4f}" for m, v in mrmc["mean_auc"].items()))
    if rrrc and rrrc.get("f") is not None:
        print(f"random readers and cases: F = {rrrc['f']:.3f} on {rrrc['df1']} and "
              f"{rrrc['df2'] if rrrc['df2'] is None else round(rrrc['df2'], 2)} df, p = {rrrc['p']:.4g}")
        for d in rrrc["differences"]:
            print(f"  {d['a']} - {d['b']}: {d['difference']:+.4f} (95% CI {d['ci'][0]:+.4f} to {d['ci'][1]:+.4f}), "
                  f"p = {d['p']:.4g}")
    print(f"wrote {args.output}/mrmc.json and report.html")
    return 0


def run_size(args: argparse.Namespace) -> int:
    from ..study.sample_size import size_table

    try:
        pilot = json.loads(open(args.pilot, encoding="utf-8").read())
    except FileNotFoundError:
        raise InputError(f"--pilot {args.pilot}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--pilot {args.pilot}: not a readable mrmc.json ({exc})") from None
    if not isinstance(pilot, dict):
        raise InputError(f"--pilot {args.pilot}: not an mrmc.json written by `study analyse`")
    try:
        readers = [int(v) for v in _list(args.readers)] if args.readers else None
    except ValueError:
        raise InputError(f"--readers {args.readers!r}: whole numbers, comma-separated") from None
    table = size_table(pilot, args.effect, args.power, readers, args.alpha)
    if args.output:
        from ..io import write_json

        write_json(table, args.output)
    rows = table["table"]
    print(f"cases for power {args.power} to detect an AUC difference of {args.effect} (alpha {args.alpha}; pilot: "
          f"{table['pilot_cases']} cases, Hillis-Obuchowski):")
    print(f"{'readers':>8} {'random readers+cases':>22} {'fixed readers':>14} {'fixed cases':>12}")
    for i, r in enumerate(rows["random_readers_random_cases"]):
        cells = [rows[a][i]["cases"] for a in ("random_readers_random_cases", "fixed_readers_random_cases",
                                               "random_readers_fixed_cases")]
        print(f"{r['readers']:>8} " + " ".join(f"{'>1e6' if c is None else c:>{w}}"
                                              for c, w in zip(cells, (22, 14, 12))))
    sys.stdout.flush()
    return 0
