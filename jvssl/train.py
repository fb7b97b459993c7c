"""The one generic training loop. It knows nothing about any method: it asks the
method for its module and its loss, and owns everything else (state, optimizer,
shardings, data order, checkpoints, logging, evaluation).

The model is used the pure way: `nnx.split` once into a static graphdef and
plain pytrees; the jitted step merges them inside, so it takes and returns
pytrees with explicit shardings and donates the old state.
"""

import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import einops
import optax
from flax import nnx

from jvssl import checkpointing, flops, optim, registry, sharding
from jvssl.config import to_json
from jvssl.data import pipeline
from jvssl.data.device import normalize_video
from jvssl.errors import ConfigError, NonFiniteLossError

log = logging.getLogger("jvssl")


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 []: optimizer steps taken.
  params: Any  # Pure dict of the trainable nnx.Param values.
  rest: Any  # Pure dict of every other variable (fixed tables, batch statistics, teachers).
  opt_state: Any
  rng: jax.Array  # The run's key; step s uses fold_in(rng, s).
  nonfinite_step: jax.Array  # int32 []: first step whose loss or gradient was not finite, -1 if none.


@dataclasses.dataclass(frozen=True)
class EncoderVars:
  """The backbone alone, as evaluators need it: graphdef + pure dicts."""
  graphdef: Any
  params: Any
  rest: Any

  def module(self) -> nnx.Module:
    return nnx.merge(self.graphdef, self.params, self.rest, copy=True)


def schedule_length(config) -> tuple[int, float]:
  """(number of steps, steps per epoch) of the training run `config` describes."""
  num_examples = pipeline.num_train_examples(config.data)
  steps_per_epoch = num_examples / config.data.batch_size
  num_steps = config.train.num_steps or int(math.ceil(config.train.num_epochs * steps_per_epoch))
  if num_steps <= 0:
    raise ConfigError("training has no steps: set train.num_steps or train.num_epochs")
  return num_steps, steps_per_epoch


