"""Input files sent with experiment tasks to workers that do not share the client's disk.

A scenario names files by path (trace, profile, diurnal CSV, spot trace, plugin file). A
remote Dask worker usually cannot read the client's paths, so the client sends the bytes of
every input file with the tasks (:func:`bundle`, once per experiment, broadcast to the
workers) and the worker makes them readable under the client's paths (:func:`installed`): a
file the worker already has at that path with the same SHA-256 is read in place; any other
is written once into a content-addressed folder of the worker's temporary directory and
:meth:`simulator.scenario.Scenario.resolve_path` reads it from there
(:func:`local_copy`). Nothing else changes: the scenario, its field values and the results
are the same as on the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

#: client path (normalised, absolute) -> the local file to read instead
_copies: dict[str, Path] = {}


def _key(path: Path | str) -> str:
    return os.path.normpath(os.path.abspath(str(path)))


def local_copy(path: Path) -> Path:
    """Where to read the client's ``path`` in this process (``path`` itself unless a copy
    was installed for it)."""
    if not _copies:
        return path
    return _copies.get(_key(path), path)


def bundle(paths: Iterable[str | Path]) -> dict[str, bytes]:
    """The bytes of each existing file, by normalised absolute path (files the client cannot
    read are left out: the worker then reports them missing, as the client would)."""
    out: dict[str, bytes] = {}
    for p in paths:
        k = _key(p)
        if k in out:
            continue
        try:
            out[k] = Path(k).read_bytes()
        except OSError:
            continue
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same_file(path: Path, digest: str) -> bool:
    try:
        return _sha(path.read_bytes()) == digest
    except OSError:
        return False


@contextlib.contextmanager
def installed(files: Mapping[str, bytes], root: Path | None = None) -> Iterator[None]:
    """While the block runs, reading any of ``files`` (client path -> bytes) reads those bytes.

    ``root``: where copies go (default ``<tmp>/peaksim-inputs``); each file lands in
    ``<root>/<sha256>/<name>``, written atomically, so concurrent tasks on one worker share it.
    """
    root = root or Path(tempfile.gettempdir()) / "peaksim-inputs"
    added: dict[str, Path] = {}
    for client_path, data in files.items():
        digest = _sha(data)
        here = Path(client_path)
        if _same_file(here, digest):
            continue
        dest = root / digest / (here.name or "input")
        if not _same_file(dest, digest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        added[_key(client_path)] = dest
    before = dict(_copies)
    _copies.update(added)
    try:
        yield
    finally:
        _copies.clear()
        _copies.update(before)
