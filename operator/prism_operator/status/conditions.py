"""kstatus-style conditions, derived from the phase: the same phase always gives the same conditions.

A condition keeps its lastTransitionTime while its status does not change, as kstatus and ArgoCD
expect; reason and message may change without a transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prism_api import Condition, Phase

from .clock import rfc3339

ORDER = ("Ready", "Progressing", "Succeeded", "Failed", "Suspended", "ClusterReady", "Retrying")


@dataclass(frozen=True)
class Cond:
    """What a condition should say now (its transition time comes from the old one)."""

    status: str
    reason: str
    message: str = ""


def _bool(value: bool) -> str:
    return "True" if value else "False"


def phase_conditions(phase: Phase, reason: str, message: str) -> dict[str, Cond]:
    live = phase in (Phase.PENDING, Phase.PROVISIONING, Phase.RUNNING)
    return {
        "Ready": Cond(_bool(phase == Phase.SUCCEEDED), reason, message),
        "Progressing": Cond(_bool(live), reason, message if live else ""),
        "Succeeded": Cond(_bool(phase == Phase.SUCCEEDED), reason if phase == Phase.SUCCEEDED else phase.value),
        "Failed": Cond(_bool(phase == Phase.FAILED), reason if phase == Phase.FAILED else phase.value,
                       message if phase == Phase.FAILED else ""),
        "Suspended": Cond(_bool(phase == Phase.SUSPENDED),
                          reason if phase == Phase.SUSPENDED else "NotSuspended"),
    }


def merge_conditions(old: list[Condition], wanted: dict[str, Cond], now: datetime,
                     generation: int | None) -> list[Condition]:
    """The wanted conditions, in a fixed order, keeping old transition times where status held."""
    previous = {c.type: c for c in old}
    out: list[Condition] = []
    for kind in ORDER:
        cond = wanted.get(kind)
        if cond is None:
            if kind in previous:
                out.append(previous[kind])
            continue
        before = previous.get(kind)
        changed = before is None or before.status != cond.status
        out.append(Condition(
            type=kind,
            status=cond.status,
            reason=cond.reason[:128],
            message=cond.message[:4096],
            last_transition_time=rfc3339(now) if changed else before.last_transition_time,
            observed_generation=generation,
        ))
    return out


def find(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)
