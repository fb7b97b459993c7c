"""Optimizers and learning-rate schedules from `config.optimizer` and `config.schedule`."""

import re

import jax
import jax.numpy as jnp
import optax

from jvssl.errors import ConfigError


def batch_scale(config) -> float:
  """data.batch_size / optimizer.lr_base_batch_size (the linear scaling rule), or 1 if lr_base_batch_size is 0."""
  opt = config.optimizer
  return config.data.batch_size / opt.lr_base_batch_size if opt.lr_base_batch_size > 0 else 1.0


def peak_lr(config) -> float:
  return config.optimizer.lr * batch_scale(config)


def make_schedule(config, num_steps: int, steps_per_epoch: float) -> optax.Schedule:
  sched = config.schedule
  lr = peak_lr(config)
  # VideoMAE's scripts scale min_lr with the batch like the peak: at batch 2048 its floor is 8e-5, not 1e-5.
  ends = batch_scale(config) if sched.scale_with_batch else 1.0
  init_lr, min_lr = sched.warmup_init_lr * ends, sched.min_lr * ends
  warmup = sched.warmup_steps or int(round(sched.warmup_epochs * steps_per_epoch))
  warmup = min(warmup, max(num_steps - 1, 0))
  if sched.name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(init_lr, lr, warmup, max(num_steps, warmup + 1), min_lr)
  if sched.name == "warmup_constant":
    return optax.join_schedules([optax.linear_schedule(init_lr, lr, warmup), optax.constant_schedule(lr)], [warmup])
  raise ConfigError(f"schedule.name must be 'warmup_cosine' or 'warmup_constant', not '{sched.name}'")


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def decay_mask(params, patterns) -> dict:
  """True for parameters that get weight decay: those whose path matches none of `patterns`."""
  return jax.tree_util.tree_map_with_path(lambda path, _: not any(p in _path_name(path) for p in patterns), params)


def layer_id(name: str, num_layers: int) -> int:
  """0 for the encoder's embeddings, i+1 for encoder block i, num_layers+1 for the rest (head)."""
  if not name.startswith("encoder/"):
    return num_layers + 1
  match = re.search(r"blocks/(\d+)/", name)
  if match:
    return int(match.group(1)) + 1
  return 0 if re.search(r"patch_|pos_embed|cls_token", name) else num_layers + 1


def layer_scales(params, decay: float) -> dict:
  """BEiT/VideoMAE layer-wise lr decay: layer l gets lr * decay^(L + 1 - l)."""
  names = [_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  blocks = [int(m.group(1)) for n in names if (m := re.search(r"encoder/blocks/(\d+)/", n))]
  num_layers = max(blocks) + 1 if blocks else 0
  return jax.tree_util.tree_map_with_path(
    lambda path, _: decay ** (num_layers + 1 - layer_id(_path_name(path), num_layers)), params
  )


def scale_by_tree(scales) -> optax.GradientTransformation:
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config, params, schedule: optax.Schedule) -> optax.GradientTransformation:
  """AdamW (or SGD) with clipping, decay mask and optional layer-wise lr decay.

  `params` is a (possibly abstract) parameter tree, used to build the masks.
  """
  opt = config.optimizer
  parts = []
  if opt.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if opt.name == "adamw":
    parts.append(optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps))
  elif opt.name == "sgd":
    parts.append(optax.trace(decay=opt.b1))  # b1 is the momentum.
  else:
    raise ConfigError(f"optimizer.name must be 'adamw' or 'sgd', not '{opt.name}'")
  if opt.weight_decay > 0:
    parts.append(optax.add_decayed_weights(opt.weight_decay, decay_mask(params, opt.no_decay)))
  if opt.layer_decay < 1.0:
    parts.append(scale_by_tree(layer_scales(params, opt.layer_decay)))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)
