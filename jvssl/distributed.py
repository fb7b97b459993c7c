"""Multi-host start-up: one jvssl process per host (TPU VM) or per GPU, joined by JAX's own runtime.

`initialize` must run before anything touches a JAX device. Where the cluster
is found:
  explicit flags  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
  SLURM           jax.distributed.initialize() reads SLURM_* (srun, one task per GPU or per node)
  Cloud TPU pods  jax.distributed.initialize() asks the TPU VM's metadata server (multi-slice: the MEGASCALE_* values)
  otherwise       a single process: nothing to join
"""

import dataclasses
import logging
import os

import jax

from jvssl.errors import ConfigError

log = logging.getLogger("jvssl")


@dataclasses.dataclass(frozen=True)
class Cluster:
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None


def detect(cluster: Cluster, environ=os.environ) -> str:
  """How this process joins the others: "explicit", "auto" (SLURM or TPU pod) or "single"."""
  given = [cluster.coordinator_address is not None, cluster.num_processes is not None, cluster.process_id is not None]
  if any(given):
    if not all(given):
      raise ConfigError("--coordinator_address, --num_processes and --process_id go together: give all three")
    if not 0 <= cluster.process_id < cluster.num_processes:
      raise ConfigError(f"--process_id {cluster.process_id} is not in [0, {cluster.num_processes})")
    return "explicit"
  if int(environ.get("SLURM_NTASKS", "1")) > 1:
    return "auto"
  # Set on every worker of a multi-host Cloud TPU slice (a single-host VM lists one worker).
  if len([h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
    return "auto"
  # Multi-slice TPU (launch/tpu_pod.sh --slices=N exports it): slices of one host each list one worker above.
  if int(environ.get("MEGASCALE_NUM_SLICES", "1")) > 1:
    return "auto"
  return "single"


def slurm_local_devices(environ=os.environ) -> list[int] | None:
  """All the node's GPUs when SLURM runs one task per node; None (JAX's default: one GPU per task) otherwise."""
  if environ.get("SLURM_NTASKS_PER_NODE") == "1" and environ.get("SLURM_GPUS_ON_NODE", "").isdigit():
    return list(range(int(environ["SLURM_GPUS_ON_NODE"])))
  return None


def initialize(cluster: Cluster = Cluster(), environ=os.environ) -> None:
  """Joins the other processes of this job (if any); afterwards jax.devices() spans all hosts."""
  how = detect(cluster, environ)
  if how == "single":
    return
  # CPU-only jobs (tests, CPU clusters) need a collectives backend across processes; accelerators
  # bring their own (NCCL, ICI), so this only matters when the devices are CPUs.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if how == "explicit":
    jax.distributed.initialize(
      coordinator_address=cluster.coordinator_address,
      num_processes=cluster.num_processes,
      process_id=cluster.process_id,
    )
  else:
    jax.distributed.initialize(local_device_ids=slurm_local_devices(environ))
  log.info(
    "process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def is_main() -> bool:
  """Process 0 logs, writes the config and the summaries; every process saves its checkpoint shards."""
  return jax.process_index() == 0
