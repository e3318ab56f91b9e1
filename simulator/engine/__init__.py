"""The SimPy engine, as parts with one owner per concept (see :mod:`.simulation` and
docs/architecture.md): run a scenario with :class:`Simulation` and read its :class:`RunRecord`.
"""

from simulator.engine.record import PoolRecord, RunRecord
from simulator.engine.simulation import Simulation

__all__ = ["PoolRecord", "RunRecord", "Simulation"]
