"""A weighted sum of several registered methods' losses, all training one shared encoder.

config.method.methods names the parts and config.method.weights their weights;
each part's own fields are in config.method.<name> (e.g. VideoMAE + SimCLR, the
combination of masked modelling and contrast). Parts whose inputs take all
clips get the batch's clips; the others get its first clip, so both share the
same views.
"""

import functools

import jax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.errors import ConfigError
from jvssl.methods import views
from jvssl.methods.base import Inputs, Method

_NOT_COMBINABLE = ("combined", "classify")


def part_config(config, name: str) -> ConfigDict:
  """The full config a part would have on its own: config with method = config.method.<name>."""
  sub = config.copy_and_resolve_references()
  sub.unlock()
  sub.method = ConfigDict(dict(config.method[name].to_dict(), name=name))
  return sub


class CombinedModel(nnx.Module):
  """`.encoder` shared by `.parts[name]` (each part's own module, its encoder replaced by the shared one)."""

  def __init__(self, parts: dict, rngs: nnx.Rngs):
    built = {name: method.build(rngs) for name, method in parts.items()}
    self.encoder = next(iter(built.values())).encoder
    for module in built.values():
      module.encoder = self.encoder
    self.parts = nnx.Dict(built)


def _on_part(fn, name, model, batch):
  return fn(model.parts[name], batch)


@registry.METHODS.register("combined")
class Combined(Method):
  @staticmethod
  def default_config() -> ConfigDict:
    c = ConfigDict({"methods": ("videomae", "simclr"), "weights": (1.0, 1.0)})
    for name in registry.METHODS.names():
      if name not in _NOT_COMBINABLE:
        c[name] = registry.METHODS.get(name).default_config()
    return c

  def __init__(self, config, run):
    super().__init__(config, run)
    m = config.method
    if len(m.methods) != len(m.weights) or not m.methods:
      raise ConfigError(f"method.methods {list(m.methods)} and method.weights {list(m.weights)} must match")
    for name in m.methods:
      if name in _NOT_COMBINABLE or name not in m:
        known = sorted(k for k in m if k not in ("methods", "weights", "name"))
        raise ConfigError(f"method '{name}' cannot be combined; one of {known}")
    self.parts = {name: registry.METHODS.get(name)(part_config(config, name), run) for name in m.methods}

  def inputs(self) -> Inputs:
    needs = [method.inputs() for method in self.parts.values()]
    modalities = tuple(dict.fromkeys(m for n in needs for m in n.modalities))
    return Inputs(modalities=modalities, all_clips=any(n.all_clips for n in needs))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return CombinedModel(self.parts, rngs)

  def loss(self, model, batch, rng, step):
    total, metrics = 0.0, {}
    for i, (name, weight) in enumerate(zip(self.parts, self.config.method.weights)):
      method = self.parts[name]
      video = batch["video"] if method.inputs().all_clips else views.first_clip(batch["video"])
      loss, part_metrics = method.loss(model.parts[name], dict(batch, video=video), jax.random.fold_in(rng, i), step)
      total = total + weight * loss
      metrics[f"{name}/loss"] = loss
      metrics.update({f"{name}/{k}": v for k, v in part_metrics.items()})
    return total, metrics

  def predict_fns(self):
    # Every part's named functions, run on that part's module; where parts share a name (embed_video,
    # video_tokens: the shared encoder's), the first part's.
    fns = {}
    for name, method in self.parts.items():
      for fn_name, fn in method.predict_fns().items():
        fns.setdefault(fn_name, functools.partial(_on_part, fn, name))
    return fns

  def update(self, model, step):
    # Each part's module holds the shared encoder, so it updates as it would alone.
    for name, method in self.parts.items():
      method.update(model.parts[name], step)
