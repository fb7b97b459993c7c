"""What is fixed for one run: the method, its module's graphdef, optimizer, shardings and the compiled step.

The model is used the pure way: `nnx.split` once into a static graphdef and plain
pytrees; the jitted step merges them inside, so it takes and returns pytrees with
explicit shardings and donates the old state. The loop (`jvssl.train`) and the
evaluators that fine-tune (`jvssl.evaluate.finetune`) both drive a `Trainer`; it
imports neither.
"""

import dataclasses
import math
from typing import Any

import einops
import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jvssl import checkpointing, flops, optim, registry, sharding
from jvssl.data import pipeline
from jvssl.data.device import normalize_video
from jvssl.errors import ConfigError
from jvssl.methods.base import PredictFn, RunLength


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 []: optimizer steps taken.
  params: Any  # Pure dict of the trainable nnx.Param values.
  rest: Any  # Pure dict of every other variable (fixed tables, batch statistics, teachers).
  opt_state: Any
  rng: jax.Array  # The run's key; step s uses fold_in(rng, s).
  nonfinite_step: jax.Array  # int32 []: first step whose loss or gradient was not finite, -1 if none.


@dataclasses.dataclass(frozen=True)
class Predictor:
  """What evaluation sees of a model: its state and the method's named functions (`Method.predict_fns`)."""

  graphdef: Any
  params: Any
  rest: Any
  fns: dict[str, PredictFn]

  def module(self) -> nnx.Module:
    return nnx.merge(self.graphdef, self.params, self.rest, copy=True)

  def encoder_params(self) -> Any:
    """The backbone's weights (`params["encoder"]`), what fine-tuning starts from."""
    return self.params["encoder"]

  def encoder_rest(self) -> Any:
    return self.rest.get("encoder", {})


def run_length(config) -> RunLength:
  """The number of steps and steps per epoch of the training run `config` describes."""
  num_examples = pipeline.num_train_examples(config.data)
  steps_per_epoch = num_examples / config.data.batch_size
  num_steps = config.train.num_steps or int(math.ceil(config.train.num_epochs * steps_per_epoch))
  if num_steps <= 0:
    raise ConfigError("training has no steps: set train.num_steps or train.num_epochs")
  return RunLength(num_steps, steps_per_epoch)


