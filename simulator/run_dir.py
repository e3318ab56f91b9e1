"""The output folder of one ``peaksim run``: never mixed with another run's files.

Before any simulation :func:`claim` checks the folder can be written, takes a lock that keeps
a second live run out (``.peaksim.lock`` holding the owner's pid; a lock whose process is gone
is taken over), and makes sure no earlier results stay beside the new ones: a folder holding
anything is refused unless it holds only a finished PeakSim run of the same command (same
scenario source, overrides, seed and records mode) or ``overwrite`` is given; in both cases
PeakSim's own files are removed first (other files are left alone, and with them present the
folder is refused without ``overwrite``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: what a run writes (and the report folder ``peaksim report`` adds)
RUN_FILES = ("summary.json", "scenario.json", "timeseries.parquet", "records.parquet",
             "timeseries_pools.parquet", "events.parquet", "timeseries_e2e.parquet")
RUN_DIRS = ("report",)
LOCK = ".peaksim.lock"


class RunDirError(ValueError):
    """The output folder cannot take this run (the message says why and what to do)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_command(out: Path, command: dict[str, Any]) -> bool:
    try:
        done = json.loads((out / "scenario.json").read_text())
    except (OSError, ValueError):
        return False
    if not (out / "summary.json").is_file():
        return False
    return bool(all(done.get(k) == v for k, v in command.items()))


def _peaksim_files(out: Path) -> list[Path]:
    found = [out / f for f in RUN_FILES if (out / f).exists()]
    found += [out / d for d in RUN_DIRS if (out / d).is_dir()]
    found += [p for p in out.glob(".*.tmp")]  # a killed run's temporary files
    return found


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Create ``out`` if needed and hold its lock; refuse when a live process holds it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    lock = out / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and _alive(pid):
            raise RunDirError(f"--out {out}: another PeakSim run (pid {pid}) is writing into "
                              "this folder; choose another --out or wait for it") from None
        lock.unlink(missing_ok=True)  # its owner is gone: take it over
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # another process took it over first
            raise RunDirError(f"--out {out}: another PeakSim run is starting in this folder; "
                              "choose another --out or wait for it") from None
    except OSError as exc:
        raise RunDirError(f"--out {out}: the folder is not writable ({exc.strerror})") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _remove(paths: list[Path]) -> None:
    for p in paths:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


@contextlib.contextmanager
def claim(out: Path, command: dict[str, Any], overwrite: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run (see the module docstring); the lock goes when the run does.

    ``command``: what identifies the run in ``scenario.json`` (``source``, ``overrides``,
    ``seed``, ``records``).
    """
    with _locked(out):
        others = [p for p in out.iterdir() if p.name != LOCK and p not in _peaksim_files(out)]
        ours = _peaksim_files(out)
        if others and not overwrite:
            raise RunDirError(f"--out {out}: the folder holds other files ("
                              f"{', '.join(sorted(p.name for p in others)[:5])}); choose an "
                              "empty folder, or --overwrite to replace PeakSim's files only")
        if ours and not overwrite and not _same_command(out, command):
            raise RunDirError(f"--out {out}: the folder holds another run's results; choose "
                              "another --out, or --overwrite to replace them")
        _remove(ours)
        yield out


#: result files of each experiment command (beside its run cache ``runs/``)
EXPERIMENT_FILES: dict[str, tuple[str, ...]] = {
    "compare": ("compare.json", "runs.parquet", "timeseries.parquet"),
    "sweep": ("sweep.json", "sweep.parquet"),
    "plan": ("plan.json", "runs.parquet"),
}
#: the file that says which command a folder's results belong to
_MARKER = {"summary.json": "run", "compare.json": "compare", "sweep.json": "sweep",
           "sweep.parquet": "sweep", "plan.json": "plan"}
CACHE = "runs"


@contextlib.contextmanager
def claim_experiment(out: Path, kind: str, overwrite: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one ``compare``, ``sweep`` or ``plan`` (``kind``).

    Its finished runs in ``out/runs`` are keyed by content (:mod:`simulator.run_cache`), so
    any experiment of the same kind may reuse the folder: that is how an interrupted one
    resumes. The previous results of that kind are removed before any run, so a stopped
    rerun never leaves old results beside new runs. A folder holding another command's
    results, or files PeakSim did not write, is refused unless ``overwrite`` (which removes
    PeakSim's files, the run cache included, and leaves the others alone).
    """
    with _locked(out):
        names = {n for files in EXPERIMENT_FILES.values() for n in files}
        names |= set(RUN_FILES)
        ours = [p for p in out.iterdir() if p.name in names or p.name in (CACHE, *RUN_DIRS)
                or (p.name.startswith(".") and p.name.endswith(".tmp"))]
        others = [p for p in out.iterdir() if p.name != LOCK and p not in ours]
        kinds = sorted({k for f, k in _MARKER.items() if (out / f).is_file()} - {kind})
        if others and not overwrite:
            raise RunDirError(f"--out {out}: the folder holds other files ("
                              f"{', '.join(sorted(p.name for p in others)[:5])}); choose an "
                              "empty folder, or --overwrite to replace PeakSim's files only")
        if kinds and not overwrite:
            raise RunDirError(f"--out {out}: the folder holds the results of a PeakSim "
                              f"{' and '.join(kinds)}; choose another --out, or --overwrite "
                              "to replace them")
        if overwrite:
            _remove(ours)
        else:
            _remove([p for p in ours if p.name in (*EXPERIMENT_FILES[kind], *RUN_DIRS)
                     or p.name.endswith(".tmp")])
        yield out
