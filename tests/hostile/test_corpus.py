"""Every case of the hostile corpus (tests/hostile/make_corpus.py) through the loader a page calls.

Each is refused with a UserError whose message matches the case and names the file, or accepted
and checked; none runs past the watchdog, and no pickled payload ever runs.
"""
from __future__ import annotations

import functools

import pytest
import torch

from core.errors import UserError
from tests.hostile.guards import run_entry, watchdog
from tests.hostile.make_corpus import ARCH, CASES, FILES, MARKER, Case


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@functools.cache
def _generated(name: str):
    return next(c for c in CASES if c.name == name).build()


def _content(case: Case):
    if case.generated:
        return _generated(case.name)
    path = FILES / case.family / case.name
    assert path.exists(), f"{path} is missing: run python -m tests.hostile.make_corpus"
    return {p.name: p.read_bytes() for p in path.iterdir()} if path.is_dir() else path.read_bytes()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.family}-{c.name}")
def test_hostile_case(case: Case, tmp_path):
    content = _content(case)
    MARKER.unlink(missing_ok=True)
    with watchdog():
        if case.expect is None:
            result = run_entry(case.entry, content, case.name, tmp_path, ARCH, case.options)
            case.check(result)
        else:
            with pytest.raises(UserError, match=case.expect) as err:
                run_entry(case.entry, content, case.name, tmp_path, ARCH, case.options)
            assert case.name in str(err.value), f"the message does not name the file: {err.value}"
    assert not MARKER.exists(), "a pickled payload ran"


def test_committed_corpus_matches_the_cases():
    committed = {p.relative_to(FILES).as_posix() for p in FILES.glob("*/*")}
    expected = {f"{c.family}/{c.name}" for c in CASES if not c.generated}
    assert committed == expected
    for path in FILES.rglob("*"):
        assert not path.is_file() or path.stat().st_size <= 200_000, f"{path} is too large to commit"
