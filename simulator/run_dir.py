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
             "timeseries_pools.parquet", "events.parquet")
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
def claim(out: Path, command: dict[str, Any], overwrite: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run (see the module docstring); the lock goes when the run does.

    ``command``: what identifies the run in ``scenario.json`` (``source``, ``overrides``,
    ``seed``, ``records``).
    """
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
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as exc:
        raise RunDirError(f"--out {out}: the folder is not writable ({exc.strerror})") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        others = [p for p in out.iterdir() if p.name != LOCK and p not in _peaksim_files(out)]
        ours = _peaksim_files(out)
        if others and not overwrite:
            raise RunDirError(f"--out {out}: the folder holds other files ("
                              f"{', '.join(sorted(p.name for p in others)[:5])}); choose an "
                              "empty folder, or --overwrite to replace PeakSim's files only")
        if ours and not overwrite and not _same_command(out, command):
            raise RunDirError(f"--out {out}: the folder holds another run's results; choose "
                              "another --out, or --overwrite to replace them")
        for p in ours:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        yield out
    finally:
        lock.unlink(missing_ok=True)
