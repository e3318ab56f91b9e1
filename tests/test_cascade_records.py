"""Per-request records of a cascade (end to end): every origin request once, its fate and
latency agreeing with the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.results import load_run
from simulator import run, scenario_from_dict
from tests.test_cascade import cascade, exp_service

STAGES = [{"name": "recall", "pools": ["r"], "candidates_out": 200, "expands": True},
          {"name": "rank", "pools": ["k"], "service": exp_service(8.0),
           "degrade": {"shrink_below_ms": 77, "shrink_to": 0.5, "shrink_quality_loss": 0.01},
           "admission": {"max_queue_length": 6}},
          {"name": "rerank", "pools": ["x"], "service": exp_service(4.0),
           "candidates_out": 10}]


def _raw(**sim: Any) -> dict[str, Any]:
    return cascade(STAGES, [("r", 2), ("k", 1), ("x", 1)], 100.0, duration=150.0,
                   warmup=15.0, slo_ms=80.0, service=exp_service(3.0),
                   simulation={"duration_s": 150.0, "warmup_s": 15.0, "seed": 3, **sim})


def test_records_agree_with_the_summary() -> None:
    res = run(scenario_from_dict(_raw()), records="all")
    r, s = res.records, res.summary
    assert s["records"] == "all"
    assert len(r) == s["requests"]["arrived_incl_warmup"] == r["id"].nunique()
    assert list(r["id"]) == list(range(len(r)))
    win = r[r["arrival_s"] >= s["warmup_s"]]
    by = win["outcome"].value_counts()
    assert by.get("completed", 0) == s["requests"]["completed"]
    assert by.get("dropped", 0) == s["requests"]["dropped"] > 0
    assert by.get("in_flight", 0) == s["requests"]["in_flight"]
    lost = win[win["outcome"] == "dropped"]
    assert set(lost["ended_at"]) <= {f"rank: {k.split(': ')[1]}" for k in s["requests"]["lost"]}
    done = win[win["outcome"] == "completed"]
    assert (done["finish_s"] >= done["arrival_s"]).all()
    assert (done["candidates"] == 10).all()
    assert np.percentile(done["latency_ms"], 50) == pytest.approx(s["latency_ms"]["p50"],
                                                                   rel=0.01)
    assert done["quality_loss"].sum() == pytest.approx(s["degradation"]["quality_loss_total"])
    assert done["quality_loss"].gt(0).any()
    late = (done["latency_ms"] > 80.0).sum() + len(lost)
    assert late + s["sla"]["in_flight_violations"] == s["sla"]["violations"]
    assert r.loc[r["outcome"] == "in_flight", "finish_s"].isna().all()


def test_sampled_records_and_the_run_folder(tmp_path: Path) -> None:
    full = run(scenario_from_dict(_raw()), records="all").records
    part = run(scenario_from_dict(_raw()), records="sample:0.3").records
    n = len(full)
    assert abs(len(part) - 0.3 * n) < 4 * np.sqrt(n * 0.3 * 0.7)
    # the same requests, the same fates: the sample is of the run, not another run
    merged = part.merge(full, on="id", suffixes=("", "_all"))
    assert (merged["outcome"] == merged["outcome_all"]).all()

    import tomli_w
    from click.testing import CliRunner

    from simulator.cli import main

    scen = tmp_path / "c.toml"
    scen.write_bytes(tomli_w.dumps(_raw(records="all")).encode())
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(scen), "--out", str(out)])
    assert res.exit_code == 0, res.output
    loaded = load_run(out)
    assert loaded.records is not None and len(loaded.records) == n


def test_queue_wait_metric_is_refused_for_a_cascade() -> None:
    from simulator.experiment import check_metrics

    with pytest.raises(ValueError, match=r"wait_exceeds:5.*cascade has no one queue"):
        check_metrics(["wait_exceeds:5"], scenario_from_dict(_raw()))


def test_timeouts_and_cap_sheds_counted_apart_as_a_single_stage_run() -> None:
    """A stage's timeouts and memory-cap sheds are requests.timed_out and shed_by_cap (and the
    records' outcomes), not folded into dropped, so compare and sweep columns mean the same
    in a cascade and a single-stage run."""
    stages = [dict(STAGES[0]), {**STAGES[1], "admission": {"timeout_ms": 30}}, STAGES[2]]
    raw = cascade(stages, [("r", 2), ("k", 1), ("x", 1)], 130.0, duration=120.0,
                  warmup=10.0, slo_ms=80.0, service=exp_service(3.0))
    res = run(scenario_from_dict(raw), records="all")
    s, r = res.summary["requests"], res.records
    assert s["timed_out"] == s["lost"]["rank: timed_out"] > 0
    assert s["dropped"] == sum(v for k, v in s["lost"].items()
                               if not k.endswith((": timed_out", ": shed_by_cap")))
    win = r[r["arrival_s"] >= 10.0]
    assert (win["outcome"] == "timed_out").sum() == s["timed_out"]
    assert set(win.loc[win["outcome"] == "timed_out", "ended_at"]) == {"rank: timed_out"}
    assert s["arrived"] == (s["completed"] + s["dropped"] + s["timed_out"] + s["shed_by_cap"]
                            + s["in_flight"])
