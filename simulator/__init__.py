"""simulator package: the reference agent on a simulated SimPy network.

Public API: the network (``Network``, ``LinkSpec``, ``Latency``, ``Partition``), the
presence-server model (``Notifier``), the agent host (``AgentHost``), workloads
(``Workload``, ``load_workload``, ``workload_from_mapping``, ``WorkloadError``) and runs
(``build``, ``run_workload``, ``Simulation``, ``RunResult``), farms (``run_farm``: shards
in-process or on Dask, ``simulator.farm``). The CLI is ``simulator.cli``.
"""

from simulator.cluster import run_farm
from simulator.host import AgentHost
from simulator.merge import RunResult
from simulator.metrics import Metrics
from simulator.network import Latency, LinkSpec, Network, Partition
from simulator.notifier import Notifier
from simulator.run import Simulation, build, run_workload
from simulator.workload import Workload, WorkloadError, load_workload, workload_from_mapping

__all__ = [
    "AgentHost",
    "Latency",
    "LinkSpec",
    "Metrics",
    "Network",
    "Notifier",
    "Partition",
    "RunResult",
    "Simulation",
    "Workload",
    "WorkloadError",
    "build",
    "load_workload",
    "run_farm",
    "run_workload",
    "workload_from_mapping",
]
