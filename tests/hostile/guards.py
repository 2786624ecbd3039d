"""Shared by the hostile-input tests: a watchdog against hangs, and one runner per loader entry point."""
from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

# Imported here, not inside the watched calls: importing torch and timm on a busy machine can take
# longer than the watchdog allows, and that is not a hang of the loader.
from core import models
from core.data.uploads import load_upload, read_table_columns

#: Seconds one loader call may take before the test fails as a hang. Every hostile input is meant
#: to be refused within a few seconds; this is generous so that a busy shared machine never trips it.
WATCHDOG_S = 30


class Hang(BaseException):
    """Raised by the watchdog. A BaseException, so that a loader's ``except Exception`` cannot swallow it."""


@contextmanager
def watchdog(seconds: float = WATCHDOG_S):
    """Fail with :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM; main thread only)."""
    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, data in files.items():
        (folder / file).write_bytes(data)
    return folder


def run_entry(entry: str, content, name: str, root: Path, arch: str, options: dict | None = None):
    """Call the loader a page would call for this kind of input, as the page calls it."""
    options = options or {}
    if entry == "upload":
        return load_upload(content, name, **options)
    if entry == "columns":
        return read_table_columns(content, name)
    if entry == "checkpoint":
        return models.load(arch, checkpoint=content, checkpoint_name=name, **options)
    if entry == "folder":
        return models.load(str(write_folder(root, name, content)), **options)
    raise ValueError(f"unknown entry {entry!r}")
