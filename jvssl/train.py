"""The one generic training loop. It knows nothing about any method: the `Trainer`
(`jvssl.trainer`) asks the method for its module and loss; this loop owns the rest of a
run (data order, checkpoints, logging, preemption) and calls back whoever wants to
evaluate (`jvssl.main` passes the evaluators of `config.evals`).
"""

import dataclasses
import json
import logging
import math
import signal
import threading
import time
from typing import Callable

import jax
import numpy as np

from jvssl import checkpointing, flops, initialize, sharding
from jvssl.config import changed_fields, to_json
from jvssl.data import pipeline
from jvssl.errors import NonFiniteLossError
from jvssl.trainer import Trainer, TrainState, load_encoder_into, run_length

log = logging.getLogger("jvssl")

# on_eval(trainer, state, names, step) -> {"name/metric": value}: evaluates the evaluators `names` of
# config.evals on the model in `state` after `step` steps (see jvssl.evaluate.common.Evaluation).
EvalCallback = Callable[[Trainer, TrainState, list[str], int], dict]


class _Preemption:
  """Turns SIGTERM (a preempted TPU VM or a SLURM time limit) into save-and-exit."""

  def __init__(self, enabled: bool):
    self.enabled = enabled
    self.requested = False
    self._previous = None

  def __enter__(self):
    if self.enabled and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class TrainResult:
  trainer: Trainer
  state: TrainState
  metrics: dict  # The last evaluation's metrics, by "evaluator/metric".


def record_config(workdir: str, config, resumed_step: int | None) -> None:
  """Writes workdir/config.json. A run resumed with a config other than the one saved keeps the saved one as
  config-to-step<N>.json (what steps up to N were trained with) and logs the fields that changed."""
  path = checkpointing.as_path(workdir) / "config.json"
  new = to_json(config)
  if resumed_step is not None and path.exists():
    old = path.read_text()
    changes = changed_fields(json.loads(old), json.loads(new))
    if changes:
      kept = path.parent / f"config-to-step{resumed_step}.json"
      kept.write_text(old)
      shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
      log.warning("resuming at step %d with a changed config (the saved one kept as %s): %s", resumed_step, kept, shown)
  path.write_text(new)


