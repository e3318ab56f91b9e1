"""Writing results: every file a user may keep is written atomically (temp file + rename)."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level with dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename tmp onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN written as null)."""
    text = json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Atomically write a DataFrame as Parquet."""
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def safe_name(text: str, fallback: str = "scenario") -> str:
    """``text`` as one file-name component: letters, digits, ``._-`` kept, runs of anything
    else (``/``, ``..`` prefixes, spaces, control characters) become ``_``; never empty, never
    hidden, at most 80 characters. A scenario's name cannot choose a path with it."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:80].strip("._-")
    return name or fallback


def default_out_dir(scenario_name: str, root: Path = Path("results")) -> Path:
    """``results/<scenario>-<UTC timestamp>/`` (the name made safe: always inside ``root``)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{safe_name(scenario_name)}-{stamp}"