class Trainer:
  """The run's method, graphdef, optimizer, shardings and compiled step, for a run of num_steps steps."""

  def __init__(self, config, mesh: jax.sharding.Mesh, num_steps: int, steps_per_epoch: float):
    self.config = config
    self.mesh = mesh
    self.run = RunLength(num_steps, steps_per_epoch)
    self.rules = sharding.rules_from_config(config)
    sharding.check_batch(config.data.batch_size, config.train.grad_accum_steps, mesh, self.rules)
    self.method = registry.METHODS.get(config.method.name)(config, self.run)
    self.inputs = self.method.inputs()
    abstract = nnx.eval_shape(lambda: self.method.build(nnx.Rngs(0)))
    self.graphdef, abs_params, abs_rest = nnx.split(abstract, nnx.Param, ...)
    self.schedule = optim.make_schedule(config, num_steps, steps_per_epoch)
    self.tx = optim.make_optimizer(config, nnx.to_pure_dict(abs_params), self.schedule)

    replicated = sharding.replicated(mesh)
    param_shardings = sharding.state_shardings(abs_params, mesh, self.rules)
    abs_opt = jax.eval_shape(self.tx.init, nnx.to_pure_dict(abs_params))
    opt_shardings = optax.tree_map_params(
      self.tx,
      lambda _, s: s,
      abs_opt,
      param_shardings,
      transform_non_params=lambda _: replicated,
      is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct),
    )
    self.state_shardings = TrainState(
      step=replicated,
      params=param_shardings,
      rest=sharding.state_shardings(abs_rest, mesh, self.rules),
      opt_state=opt_shardings,
      rng=replicated,
      nonfinite_step=replicated,
    )
    self._init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
    self._step = jax.jit(
      self._step_fn,
      in_shardings=(self.state_shardings, None),
      out_shardings=(self.state_shardings, replicated),
      donate_argnums=0,
    )
    self._compiled = None
    self.step_flops = None  # FLOPs of one step on one device, from XLA's cost analysis of the compiled step.

  def abstract_state(self) -> TrainState:
    """ShapeDtypeStructs of the state, carrying their shardings (for restoring)."""
    shapes = jax.eval_shape(self._init_fn, jax.random.key_data(jax.random.key(0)))
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.state_shardings)

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

  def predictor(self, state: TrainState) -> Predictor:
    """The model in `state` as evaluators see it."""
    return Predictor(self.graphdef, state.params, state.rest, self.method.predict_fns())

  def method_batch(self, batch: dict) -> dict:
    """A data batch as the method's loss takes it: its modalities, video normalised, one clip unless all_clips."""
    missing = [m for m in self.inputs.modalities if m not in batch]
    if missing:
      raise ConfigError(
        f"method '{self.config.method.name}' needs {missing} in the batch; the data gives {sorted(batch)}"
      )
    out = {m: batch[m] for m in self.inputs.modalities}
    video = normalize_video(batch["video"], self.config.data)
    if video.ndim == 6 and not self.inputs.all_clips:
      video = video[:, 0]
    out["video"] = video
    return out

  def _init_fn(self, key_data) -> TrainState:
    key = jax.random.wrap_key_data(key_data)
    init_key, run_key = jax.random.split(key)
    model = self.method.build(nnx.Rngs(params=init_key))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      rest=rest,
      opt_state=self.tx.init(params),
      rng=jax.random.key_data(run_key),
      nonfinite_step=-jnp.ones((), jnp.int32),
    )

  def _grads(self, params, rest, batch: dict, rng, step):
    """(loss, metrics, rest, grads) of one (micro-)batch."""

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, rest, copy=True)
      loss, metrics = self.method.loss(model, batch, rng, step)
      return loss, (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

    (loss, (metrics, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, metrics, new_rest, grads

  def _accumulated_grads(self, params, rest, batch: dict, rng, step):
    """Mean loss, metrics and gradients over train.grad_accum_steps equal micro-batches, run in sequence.

    Micro-batch j takes rows j, j+k, j+2k, ... so that each device's rows of the
    global batch split locally into its rows of every micro-batch (no data moves).
    Variables such as batch statistics flow from one micro-batch to the next.
    """
    k = self.config.train.grad_accum_steps
    if k == 1:
      return self._grads(params, rest, batch, rng, step)
    micro = {
      name: sharding.constrain(
        einops.rearrange(x, "(b k) ... -> k b ...", k=k), (None, "batch") + (None,) * (x.ndim - 1)
      )
      for name, x in batch.items()
    }

    def one(carry, inputs):
      grad_sum, rest = carry
      j, mb = inputs
      loss, metrics, rest, grads = self._grads(params, rest, mb, jax.random.fold_in(rng, j), step)
      return (jax.tree.map(jnp.add, grad_sum, grads), rest), (loss, metrics)

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grad_sum, rest), (losses, metrics) = jax.lax.scan(one, (zeros, rest), (jnp.arange(k), micro))
    mean = lambda tree: jax.tree.map(lambda x: x.mean(0), tree)
    return losses.mean(), mean(metrics), rest, jax.tree.map(lambda g: g / k, grad_sum)

  def _after_update(self, params, rest, step):
    """The method's non-gradient updates (`Method.update`) on the module holding the new parameters."""
    model = nnx.merge(self.graphdef, params, rest, copy=True)
    self.method.update(model, step)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

  def _step_fn(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    batch = self.method_batch(batch)
    loss, metrics, rest, grads = self._accumulated_grads(state.params, state.rest, batch, rng, state.step)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params, rest = self._after_update(params, rest, state.step)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A non-finite step changes nothing; the loop stops at its next check and saves nothing.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(
      step=state.step + 1,
      params=keep(params, state.params),
      rest=keep(rest, state.rest),
      opt_state=keep(opt_state, state.opt_state),
      rng=state.rng,
      nonfinite_step=jnp.where(~finite & (state.nonfinite_step < 0), state.step, state.nonfinite_step),
    )
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=self.schedule(state.step))
    return new_state, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)


def load_encoder_into(state: TrainState, trainer: Trainer, encoder_params: Any, encoder_rest: Any = None) -> TrainState:
  """Replaces the encoder of a fresh state by given weights (fine-tuning from pretraining).

  encoder_rest: the encoder's other variables (a CNN's batch statistics), if it has any.
  """
  checkpointing.check_compatible(
    checkpointing.tree_shapes(encoder_params), state.params["encoder"], "the initial encoder"
  )
  # Copies: the train step donates its state, and the caller may still use the given weights.
  copy = lambda tree, shardings: jax.device_put(tree, shardings, may_alias=False)
  params = dict(state.params, encoder=copy(encoder_params, trainer.state_shardings.params["encoder"]))
  rest = state.rest
  if encoder_rest:
    checkpointing.check_compatible(
      checkpointing.tree_shapes(encoder_rest), state.rest["encoder"], "the initial encoder's statistics"
    )
    rest = dict(rest, encoder=copy(encoder_rest, trainer.state_shardings.rest["encoder"]))
  # The compiled step takes exactly the state's shardings.
  new = state.replace(params=params, rest=rest, opt_state=trainer.tx.init(params))
  return jax.device_put(new, trainer.state_shardings)
