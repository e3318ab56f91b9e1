"""PeakSim: a discrete-event simulator of a recommendation inference cluster.

Public API::

    from simulator import load_scenario, run
    res = run(load_scenario("scenarios/singles_day.toml"), seed=1)
    res.summary["latency_ms"]["p99"]
"""

from simulator.api import RunResult, run
from simulator.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict

__version__ = "0.1.0"

__all__ = [
    "RunResult",
    "Scenario",
    "ScenarioError",
    "__version__",
    "load_scenario",
    "run",
    "scenario_from_dict",
]
