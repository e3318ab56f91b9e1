"""Write a borrowed pool's capacity trace (time_s,nodes) from the Alibaba DLRM 2025 trace.

    python benchmarks/borrow_capacity_from_trace.py OUT.csv --training-cluster-gpus 3600 \\
        [--gpus-per-node 8] [--start-s 0] [--duration-s 86400] [--trace PATH]

Lendable nodes at trace time tau = floor(max(0, training_cluster_gpus - GPUs held by the
trace's alive GPU-node (HN) instances at tau) / gpus_per_node): the trace's serving fleet and a
training cluster are assumed to share one pool of training_cluster_gpus GPUs, and training can
lend what serving does not hold (docs/borrowing.md). Trace time --start-s becomes t = 0. The
trace is read where it lies (default /work/shared/data/traces/...), never copied; the output
is what a pool's ``borrow.trace`` reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.borrowing import (  # noqa: E402
    capacity_from_alibaba_trace,
    write_schedule_csv,
)

DEFAULT_TRACE = (ROOT.parent / "shared" / "data" / "traces" / "alibaba_dlrm_2025"
                 / "disaggregated_DLRM_trace.csv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the time_s,nodes CSV to write")
    ap.add_argument("--training-cluster-gpus", type=int, required=True,
                    help="GPUs of the pool shared by training and the trace's serving fleet "
                    "(the trace's HN instances hold 3,076-3,412 GPUs)")
    ap.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per borrowed node")
    ap.add_argument("--start-s", type=float, default=0.0, help="trace time that becomes t = 0")
    ap.add_argument("--duration-s", type=float, default=None,
                    help="length to keep, s (default: to the trace's end)")
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE,
                    help="disaggregated_DLRM_trace.csv")
    a = ap.parse_args(argv)
    try:
        sched = capacity_from_alibaba_trace(
            a.trace, training_cluster_gpus=a.training_cluster_gpus,
            gpus_per_node=a.gpus_per_node, start_s=a.start_s, duration_s=a.duration_s)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_schedule_csv(sched, a.out)
    ch = sched.changes()
    print(f"wrote {a.out}: {len(ch)} steps, nodes {min(n for _, n in ch)}..{sched.max()}, "
          f"at t = 0: {sched.at(0.0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