def train(
  config,
  workdir: str | None,
  *,
  mesh: jax.sharding.Mesh | None = None,
  init_encoder=None,
  on_eval: EvalCallback | None = None,
  writer=None,
  quiet: bool = False,
) -> TrainResult:
  """Trains `config` to the end, resuming from workdir's latest checkpoint if there is one.

  workdir: a local path or a URL such as gs://bucket/run; None trains in memory only (no
  checkpoints, no files). A damaged newest checkpoint is moved aside and the run resumes from
  the newest good one (`checkpointing.Checkpointer.restore_latest`). `init_encoder`
  ((params, rest) of an encoder) replaces the initial encoder weights. `on_eval` is called
  with the names of config.evals due every `every_steps` (not at the end: the caller
  evaluates the result).
  """
  mesh = mesh or sharding.make_mesh(config.mesh)
  run = run_length(config)
  num_steps = run.num_steps
  trainer = Trainer(config, mesh, run.num_steps, run.steps_per_epoch)
  ckpt = None
  state = None
  if workdir is not None:
    checkpointing.check_writable(workdir)
    ckpt = checkpointing.Checkpointer(
      workdir,
      keep=config.train.keep_checkpoints,
      keep_every=config.train.keep_every_steps,
      async_save=config.train.async_checkpointing,
    )
    restored = ckpt.restore_latest(trainer.abstract_state())
    if restored is not None:
      resumed, state, _ = restored
      log.info("resumed from %s/%d", ckpt.directory, resumed)
    # Written once the checkpoint has restored, so that a refused resume leaves the run's record as it was.
    if jax.process_index() == 0:
      record_config(workdir, config, resumed_step=None if restored is None else restored[0])
  if state is None:
    state, init_report = initialize.initial_state(config, trainer)
    for line in init_report:
      log.info("init: %s", line)
    if init_encoder is not None:
      state = load_encoder_into(state, trainer, *init_encoder)
  start = int(state.step)

  batches = pipeline.device_iterator(
    pipeline.train_dataset(config, start_step=start, inputs=trainer.inputs),
    mesh,
    trainer.rules,
    config.data.prefetch_batches,
  )
  progress = _Progress(
    start, num_steps, config.data.batch_size, flops.peak_tflops(flops.device_kind(), config.train.peak_tflops)
  )
  history = []
  eval_metrics: dict = {}

  def check_finite():
    bad = int(state.nonfinite_step)
    if bad >= 0:
      kept = ckpt.latest_step() if ckpt else None
      # nonfinite_step is the step's index (0 for the first); "step N" is after N steps everywhere else.
      raise NonFiniteLossError(
        f"loss or gradient became non-finite at step {bad + 1} (step N is the N-th optimizer step, as in the log"
        " and checkpoint names); stopped before saving"
        + (f" (last good checkpoint: step {kept})" if kept is not None else "")
        + ". Lower optimizer.lr, raise schedule warm-up or set optimizer.grad_clip_norm."
      )

  def checkpoint_due(done: int) -> bool:
    keep_every = config.train.keep_every_steps
    return done % config.train.checkpoint_every_steps == 0 or (keep_every > 0 and done % keep_every == 0)

  try:
    with _Preemption(enabled=ckpt is not None) as preemption:
      for step in range(start, num_steps):
        state, metrics = trainer.step(state, next(batches))
        history.append(metrics)
        done = step + 1
        last = done == num_steps
        stopping = last or preemption.requested
        if done % config.train.log_every_steps == 0 or stopping:
          check_finite()
          summary = {k: float(np.mean([float(m[k]) for m in history])) for k in history[-1]}
          history = []
          # Input that could not be used is counted, never silent (jvssl/data/bad_input.py).
          summary.update({f"skipped/{reason}": float(n) for reason, n in pipeline.skip_counts().items()})
          if workdir is not None and pipeline.skip_counts():
            pipeline.write_bad_files(checkpointing.as_path(workdir) / f"bad_files.{jax.process_index()}.tsv")
          if writer is not None:
            writer.write_scalars(done, {f"train/{k}": v for k, v in summary.items()})
          speed = progress.measure(done, trainer.step_flops)
          if writer is not None:
            writer.write_scalars(done, {f"speed/{k}": v for k, v in speed.items()})
          if not quiet:
            log.info("%s", progress.line(done, summary, speed))
        if ckpt is not None and (checkpoint_due(done) or stopping):
          check_finite()
          ckpt.save(done, state, {"step": done, "config": json.loads(to_json(config))})
        due = [name for name, e in config.evals.items() if e.every_steps and done % e.every_steps == 0 and not last]
        if due and on_eval is not None:
          eval_metrics = on_eval(trainer, state, due, done)
        # `stopping`, not preemption.requested: a SIGTERM that came after the save above stops at the next step.
        if stopping and not last:
          raise SystemExit(f"stopped by SIGTERM at step {done}; checkpoint saved, rerun the same command to resume")
  finally:
    if ckpt is not None:  # Let an in-flight save finish, also when the loop fails.
      ckpt.wait()
      ckpt.close()
  return TrainResult(trainer, state, eval_metrics)


class _Progress:
  """Speed (steps/s, clips/s per device, MFU) and ETA over the recent past, for the log line."""

  def __init__(self, start: int, total: int, batch_size: int, peak_tflops: float | None):
    self.total = total
    self.batch_size = batch_size
    self.peak_tflops = peak_tflops
    self.last_step, self.last_time = start, time.time()

  def measure(self, step: int, step_flops: float | None) -> dict:
    """Speed since the previous call (the first interval includes compilation)."""
    now = time.time()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    return flops.throughput(rate, self.batch_size, step_flops, self.peak_tflops)

  def line(self, step: int, summary: dict, speed: dict) -> str:
    rate = speed["steps_per_s"]
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    values = " | ".join(f"{k} {v:.4g}" for k, v in sorted(summary.items()) if k != "loss")
    mfu = f" | MFU {100 * speed['mfu']:.1f}%" if "mfu" in speed else ""
    tflops = f" | {speed['tflops_per_device']:.3g} TFLOP/s/device" if "tflops_per_device" in speed else ""
    return (
      f"step {step}/{self.total} | loss {summary['loss']:.4f} | {rate:.2f} steps/s | "
      f"{speed['clips_per_s_per_device']:.1f} clips/s/device{tflops}{mfu} | ETA {_duration(eta)} | {values}"
    )


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
