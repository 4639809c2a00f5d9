"""Events that happen on a healthy gateway and must not page (never labelled).

A new team appearing and the daily ramp are part of the traffic model (``World.teams``,
``traffic.diurnal``); here are the operational ones.
"""

from __future__ import annotations

from gatewatch.sim.rows import US
from gatewatch.sim.state import Downtime, Sim


def rolling_deploy(sim: Sim, at: int) -> None:
    """``fly deploy`` with the rolling strategy: one machine at a time, SIGINT, clean exit, restart."""
    for m, machine in enumerate(sim.world.gateway):
        t = at + m * 60 * US
        sim.add_line(t, machine, "runner", "Sending signal SIGINT to main child")
        sim.add_line(t + 1_200_000, machine, "runner", "Main child exited normally with code: 0")
        sim.add_line(t + 2 * US, machine, "runner", "Starting clean up.")
        if m == 0 or sim.rng.random() < 0.5:
            sim.add_line(t + 3 * US, machine, "proxy",
                         "[PR04] could not find a good candidate within 2 attempts at load balancing", "error")
        sim.add_line(t + 9 * US, machine, "runner", "Starting machine")
        sim.add_app_log(t + 15 * US, machine, "Starting LiteLLM Proxy Server")
        sim.downtimes.append(Downtime(m, t, t + 16 * US, reroute=1.0, killed=False))


BENIGN = {"rolling_deploy": rolling_deploy}
