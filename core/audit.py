"""Audit a model and a dataset from the command line, with no UI, and write an HTML report.

    python -m core.audit --out report.html                       # the built-in defaults (shipped ViT, Shapes)
    python -m core.audit --data my_images/ --model my_model_dir --out audit.html
    python -m core.audit --data table.csv --label y --model random-forest --out audit.html
    python -m core.audit --engine ray --address auto --data shapes --n 1000000 --scores-out scores/ --out audit.html

The OOD audit of a generated world (``--data shapes``) or an image folder streams the data in seeded
shards through :mod:`core.scale`, in this process (``--engine local``, the default) or on a Ray
cluster (``--engine ray``), with the same functions and the same numbers; uploads and fixed sets run
the same core workflows as the app's pages (``core.ood.workflow.evaluate``, ...). It shows
progress on the terminal, and exits with status 2 and a one-line reason on bad input (1 for an
unexpected error, with the traceback).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from core import runtime
from core.errors import UserError

ANALYSES = ("ood", "pruning", "shift", "attribution")
#: an image folder zipped in memory is bounded like an upload (the loader checks the rest)
MAX_FOLDER_BYTES = 2 * 2**30


class AuditError(UserError):
    """Bad command-line input; the message is the one line the audit prints."""


def _progress(quiet: bool) -> Callable[[float, str], None]:
    last = [0.0]

    def report(fraction: float, message: str) -> None:
        if quiet:
            return
        now = time.monotonic()
        if now - last[0] < 0.2 and fraction < 1.0:
            return
        last[0] = now
        sys.stderr.write(f"\r{min(max(fraction, 0.0), 1.0):4.0%} {message[:90]:<90}")
        sys.stderr.flush()
        if fraction >= 1.0:
            sys.stderr.write("\n")

    return report


def _zip_folder(path: Path) -> bytes:
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(path.rglob("*")):
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
                if total > MAX_FOLDER_BYTES:
                    raise AuditError(f"The folder '{path}' holds more than {MAX_FOLDER_BYTES // 2**30} GB of files; "
                                     "audit a smaller sample of it.")
                zf.write(f, f.relative_to(path).as_posix())
    return buf.getvalue()


def data_spec(resolver, data: str, *, label: str | None, split: str, n: int | None, seed: int) -> dict:
    """The workspace data spec of ``--data``: a built-in dataset name, or a path to an image folder, a
    .zip of one, a CSV/Parquet table or an .npz of model outputs."""
    import core.data as core_data

    if data in core_data.available():
        generated = core_data.kind_of(data) == "image" and data != "digits"  # the others have a fixed size
        return {"kind": "builtin", "name": data, "split": split, "n": n if generated else None, "seed": seed,
                "shift": None}
    path = Path(data).expanduser()
    if not path.exists():
        raise AuditError(f"--data '{data}' is neither a built-in dataset ({', '.join(core_data.available())}) nor "
                         "an existing file or folder.")
    if path.is_dir():
        content, filename = _zip_folder(path), f"{path.name or 'folder'}.zip"
    else:
        try:
            content, filename = path.read_bytes(), path.name
        except OSError as e:
            raise AuditError(f"Could not read --data '{data}': {e.strerror or e}.") from None
    options = {"label": label} if label else {}
    return resolver.data_upload_spec(filename, content, **options)


def model_spec(model: str | None, kind: str, *, seed: int, num_classes: int | None, input_size: int | None) -> dict:
    """The workspace model spec of ``--model`` for data of ``kind`` ("image", "table" or "outputs")."""
    import core.models as core_models

    if kind == "outputs":
        return {"kind": "none"}
    if kind == "table":
        from core.models.tabular import available_tabular

        name = model or "logistic-regression"
        if name not in available_tabular():
            raise AuditError(f"--model '{name}' is not a tabular model; choose one of: {', '.join(available_tabular())}.")
        return {"kind": "tabular", "name": name, "seed": seed}
    name = model or "shapes-vit"
    if name in core_models.available() or Path(name).expanduser().is_dir():
        return {"kind": "zoo", "name": name}
    return {"kind": "timm", "name": name, "pretrained": False, "num_classes": num_classes, "input_size": input_size}


def _split_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def streams(data: str) -> bool:
    """Whether ``--data`` is audited by the streaming engines: a generated built-in image world (Shapes, in
    seeded shards) or an image folder. Uploads (.zip, .npz, tables) and fixed built-in sets keep the
    in-memory path (they are bounded by the upload limits)."""
    import core.data as core_data

    if data in core_data.available():
        from core.scale.plan import is_generated

        return is_generated(data)
    return Path(data).expanduser().is_dir()


#: samples of a generated world that the analyses other than OOD (pruning, shift, attribution) use in memory
#: when the OOD audit streams a larger one
IN_MEMORY_N = 2000


def run(args: argparse.Namespace) -> int:
    if args.address and args.engine != "ray":
        raise AuditError("--address names a Ray cluster; add --engine ray to use it.")
    analyses = _split_list(args.analyses) or list(ANALYSES)
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown:
        raise AuditError(f"--analyses: unknown {', '.join(unknown)}; available: {', '.join(ANALYSES)}.")
    explicit = set(_split_list(args.analyses) or [])
    scaled = "ood" in analyses and streams(args.data)
    if args.engine == "ray":
        if not streams(args.data):
            raise AuditError(f"--engine ray audits the generated Shapes world (--data shapes --n N) and image folders; "
                             f"'{args.data}' is audited in memory: leave out --engine ray.")
        if "ood" not in analyses:
            raise AuditError("--engine ray runs the OOD audit (per-sample work); add ood to --analyses or leave out "
                             "--engine ray.")
        asked = sorted(explicit - {"ood"})
        if asked:
            raise AuditError(f"--analyses {','.join(asked)}: not per-sample work, so not run on Ray; run it with "
                             "--engine local.")
    from core import report as core_report
    from core.workspace import describe_data, describe_model

    progress = _progress(args.quiet)
    sections, items, code = [], {}, []
    subtitle = None
    if scaled:
        subtitle = run_scaled(args, progress=progress, sections=sections, items=items, code=code)
    rest = [a for a in analyses if a != "ood" or not scaled]
    if rest and args.engine == "ray":
        if not args.quiet:
            sys.stderr.write(f"\n{', '.join(rest)} skipped: not per-sample work (run it with --engine local).\n")
    elif rest:
        from core.workspace import Resolver, data_kind_of

        resolver = Resolver()
        n = min(args.n, IN_MEMORY_N) if scaled else args.n
        data = data_spec(resolver, args.data, label=args.label, split=args.split, n=n, seed=args.seed)
        ws = {"model": model_spec(args.model, data_kind_of(data), seed=args.seed, num_classes=args.num_classes,
                                  input_size=args.input_size), "data": data}
        if not scaled and args.detectors:
            import core.ood as ood

            for d in _split_list(args.detectors):
                ood.spec(d)  # an unknown id fails before any work, naming the available ones
        progress(0.0, "Loading the workspace")
        resolver.current(ws, progress=lambda f, m: progress(0.1 * f, f"Running the model: {m}"))
        if "ood" in rest:
            _ood(resolver, ws, args, progress=progress, sections=sections, items=items, code=code)
        if "pruning" in rest:
            _pruning(resolver, ws, progress=progress, sections=sections, items=items, code=code)
        if "shift" in rest:
            _shift(resolver, ws, explicit="shift" in explicit, progress=progress, sections=sections, items=items,
                   code=code, quiet=args.quiet)
        if "attribution" in rest:
            _attribution(resolver, ws, explicit="attribution" in explicit, progress=progress, sections=sections,
                         items=items, code=code, quiet=args.quiet)
        if subtitle is None:
            subtitle = f"{describe_model(ws['model'])} on {describe_data(ws['data'])}."
        elif n < args.n:
            names = {"pruning": "token pruning", "shift": "shift attribution", "attribution": "attribution"}
            subtitle += (f" {', '.join(names[a] for a in rest).capitalize()} on {n:,} samples of the same data, "
                         "in memory.")
    html = core_report.build_report(items, title="Importance Explorer audit", subtitle=subtitle,
                                    sections=sections, code="\n\n".join(code))
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        raise AuditError(f"Could not write --out '{out}': {e.strerror or e}.") from None
    progress(1.0, f"Report written to {out}")
    return 0


def _print_best(result) -> None:
    """The five best detectors by mean AUROC, on the terminal."""
    top = result.summary().head(5)
    sys.stderr.write("\nBest detectors by mean AUROC:\n" + top[["detector", "auroc_mean", "fpr95_mean"]]
                     .to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n")


def _ood(resolver, ws: dict, args: argparse.Namespace, *, progress, sections: list, items: dict, code: list) -> None:
    """The in-memory OOD audit (uploads and fixed built-in sets)."""
    from core.codegen import snippet
    from core.ood import workflow as ood_workflow

    request = ood_workflow.default_request(resolver, ws, n_fit=args.n_fit)
    detectors = _split_list(args.detectors)
    if detectors:
        import core.ood as ood

        usable = ood_workflow.usable_detectors(resolver, ws)
        refused = {d: usable[d] for d in detectors if usable[d]}
        if refused:
            raise AuditError("--detectors: " + "; ".join(f"{d}: {r}" for d, r in refused.items()))
        request = replace(request, detectors={d: ood.spec(d).defaults for d in detectors})
    sets = _split_list(args.ood_sets)
    if sets:
        request = replace(request, set_names=tuple(sets))
    request = replace(request, convention=args.convention)
    result = ood_workflow.evaluate(resolver, request, progress=lambda f, m: progress(0.1 + 0.85 * f, m))
    sections.append(ood_workflow.report_section(result, ws))
    if result.detectors:  # the best detector's scores on every set
        items.update(ood_workflow.to_importances(result, result.summary()["detector"].iloc[0], ws))
    code.append(snippet("ood", request))
    if args.scores_out:
        write_scores(result, Path(args.scores_out))
    if not args.quiet:
        _print_best(result)


def _pruning(resolver, ws: dict, *, progress, sections: list, items: dict, code: list) -> None:
    from core.codegen import snippet
    from core.pruning import workflow as pruning_workflow

    reason = pruning_workflow.unsupported_workspace(resolver, ws)
    if reason:  # one line, and the other analyses' report is still written
        sys.stderr.write(f"\ntoken pruning skipped: {reason}\n")
        return
    request = pruning_workflow.default_request(resolver, ws)
    result = pruning_workflow.evaluate(resolver, request,
                                       progress=lambda f, m: progress(0.1 + 0.85 * f, f"Token pruning: {m}"))
    sections.append(pruning_workflow.report_section(result, ws))
    items.update(pruning_workflow.to_importances(result, result.points[0].method, result.budgets[-1]))
    code.append(snippet("pruning", request))


def _shift(resolver, ws: dict, *, explicit: bool, progress, sections: list, items: dict, code: list,
           quiet: bool) -> None:
    """The default shift attribution of the workspace (the Shapes world's background preset against the
    unshifted world, or a built-in table's train split against its test split). A workspace without a
    built-in comparison is skipped with a note, or refused when ``--analyses shift`` asked for it."""
    from core.codegen import snippet
    from core.shift import ShiftError
    from core.shift import workflow as shift_workflow

    try:
        request = shift_workflow.default_request(resolver, ws)
    except ShiftError as e:
        if explicit:
            raise AuditError(f"--analyses shift: {e}") from None
        if not quiet:
            sys.stderr.write(f"\nShift attribution skipped: {e}\n")
        return
    run = shift_workflow.evaluate(resolver, request, progress=lambda f, m: progress(0.95 * f, f"Shift: {m}"))
    sections.append(shift_workflow.report_section(run, ws))
    items.update(run.to_importances())
    code.append(snippet("shift", request))
    if not quiet:
        sys.stderr.write("\nShift attribution (" + run.explanation.metric_name + "):\n" + run.explanation.to_frame()[
            ["mechanism", "attribution", "ci_low", "ci_high"]].to_string(index=False, float_format=lambda v: f"{v:+.4f}")
            + "\n")


def run_scaled(args: argparse.Namespace, *, progress, sections: list, items: dict, code: list) -> str:
    """The OOD audit on the streaming engines (``--engine local`` in this process, ``--engine ray`` on a Ray
    cluster): the same shards, the same functions, the same numbers (:mod:`core.scale`). Adds its report
    section, importances and code; returns the report's subtitle."""
    import core.data as core_data
    import core.ood as ood
    from core import scale
    from core.ood import workflow as ood_workflow
    from core.ood.base import REGISTRY
    from core.ood.mergeable import mergeable_detectors
    from core.workspace import describe_model

    detectors = _split_list(args.detectors)
    if detectors:
        for d in detectors:
            ood.spec(d)  # an unknown id fails before any work, naming the available ones
        # a detector the streaming engines cannot fit (ODIN) is skipped with its reason, in the report too
    else:
        detectors = REGISTRY.default_selection(mergeable_detectors())
    chosen = {d: ood.spec(d).defaults for d in detectors}
    model = model_spec(args.model, "image", seed=args.seed, num_classes=args.num_classes, input_size=args.input_size)
    sets = _split_list(args.ood_sets)
    try:
        if args.data in core_data.available():
            plan = scale.plan_builtin(model, args.data, n=args.n, n_fit=args.n_fit, seed=args.seed, set_names=sets,
                                      n_ood=args.ood_n, detectors=chosen, shard_size=args.shard_size,
                                      convention=args.convention)
            ws_data = plan.data_spec
        else:
            plan = scale.plan_folder(model, args.data, seed=args.seed, set_names=sets, n_ood=args.ood_n or args.n,
                                     detectors=chosen, shard_size=args.shard_size, convention=args.convention)
            ws_data = {"kind": "upload", "filename": str(Path(args.data).expanduser())}
    except scale.ScaleError as e:
        raise AuditError(str(e)) from None
    if not args.quiet:
        sys.stderr.write(f"{args.engine} engine: {plan.size()} images in {len(plan.shards)} shards of up to "
                         f"{plan.shard_size} ({plan.size('fit', 'validation')} to fit, "
                         f"{plan.size('eval')} to score)\n")
    result = scale.run_audit(plan, args.engine, scores_dir=args.scores_out, address=args.address,
                             workers=args.workers, progress=progress, quiet=args.quiet)
    ws = {"model": model, "data": ws_data}
    suite = result.suite_result()
    sections.append(ood_workflow.report_section(suite, ws))
    if result.detectors:
        items.update(ood_workflow.to_importances(suite, suite.summary()["detector"].iloc[0], ws))
    code.append(scaled_snippet(args, plan))
    if not args.quiet:
        _print_best(suite)
        if result.skipped:
            sys.stderr.write("Not run: " + "; ".join(f"{d}: {r}" for d, r in result.skipped.items()) + "\n")
        for p in result.problems[:20]:
            sys.stderr.write(f"Problem: {p}\n")
        rate = result.images / max(result.wall.get("total", 1e-9), 1e-9)
        sys.stderr.write(f"{result.images} images in {result.wall.get('total', 0):.1f} s ({rate:.0f} images/s, "
                         f"{result.workers} worker(s))\n")
    import pandas as pd

    sections[-1].tables.append((
        f"How it ran: the {args.engine} engine, {result.workers} worker(s), shards of up to {plan.shard_size} samples "
        "(seconds on the driver's clock).",
        pd.DataFrame([{"images": result.images, "fit images": result.fit_images,
                       **{f"{k} s": v for k, v in result.wall.items()}}])))
    if result.problems:
        sections[-1].tables.append((f"Problems met ({len(result.problems)}; the first 200): unreadable files and rows "
                                   "with NaN outputs were left out, the rest went on.",
                                   pd.DataFrame({"problem": result.problems[:200]})))
    return f"{describe_model(model)} on {describe_data_scaled(plan)} ({args.engine} engine)."


def describe_data_scaled(plan) -> str:
    d = plan.data_spec
    if d.get("kind") == "builtin":
        return f"{d['name']} · test · n={d['n']}" + (f" · seed={d['seed']}" if d.get("seed") else "") + " (seeded shards)"
    return f"the image folder {d['root']}"


def scaled_snippet(args: argparse.Namespace, plan) -> str:
    """The Python that reproduces a scaled audit."""
    dets = {d: p for d, p in plan.detectors.items()}
    if plan.data_spec.get("kind") == "builtin":
        make = (f"plan = plan_builtin({plan.model_spec!r}, {args.data!r}, n={args.n}, n_fit={args.n_fit}, "
                f"seed={args.seed}, set_names={list(plan.sets)[1:]!r}, n_ood={args.ood_n!r},\n"
                f"                    detectors={dets!r}, shard_size={plan.shard_size})")
        imports = "from core.scale import plan_builtin, run_audit"
    else:
        make = (f"plan = plan_folder({plan.model_spec!r}, {plan.data_spec['root']!r}, seed={args.seed}, "
                f"set_names={list(plan.sets)[1:]!r}, detectors={dets!r}, shard_size={plan.shard_size})")
        imports = "from core.scale import plan_folder, run_audit"
    where = f", address={args.address!r}" if args.address else ""
    return (f"{imports}\n\n{make}\nresult = run_audit(plan, engine={args.engine!r}{where}, "
            f"scores_dir={args.scores_out!r})\nprint(result.table)")


def _attribution(resolver, ws: dict, *, explicit: bool, progress, sections: list, items: dict, code: list,
                 quiet: bool) -> None:
    """The default attribution run of the workspace (a few samples, the default methods that apply to its
    model, the cheap metrics). A workspace without a model (precomputed outputs) is skipped with a note, or
    refused when ``--analyses attribution`` asked for it."""
    from core.attribution import AttributionError
    from core.attribution import workflow as attribution_workflow
    from core.codegen import snippet

    try:
        request = attribution_workflow.default_request(resolver, ws)
    except AttributionError as e:
        if explicit:
            raise AuditError(f"--analyses attribution: {e}") from None
        if not quiet:
            sys.stderr.write(f"\nAttribution skipped: {e}\n")
        return
    result = attribution_workflow.evaluate(resolver, request,
                                           progress=lambda f, m: progress(0.1 + 0.85 * f, f"Attribution: {m}"))
    sections.append(attribution_workflow.report_section(result, ws))
    items.update({f"Attribution · {attribution_workflow.method_label(m)}": imp
                  for m, imp in result.to_importances().items()})
    code.append(snippet("attribution", request))
    if not quiet:
        top = attribution_workflow.summary_table(result)
        top = top[top["method"] != attribution_workflow.RANDOM_MAP]
        sys.stderr.write("\nAttribution methods by mean rank:\n" + top[["method", "mean rank"]].to_string(
            index=False, float_format=lambda v: f"{v:.2f}") + "\n")


def write_scores(result, folder: Path) -> None:
    """Per-sample OOD scores as Parquet: one file per set, columns ``sample_id``, ``set`` and one per detector."""
    import pandas as pd

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AuditError(f"Could not create --scores-out '{folder}': {e.strerror or e}.") from None
    sets = list(dict.fromkeys(s for per in result.scores.values() for s in per))
    for i, set_name in enumerate(sets):
        cols = {d: result.scores[d][set_name] for d in result.detectors if set_name in result.scores[d]}
        n = len(next(iter(cols.values())))
        df = pd.DataFrame({"sample_id": range(n), "set": set_name, **cols})
        df.to_parquet(folder / f"scores_{i:02d}.parquet", index=False)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.audit", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the HTML report to write")
    p.add_argument("--data", default="shapes", help="a built-in dataset, or a path: an image folder (one sub-folder "
                                                    "per class), a .zip of one, a .csv/.parquet table, an .npz of outputs")
    p.add_argument("--label", help="the label column of a table")
    p.add_argument("--split", default="test", choices=["test", "train"], help="split of a built-in dataset")
    p.add_argument("--n", type=int, default=500, help="samples of a generated built-in dataset (Shapes)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--model", help="a shipped model, a model folder, a timm architecture, or a tabular model kind")
    p.add_argument("--num-classes", type=int, help="classes of a timm architecture")
    p.add_argument("--input-size", type=int, help="input size (pixels) of a timm architecture")
    p.add_argument("--analyses", help=f"comma-separated, of: {', '.join(ANALYSES)} (default: all)")
    p.add_argument("--detectors", help="comma-separated OOD detector ids (default: every usable one that is not slow)")
    p.add_argument("--ood-sets", help="comma-separated OOD set names (default: the standard near/far/shift sets)")
    p.add_argument("--n-fit", type=int, default=1000, help="fit samples of a generated world")
    p.add_argument("--convention", default="ood-positive", choices=["ood-positive", "id-positive"])
    p.add_argument("--scores-out", help="a folder for the per-sample scores as Parquet")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="where the OOD audit of a generated world or an image folder runs: this process (local) or a "
                        "Ray cluster (ray); both stream the data in shards and give the same numbers")
    p.add_argument("--address", help="the Ray cluster to join (auto, ray://host:10001); default: start one here")
    p.add_argument("--workers", type=int, help="Ray actors running the model (default: the cluster's CPUs)")
    p.add_argument("--shard-size", type=int, default=2048, help="samples per shard (part of the seeded stream's "
                                                               "definition: other sizes draw other images)")
    p.add_argument("--ood-n", type=int, help="samples of each generated OOD set (default: --n)")
    p.add_argument("--quiet", action="store_true", help="no progress on the terminal")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    runtime.configure()
    try:
        return run(args)
    except UserError as e:
        sys.stderr.write(f"\naudit: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\naudit: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.write(f"\naudit: unexpected error ({type(e).__name__}: {e}); this is a bug, please report it.\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
