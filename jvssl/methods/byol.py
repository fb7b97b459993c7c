"""BYOL and rho-BYOL (Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal
Representation Learning", CVPR 2021): the student predicts the momentum teacher's projection of every
other clip of the same video; rho = num_views >= 2 clips; teacher momentum cosine from base to 1."""

from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.errors import ConfigError
from jvssl.methods import losses, momentum


@registry.METHODS.register("byol")
class BYOL(momentum.MomentumMethod):
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(momentum.config_fields())

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    if self.config.method.num_views < 2:
      raise ConfigError(f"BYOL needs method.num_views >= 2 clips per video, got {self.config.method.num_views}")
    return momentum.StudentTeacher(self.config, last_batch_norm=False, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    p, z = self.student_and_teacher(model, batch, rng)
    pairs = [(i, j) for i in range(m.num_views) for j in range(m.num_views) if i != j]
    loss = sum(losses.byol_loss(p[:, i], z[:, j]) for i, j in pairs) / len(pairs)
    return loss, losses.collapse_watch(p.reshape(-1, p.shape[-1]))
