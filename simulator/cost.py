"""CostModel: the total cost of a run, in USD, from the product owner's source article.

The article states C_total = C_compute + C_storage + C_human, with C_compute = n x P_gpu x T
(energy: nodes x power x time), C_storage = (M + D) x price per GB and
C_human = N x W x T_develop. PeakSim makes each term concrete:

* compute: provisioned node-seconds x price per node-hour (what the cloud bills);
* energy: integral of node power (linear in utilisation between idle and busy draw) x
  electricity price x PUE (the article's n x P_gpu x T);
* storage: (model size per replica x replicas + data) x price per GB-month x months;
* human: engineers x monthly cost x effort hours / hours per month;
* SLA penalty: violating requests x penalty per violation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SECONDS_PER_HOUR = 3600.0


def compute_usd(node_seconds: float, price_per_hour_usd: float) -> float:
    """Billed compute: node-seconds x USD per node-hour."""
    return node_seconds / SECONDS_PER_HOUR * price_per_hour_usd


def energy_kwh(node_seconds: float, busy_seconds: float, idle_w: float, busy_w: float) -> float:
    """Energy (kWh) of nodes drawing idle_w when idle and busy_w when serving."""
    idle_s = max(node_seconds - busy_seconds, 0.0)
    return (idle_w * idle_s + busy_w * busy_seconds) / SECONDS_PER_HOUR / 1000.0


def energy_usd(kwh: float, usd_per_kwh: float, pue: float = 1.0) -> float:
    """Electricity cost of ``kwh`` at the facility's PUE."""
    return kwh * pue * usd_per_kwh


def storage_usd(model_gb: float, replicas: float, data_gb: float, usd_per_gb_month: float,
                months: float = 1.0) -> float:
    """(model per replica x replicas + data) GB x USD per GB-month x months."""
    return (model_gb * replicas + data_gb) * usd_per_gb_month * months


def human_usd(engineers: float, monthly_usd: float, effort_hours: float,
              hours_per_month: float) -> float:
    """engineers x monthly cost x (effort hours / hours per month)."""
    return engineers * monthly_usd * effort_hours / hours_per_month


@dataclass(frozen=True)
class CostBreakdown:
    """Cost of a run by component, USD."""

    compute: float
    energy: float
    storage: float
    human: float
    sla_penalty: float

    @property
    def total(self) -> float:
        return self.compute + self.energy + self.storage + self.human + self.sla_penalty

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["total"] = self.total
        return d
