"""Show the code: the core-API snippet that reproduces a page's run, and a runnable notebook of it.

Every analysis page has a "Code" expander with :func:`snippet` of its current request and a button
that exports :func:`notebook` (nbformat v4). Requests are dataclasses of JSON-able settings, so the
snippet is the request written out as Python literals, then the workflow call.
"""
from __future__ import annotations

import json
import pprint
from dataclasses import fields, is_dataclass
from typing import Any

#: what each analysis' snippet imports and calls: import lines, the request class (its name, and its dotted
#: path for rebuilding a request from provenance), the workflow call, what to show, and the numbers to print
ANALYSES: dict[str, dict[str, str]] = {
    "ood": {
        "imports": "from core.workspace import Resolver\nfrom core.ood.workflow import OODRequest, evaluate",
        "request": "OODRequest",
        "request_class": "core.ood.workflow.OODRequest",
        "run": "result = evaluate(resolver, request, progress=lambda f, msg: print(f\"\\r{f:4.0%} {msg[:70]:<70}\", end=\"\"))",
        "show": "print()\nresult.summary().head(10)",
        "numbers": "result.table.to_json(orient=\"records\", double_precision=15)",
    },
    "shift": {
        "imports": "from core.workspace import Resolver\nfrom core.shift.workflow import ShiftRequest, evaluate",
        "request": "ShiftRequest",
        "request_class": "core.shift.workflow.ShiftRequest",
        "run": "result = evaluate(resolver, request, progress=lambda f, msg: print(f\"\\r{f:4.0%} {msg[:70]:<70}\", end=\"\"))",
        "show": "print()\nresult.explanation.to_frame()",
        "numbers": "result.to_json()",
    },
    "pruning": {
        "imports": "from core.workspace import Resolver\nfrom core.pruning.workflow import PruningRequest, evaluate",
        "request": "PruningRequest",
        "request_class": "core.pruning.workflow.PruningRequest",
        "run": "result = evaluate(resolver, request, progress=lambda f, msg: print(f\"\\r{f:4.0%} {msg[:70]:<70}\", end=\"\"))",
        "show": "print()\nresult.table()",
        # measured speeds vary from run to run: the numbers to compare are the deterministic ones
        "numbers": "result.table().drop(columns=[\"images_per_s\", \"speedup\", \"importance_ms\", "
                   "\"importance_share\"]).to_json(orient=\"records\", double_precision=15)",
    },
    "attribution": {
        "imports": "from core.workspace import Resolver\nfrom core.attribution.workflow import AttributionRequest, evaluate",
        "request": "AttributionRequest",
        "request_class": "core.attribution.workflow.AttributionRequest",
        "run": "result = evaluate(resolver, request, progress=lambda f, msg: print(f\"\\r{f:4.0%} {msg[:70]:<70}\", end=\"\"))",
        "show": "print()\nresult.summary()",
        # the methods' timings vary from run to run: the numbers to compare are the metrics, ranks and passes
        "numbers": "result.summary().drop(columns=[\"seconds\"]).to_json(orient=\"records\", double_precision=15)",
    },
}


def _literal(value: Any, indent: int = 4) -> str:
    text = pprint.pformat(value, indent=1, width=100, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def request_fields(request: Any) -> dict[str, Any]:
    if not is_dataclass(request):
        raise TypeError(f"expected a request dataclass, got {type(request).__name__}")
    return {f.name: getattr(request, f.name) for f in fields(request)}


def uploads_in(request: Any) -> list[str]:
    """File names of uploads a request refers to (they must be given again in a script)."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("kind") == "upload" and "filename" in x:
                found.append(x["filename"])
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(request_fields(request))
    return list(dict.fromkeys(found))


def snippet(analysis: str, request: Any) -> str:
    """Python that reproduces ``request`` with the core API (offline, no UI)."""
    a = ANALYSES[analysis]
    args = ",\n    ".join(f"{k}={_literal(v)}" for k, v in request_fields(request).items())
    lines = [a["imports"], "", "resolver = Resolver()"]
    ups = uploads_in(request)
    if ups:
        lines += ["# Your uploads: give each file's bytes to the resolver under the digest the request names, e.g.",
                  "# resolver.store_upload(\"" + ups[0] + "\", open(\"path/to/" + ups[0] + "\", \"rb\").read())"]
    lines += [f"request = {a['request']}(\n    {args},\n)", a["run"], a["show"]]
    return "\n".join(lines) + "\n"


def snippet_from_provenance(provenance: dict) -> str | None:
    """The snippet that reproduces a kept distribution, from the request its provenance records (None when
    it records none)."""
    analysis, request = provenance.get("analysis"), provenance.get("request")
    if analysis not in ANALYSES or not isinstance(request, dict):
        return None
    import importlib

    module, _, cls_name = ANALYSES[analysis]["request_class"].rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    names = {f.name for f in fields(cls)}
    try:
        req = cls(**{k: v for k, v in request.items() if k in names})
    except (TypeError, ValueError):
        return None
    return snippet(analysis, req)


def notebook(analysis: str, request: Any, title: str, provenance: dict | None = None) -> str:
    """A runnable .ipynb (JSON text) with the snippet, run from the project's root folder."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    a = ANALYSES[analysis]
    intro = (f"# {title}\n\nReproduces the run of Importance Explorer's page with the core API. Run it from the "
             "project's root folder (where `core/` is), offline.")
    cells = [new_markdown_cell(intro),
             new_code_cell("import os, sys\nsys.path.insert(0, os.getcwd())  # the project's root folder"),
             new_code_cell(snippet(analysis, request)),
             new_code_cell(f"# the numbers the page shows, as JSON\nprint({a['numbers']})")]
    if provenance:
        cells.insert(1, new_markdown_cell("Provenance:\n\n```json\n" + json.dumps(provenance, indent=1, default=str)
                                          + "\n```"))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    return nbformat.writes(nb)


__all__ = ["ANALYSES", "notebook", "snippet", "snippet_from_provenance", "uploads_in"]
