"""MoCo v3 (Chen, Xie & He, ICCV 2021) on clips: a momentum encoder gives the keys, the student's
predictor the queries, InfoNCE against the keys of the whole global batch, symmetric over the views."""

from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.methods import losses, momentum


@registry.METHODS.register("moco_v3")
class MoCoV3(momentum.MomentumMethod):
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(momentum.config_fields(temperature=0.2, base_momentum=0.99))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return momentum.StudentTeacher(self.config, last_batch_norm=True, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    q, k = self.student_and_teacher(model, batch, rng)
    # Every ordered pair of different views: MoCo v3's symmetrised loss for two.
    pairs = [(i, j) for i in range(m.num_views) for j in range(m.num_views) if i != j]
    loss = sum(losses.moco_loss(q[:, i], k[:, j], m.temperature) for i, j in pairs) * 2.0 / len(pairs)
    return loss, losses.collapse_watch(q.reshape(-1, q.shape[-1]))
