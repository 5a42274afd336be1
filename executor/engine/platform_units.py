"""Units of work of a build for one or several target platforms.

With one platform a unit is ``(platform, stage index)``. With several, a stage is built once,
as unit ``("shared", index)``, when nothing in it depends on the target platform: its
``FROM`` resolves to the same image and platform for every target (``FROM
--platform=$BUILDPLATFORM ...``), it declares no ``ARG TARGETPLATFORM|TARGETOS|TARGETARCH|
TARGETVARIANT`` and every stage it reads is shared too. Everything else is built per platform,
concurrently through the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dockerfile.instructions import Arg
from .plan import BuildPlan

SHARED = "shared"
TARGET_ARGS = {"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"}

Unit = tuple[str, int]


def _reads_target(plan: BuildPlan, index: int) -> bool:
    return any(isinstance(i, Arg) and any(d.name in TARGET_ARGS for d in i.args)
               for i in plan.nodes[index].stage.instructions)


def assign_units(plans: dict[str, BuildPlan]) -> dict[tuple[str, int], str]:
    """``(platform, stage index) -> unit key`` (SHARED or the platform) for every needed stage."""
    out: dict[tuple[str, int], str] = {}
    platforms = list(plans)
    indexes = sorted(set().union(*(pl.order for pl in plans.values())))
    for i in indexes:
        needing = [p for p in platforms if i in plans[p].order]
        nodes = [plans[p].nodes[i] for p in needing]
        shared = (len(platforms) > 1 and len(needing) == len(platforms)
                  and len({(n.base, n.platform) for n in nodes}) == 1
                  and not _reads_target(plans[needing[0]], i)
                  and all(out.get((needing[0], d)) == SHARED for d in nodes[0].deps))
        for p in needing:
            out[(p, i)] = SHARED if shared else p
    return out


@dataclass
class UnitGraph:
    """``order`` of units, their ``deps``, the plan platform each is planned with
    (``platform_of``) and the units whose layers an output image holds (``exported``)."""

    order: list[Unit]
    deps: dict[Unit, frozenset[Unit]]
    platform_of: dict[Unit, str]
    exported: set[Unit]


def unit_graph(plans: dict[str, BuildPlan], units: dict[tuple[str, int], str]) -> UnitGraph:
    deps: dict[Unit, frozenset[Unit]] = {}
    platform_of: dict[Unit, str] = {}
    exported: set[Unit] = set()
    for p, plan in plans.items():
        for i in plan.order:
            u = (units[(p, i)], i)
            platform_of.setdefault(u, p)
            deps[u] = frozenset((units[(p, d)], d) for d in plan.nodes[i].deps)
            if i in plan.exported:
                exported.add(u)
    order = sorted(deps, key=lambda u: (u[1], u[0] != SHARED, u[0]))
    return UnitGraph(order=order, deps=deps, platform_of=platform_of, exported=exported)
