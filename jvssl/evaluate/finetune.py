"""Fine-tuning with few labels: the pretrained encoder plus a linear head trained end to end by a
`Trainer` of the "classify" method (in memory, no checkpoints), then top-1 accuracy on the test split."""

import logging

from ml_collections import ConfigDict

from jvssl import config as config_lib, registry
from jvssl.data import pipeline
from jvssl.errors import NonFiniteLossError
from jvssl.evaluate import features
from jvssl.trainer import Trainer, load_encoder_into

log = logging.getLogger("jvssl")


def finetune_config(config, cfg) -> ConfigDict:
  """The fine-tuning run's config: config.py's defaults for "classify" on the pretraining run's encoder and data.

  The model, data, mesh, sharding, seed and dtypes come from the pretraining config; the
  evaluator's fields set the rest.
  """
  ft = config_lib.base_config(model=config.model.name, method="classify")
  ft.seed = config.seed
  for section in ("model", "data", "mesh", "sharding", "eval"):
    ft[section] = config[section].copy_and_resolve_references()
  ft.train.compute_dtype, ft.train.param_dtype = config.train.compute_dtype, config.train.param_dtype
  ft.method.num_classes = pipeline.make_source(config.data, cfg.train_split).num_classes
  ft.method.label_smoothing = cfg.label_smoothing
  ft.model.drop_path_rate = cfg.drop_path_rate
  ft.data.train_split = cfg.train_split
  ft.data.train_subset = cfg.num_train
  ft.data.batch_size = cfg.batch_size
  ft.data.clips_per_video = 1
  # The evaluator's own crop, not the pretraining recipe's multi-scale crop (augment allows one of the two).
  ft.data.augment.multi_scale_crop = ()
  ft.data.augment.random_crop_scale = cfg.random_crop_scale
  ft.optimizer.lr = cfg.lr
  ft.optimizer.weight_decay = cfg.weight_decay
  ft.optimizer.layer_decay = cfg.layer_decay
  ft.schedule.warmup_steps = cfg.warmup_steps
  ft.train.num_steps = cfg.num_steps
  ft.lock()
  return ft


@registry.EVALUATORS.register("finetune")
class Finetune:
  @staticmethod
  def default_config() -> ConfigDict:
    return features.evaluator_config(
      num_steps=1000,
      batch_size=32,
      lr=1e-3,
      weight_decay=0.05,
      layer_decay=0.75,
      warmup_steps=100,
      label_smoothing=0.1,
      drop_path_rate=0.1,
      random_crop_scale=(1.0, 1.0),
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del cache
    if "encoder" not in predictor.params:
      raise features.Unavailable("the model has no 'encoder' to fine-tune")
    ft = finetune_config(config, cfg)
    trainer = Trainer(ft, mesh, cfg.num_steps, pipeline.num_train_examples(ft.data) / ft.data.batch_size)
    state = load_encoder_into(trainer.init(ft.seed), trainer, predictor.encoder_params(), predictor.encoder_rest())
    batches = pipeline.device_iterator(
      pipeline.train_dataset(ft, inputs=trainer.inputs), mesh, trainer.rules, ft.data.prefetch_batches
    )
    for _ in range(cfg.num_steps):
      state, _ = trainer.step(state, next(batches))
    if int(state.nonfinite_step) >= 0:
      raise NonFiniteLossError(
        f"fine-tuning became non-finite at step {int(state.nonfinite_step)}; lower the finetune evaluator's lr"
      )
    predict = features.jit_predict(trainer.predictor(state), "logits", ft.data)
    logits, labels = features.predict_split(ft, mesh, predict, cfg.test_split)
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}
