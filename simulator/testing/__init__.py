"""Property-testing tools for PeakSim and for users' own policies (hypothesis).

``strategies`` generates small valid scenarios; ``check_invariants`` verifies a finished run
against the invariants of docs/architecture.md.
"""

from simulator.testing.invariants import InvariantError, check_invariants

__all__ = ["InvariantError", "check_invariants"]
