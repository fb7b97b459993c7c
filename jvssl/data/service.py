"""Training input through the tf.data service: preprocessing on CPU workers beside the accelerator hosts.

tf.data's own distributed engine (a dispatcher and workers, `tf.data.experimental.service`)
runs the pipeline of `pipeline.train_dataset` on the workers' cores; each training
process only receives finished batches. `data.service.address=grpc://HOST:PORT` names a
running dispatcher (TensorFlow's `DispatchServer`, with `WorkerServer`s beside it);
`data.service.address=in_process:N` starts a dispatcher and N workers inside the
training process.

The workers share a job's batches dynamically (whichever worker is free takes the
next step), so batches arrive out of order; each carries its step and the
consumer (`in_order`) hands them to the loop in step order. A batch is a pure
function of its step (pipeline.py), so the loop sees exactly the batches of the
local pipeline, and resuming needs no service state.

The graph is serialised to the workers, and a `tf.numpy_function`'s Python stays in
the process that made it. Every jvssl source reads records or samples clip frames in
Python (the folder's PyAV decoding, the TFRecord and TFDS sources' record reads, the
frame sampling of all of them), so their pipelines run on in-process workers only;
`distribute` refuses a remote address for them in one line. Workers in other processes
need those steps as TensorFlow ops.
"""

import re
from typing import Iterator

import tensorflow as tf
from ml_collections import ConfigDict

from jvssl.errors import ConfigError, DataError

# [step, first step of the run, data.service.max_reorder_batches], added to each batch on the worker and removed by
# in_order, which so needs no other word of the run.
STEP_KEY = "_service_step"
_IN_PROCESS = re.compile(r"in_process:(\d+)$")
_servers: dict[int, tuple] = {}  # Workers -> (dispatcher, workers): in-process servers live as long as the process.


def default_config() -> ConfigDict:
  c = ConfigDict()
  c.address = ""  # "" (local tf.data), "grpc://host:port" (a running dispatcher) or "in_process:N" (N workers).
  # Batches a training process may hold while it waits for an earlier step; more means a batch was lost (a worker
  # died with it), which the dynamic sharding of the service does not redo.
  c.max_reorder_batches = 64
  c.max_outstanding_requests = 0  # > 0: at most this many batches requested from the workers at once.
  return c


def check(service: ConfigDict) -> None:
  if service.address and not (service.address.startswith("grpc://") or _IN_PROCESS.match(service.address)):
    raise ConfigError(f"data.service.address must be '', 'grpc://HOST:PORT' or 'in_process:N', not {service.address!r}")
  if service.max_reorder_batches < 1:
    raise ConfigError(f"data.service.max_reorder_batches must be >= 1, not {service.max_reorder_batches}")


def start_in_process(num_workers: int) -> str:
  """The address of a dispatcher with num_workers workers in this process, started on first use."""
  if num_workers < 1:
    raise ConfigError(f"data.service.address in_process:N needs N >= 1 workers, not {num_workers}")
  if num_workers not in _servers:
    dispatcher = tf.data.experimental.service.DispatchServer(tf.data.experimental.service.DispatcherConfig(port=0))
    host_port = dispatcher.target.split("://", 1)[1]
    workers = [
      tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=host_port, port=0)
      )
      for _ in range(num_workers)
    ]
    _servers[num_workers] = (dispatcher, workers)
  return _servers[num_workers][0].target


def resolve_address(service: ConfigDict) -> str:
  match = _IN_PROCESS.match(service.address)
  return start_in_process(int(match.group(1))) if match else service.address


def with_step(batch: dict, step, first_step: int, service: ConfigDict) -> dict:
  key = tf.stack([step, tf.constant(first_step, tf.int64), tf.constant(service.max_reorder_batches, tf.int64)])
  return batch | {STEP_KEY: key}


def distribute(batches: tf.data.Dataset, service: ConfigDict) -> tf.data.Dataset:
  """batches (each with_step, built from a splittable range of steps) served by the service's workers."""
  if not _IN_PROCESS.match(service.address) and _calls_python(batches):
    raise ConfigError(
      f"data.service.address={service.address} runs the input on workers in other processes, which cannot run "
      "this pipeline's Python steps (tf.numpy_function: the source's record reading and clip sampling); "
      "use data.service.address=in_process:N or no service"
    )
  return batches.apply(
    tf.data.experimental.service.distribute(
      processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
      service=resolve_address(service),
      max_outstanding_requests=service.max_outstanding_requests or None,
      # Workers in this process hand batches over in memory: compressing them would only cost CPU.
      compression=None if _IN_PROCESS.match(service.address) else "AUTO",
    )
  )


def _calls_python(ds: tf.data.Dataset) -> bool:
  # The service serialises the graph, and a numpy_function's body stays behind in this process's registry.
  graph = ds._as_serialized_graph().numpy()  # noqa: SLF001 (tf.data's only view of a dataset's graph)
  return b"PyFunc" in graph


def in_order(batches: Iterator[dict]) -> Iterator[dict]:
  """The batches of `batches` (numpy dicts with STEP_KEY) in step order, without STEP_KEY."""
  waiting: dict[int, dict] = {}
  step = None
  for batch in batches:
    this_step, first_step, max_reorder_batches = (int(s) for s in batch.pop(STEP_KEY))
    step = first_step if step is None else step
    waiting[this_step] = batch
    while step in waiting:
      yield waiting.pop(step)
      step += 1
    if len(waiting) > max_reorder_batches:
      raise DataError(
        f"the tf.data service never delivered the batch of step {step} while {len(waiting)} later ones arrived "
        "(a worker lost it?); restart the run to resume from its last checkpoint"
      )
