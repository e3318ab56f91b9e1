"""Property-testing tools for PeakSim and for users' own policies (hypothesis).

* ``strategies`` (``from simulator.testing import strategies as st_peaksim``): small valid
  scenarios, router views (nodes in every lifecycle state), batcher queues (mixed classes and
  ages), request streams (bursts, simultaneous arrivals) and autoscaler metric histories;
* ``check_router``, ``check_batcher``, ``check_autoscaler``: drive a policy through generated
  states and whole small simulations; fail with :class:`PolicyCheckError` and a minimal
  counterexample;
* ``check_invariants(result)``: every whole-run invariant of docs/architecture.md;
  ``check_deterministic(scenario)``: same seed, identical result.

See docs/property-testing.md.
"""

from simulator.testing import strategies
from simulator.testing.autoscaler_checks import check_autoscaler
from simulator.testing.checks import (
    PolicyCheckError,
    check_batcher,
    check_no_starvation,
    check_router,
)
from simulator.testing.invariants import (
    DeterminismError,
    InvariantError,
    check_billing,
    check_clock,
    check_deterministic,
    check_fleet_bounds,
    check_invariants,
    check_queue_limits,
    check_readiness,
    check_sla,
)

__all__ = [
    "DeterminismError",
    "InvariantError",
    "PolicyCheckError",
    "check_autoscaler",
    "check_batcher",
    "check_billing",
    "check_clock",
    "check_deterministic",
    "check_fleet_bounds",
    "check_invariants",
    "check_no_starvation",
    "check_queue_limits",
    "check_readiness",
    "check_router",
    "check_sla",
    "strategies",
]
