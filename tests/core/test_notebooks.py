"""Every analysis' exported notebook of its default run executes offline and prints the numbers the app shows."""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

from core import codegen
from core.workspace import Resolver, default_workspace

ROOT = Path(__file__).resolve().parents[2]


def _close(a, b, path="") -> None:
    """Numbers equal to 1e-9 (relative), everything else equal, recursively."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def analyses_with_defaults() -> list[str]:
    out = []
    for name, entry in codegen.ANALYSES.items():
        module = importlib.import_module(entry["request_class"].rpartition(".")[0])
        if hasattr(module, "default_request") and hasattr(module, "evaluate"):
            out.append(name)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("analysis", analyses_with_defaults())
def test_the_notebook_of_the_default_run_reproduces_its_numbers(analysis):
    import nbformat
    from nbclient import NotebookClient

    entry = codegen.ANALYSES[analysis]
    module = importlib.import_module(entry["request_class"].rpartition(".")[0])
    resolver = Resolver()
    request = module.default_request(resolver, default_workspace())
    result = module.evaluate(resolver, request)
    expected = json.loads(eval(entry["numbers"], {"result": result}))  # noqa: S307  (our own expression)
    nb = nbformat.reads(codegen.notebook(analysis, request, f"{analysis} default run"), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    _close(json.loads(printed), expected)