class Trainer:
  """What is fixed for one run: the method, graphdef, optimizer, shardings and compiled functions."""

  def __init__(self, config, mesh: jax.sharding.Mesh, num_steps: int, steps_per_epoch: float):
    self.config = config
    self.mesh = mesh
    self.rules = sharding.rules_from_config(config)
    sharding.check_batch(config.data.batch_size, config.train.grad_accum_steps, mesh, self.rules)
    self.method = registry.METHODS.get(config.method.name)(config)
    abstract = nnx.eval_shape(lambda: self.method.build(nnx.Rngs(0)))
    self.graphdef, abs_params, abs_rest = nnx.split(abstract, nnx.Param, ...)
    self.encoder_graphdef = nnx.split(abstract.encoder, nnx.Param, ...)[0]
    self.schedule = optim.make_schedule(config, num_steps, steps_per_epoch)
    self.tx = optim.make_optimizer(config, nnx.to_pure_dict(abs_params), self.schedule)

    replicated = sharding.replicated(mesh)
    param_shardings = sharding.state_shardings(abs_params, mesh, self.rules)
    abs_opt = jax.eval_shape(self.tx.init, nnx.to_pure_dict(abs_params))
    opt_shardings = optax.tree_map_params(
        self.tx, lambda _, s: s, abs_opt, param_shardings, transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    self.state_shardings = TrainState(
        step=replicated, params=param_shardings, rest=sharding.state_shardings(abs_rest, mesh, self.rules),
        opt_state=opt_shardings, rng=replicated, nonfinite_step=replicated)
    self._init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
    self._step = jax.jit(self._step_fn, in_shardings=(self.state_shardings, None),
                         out_shardings=(self.state_shardings, replicated), donate_argnums=0)
    self._compiled = None
    self.step_flops = None  # FLOPs of one step on one device, from XLA's cost analysis of the compiled step.

  def abstract_state(self) -> TrainState:
    """ShapeDtypeStructs of the state, carrying their shardings (for restoring)."""
    shapes = jax.eval_shape(self._init_fn, jax.random.key_data(jax.random.key(0)))
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes,
                        self.state_shardings)

  def init(self, seed: int) -> TrainState:
    with sharding.use(self.mesh, self.rules):
      return self._init(jax.random.key_data(jax.random.key(seed)))

  def compile(self, state: TrainState, batch: dict):
    """Compiles the step for these shapes once (ahead of time, so its cost analysis comes for free)."""
    with sharding.use(self.mesh, self.rules):
      self._compiled = self._step.lower(state, batch).compile()
    self.step_flops = flops.compiled_flops(self._compiled)
    return self._compiled

  def step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    compiled = self._compiled or self.compile(state, batch)
    with sharding.use(self.mesh, self.rules):
      return compiled(state, batch)

  def encoder(self, state: TrainState) -> EncoderVars:
    return EncoderVars(self.encoder_graphdef, state.params["encoder"], state.rest.get("encoder", {}))

  def _init_fn(self, key_data) -> TrainState:
    key = jax.random.wrap_key_data(key_data)
    init_key, run_key = jax.random.split(key)
    model = self.method.build(nnx.Rngs(params=init_key))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=self.tx.init(params),
                      rng=jax.random.key_data(run_key), nonfinite_step=-jnp.ones((), jnp.int32))

  def _grads(self, params, rest, batch: dict, rng):
    """(loss, metrics, rest, grads) of one (micro-)batch."""

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, rest, copy=True)
      loss, metrics = self.method.loss(model, batch, rng)
      return loss, (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

    (loss, (metrics, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, metrics, new_rest, grads

  def _accumulated_grads(self, params, rest, batch: dict, rng):
    """Mean loss, metrics and gradients over train.grad_accum_steps equal micro-batches, run in sequence.

    Micro-batch j takes rows j, j+k, j+2k, ... so that each device's rows of the
    global batch split locally into its rows of every micro-batch (no data moves).
    Variables such as batch statistics flow from one micro-batch to the next.
    """
    k = self.config.train.grad_accum_steps
    if k == 1:
      return self._grads(params, rest, batch, rng)
    micro = {name: sharding.constrain(einops.rearrange(x, "(b k) ... -> k b ...", k=k),
                                      (None, "batch") + (None,) * (x.ndim - 1))
             for name, x in batch.items()}

    def one(carry, inputs):
      grad_sum, rest = carry
      j, mb = inputs
      loss, metrics, rest, grads = self._grads(params, rest, mb, jax.random.fold_in(rng, j))
      return (jax.tree.map(jnp.add, grad_sum, grads), rest), (loss, metrics)

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grad_sum, rest), (losses, metrics) = jax.lax.scan(one, (zeros, rest), (jnp.arange(k), micro))
    mean = lambda tree: jax.tree.map(lambda x: x.mean(0), tree)
    return losses.mean(), mean(metrics), rest, jax.tree.map(lambda g: g / k, grad_sum)

  def _step_fn(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    batch = dict(batch, video=normalize_video(batch["video"], self.config.data))
    loss, metrics, rest, grads = self._accumulated_grads(state.params, state.rest, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params, rest = self.method.after_update(params, rest, state.step)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A non-finite step changes nothing; the loop stops at its next check and saves nothing.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(
        step=state.step + 1, params=keep(params, state.params), rest=keep(rest, state.rest),
        opt_state=keep(opt_state, state.opt_state), rng=state.rng,
        nonfinite_step=jnp.where(~finite & (state.nonfinite_step < 0), state.step, state.nonfinite_step))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=self.schedule(state.step))
    return new_state, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)


def load_encoder_into(state: TrainState, encoder: EncoderVars, trainer: Trainer) -> TrainState:
  """Replaces the encoder of a fresh state by given weights (fine-tuning from pretraining)."""
  checkpointing.check_compatible(checkpointing.tree_shapes(encoder.params), state.params["encoder"],
                                 "the initial encoder")
  # A copy: the train step donates its state, and the caller may still use `encoder`.
  params = dict(state.params, encoder=jax.device_put(encoder.params, trainer.state_shardings.params["encoder"],
                                                     may_alias=False))
  # The compiled step takes exactly the state's shardings.
  return jax.device_put(state.replace(params=params, opt_state=trainer.tx.init(params)), trainer.state_shardings)


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


def train(config, workdir: str | None, *, mesh: jax.sharding.Mesh | None = None,
          init_encoder: EncoderVars | None = None, writer=None, quiet: bool = False) -> TrainResult:
  """Trains `config` to the end, resuming from workdir's latest checkpoint if there is one.

  workdir None trains in memory only (no checkpoints, no files): that is how
  evaluators fine-tune. `init_encoder` replaces the initial encoder weights.
  """
  from jvssl import evaluate  # Evaluators use the trainer, so import here.

  mesh = mesh or sharding.make_mesh(config.mesh)
  num_steps, steps_per_epoch = schedule_length(config)
  trainer = Trainer(config, mesh, num_steps, steps_per_epoch)
  ckpt = None
  state = None
  if workdir is not None:
    checkpointing.check_writable(workdir)
    ckpt = checkpointing.Checkpointer(workdir, keep=config.train.keep_checkpoints,
                                      async_save=config.train.async_checkpointing)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(to_json(config))
    latest = ckpt.latest_step()
    if latest is not None:
      state, _ = ckpt.restore(latest, trainer.abstract_state())
      log.info("resumed from %s/%d", ckpt.directory, latest)
  if state is None:
    state = trainer.init(config.seed)
    if init_encoder is not None:
      state = load_encoder_into(state, init_encoder, trainer)
  start = int(state.step)

  batches = pipeline.device_iterator(pipeline.train_dataset(config, start_step=start), mesh, trainer.rules,
                                     config.data.prefetch_batches)
  progress = _Progress(start, num_steps, config.data.batch_size,
                       flops.peak_tflops(flops.device_kind(), config.train.peak_tflops))
  history = []
  eval_metrics: dict = {}

  def check_finite():
    bad = int(state.nonfinite_step)
    if bad >= 0:
      kept = ckpt.latest_step() if ckpt else None
      raise NonFiniteLossError(
          f"loss or gradient became non-finite at step {bad}; stopped before saving"
          + (f" (last good checkpoint: step {kept})" if kept is not None else "")
          + ". Lower optimizer.lr, raise schedule warm-up or set optimizer.grad_clip_norm.")

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
            pipeline.write_bad_files(os.path.join(workdir, f"bad_files.{jax.process_index()}.tsv"))
          if writer is not None:
            writer.write_scalars(done, {f"train/{k}": v for k, v in summary.items()})
          speed = progress.measure(done, trainer.step_flops)
          if writer is not None:
            writer.write_scalars(done, {f"speed/{k}": v for k, v in speed.items()})
          if not quiet:
            log.info("%s", progress.line(done, summary, speed))
        if ckpt is not None and (done % config.train.checkpoint_every_steps == 0 or stopping):
          check_finite()
          ckpt.save(done, state, {"step": done, "config": json.loads(to_json(config))})
        due = [name for name, e in config.evals.items() if e.every_steps and done % e.every_steps == 0 and not last]
        if due:
          eval_metrics = evaluate.run(config, trainer.encoder(state), mesh, names=due, step=done, writer=writer)
        if preemption.requested and not last:
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
    return (f"step {step}/{self.total} | loss {summary['loss']:.4f} | {rate:.2f} steps/s | "
            f"{speed['clips_per_s_per_device']:.1f} clips/s/device{tflops}{mfu} | ETA {_duration(eta)} | {values}")


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"

