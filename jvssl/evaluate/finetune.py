"""Fine-tuning with few labels: the encoder plus a linear head trained end to end by the
same train loop (method "classify"), then top-1 accuracy on the test split."""

import jax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data.device import normalize_video
from jvssl.data import pipeline
from jvssl.evaluate.features import predict_split


def finetune_config(config, cfg) -> ConfigDict:
  """The training config of the fine-tuning run: the pretraining config with classification swapped in."""
  ft = config.copy_and_resolve_references()
  ft.unlock()
  ft.method = registry.METHODS.get("classify").default_config()
  ft.method.name = "classify"
  ft.method.num_classes = pipeline.make_source(config.data, cfg.train_split).num_classes
  ft.method.label_smoothing = cfg.label_smoothing
  ft.model.drop_path_rate = cfg.drop_path_rate
  ft.data.train_split = cfg.train_split
  ft.data.train_subset = cfg.num_train
  ft.data.batch_size = cfg.batch_size
  ft.data.clips_per_video = 1
  ft.data.augment.random_crop_scale = cfg.random_crop_scale
  ft.optimizer.name = "adamw"
  ft.optimizer.lr = cfg.lr
  ft.optimizer.lr_base_batch_size = 0
  ft.optimizer.b1, ft.optimizer.b2 = 0.9, 0.999
  ft.optimizer.weight_decay = cfg.weight_decay
  ft.optimizer.layer_decay = cfg.layer_decay
  ft.optimizer.grad_clip_norm = 0.0
  ft.schedule.name = "warmup_cosine"
  ft.schedule.warmup_steps = cfg.warmup_steps
  ft.schedule.warmup_init_lr = 0.0
  ft.schedule.min_lr = 0.0
  ft.train.num_steps = cfg.num_steps
  ft.train.log_every_steps = max(cfg.num_steps // 4, 1)
  ft.evals = ConfigDict()
  ft.lock()
  return ft


@registry.EVALUATORS.register("finetune")
class Finetune:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict({
        "every_steps": 0, "train_split": "train", "test_split": "test",
        "num_train": 0,  # Labelled clips used (the first N of the split); 0: all.
        "num_steps": 1000, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.75,
        "warmup_steps": 100, "label_smoothing": 0.1, "drop_path_rate": 0.1, "random_crop_scale": (1.0, 1.0),
    })

  @staticmethod
  def run(config, cfg, encoder, mesh, cache) -> dict:
    from jvssl import train  # The loop imports the evaluators; import it at call time.
    del cache
    ft = finetune_config(config, cfg)
    result = train.train(ft, None, mesh=mesh, init_encoder=encoder, quiet=True)
    graphdef, state = result.trainer.graphdef, result.state

    @jax.jit
    def predict(params, rest, video):
      model = nnx.merge(graphdef, params, rest, copy=True)
      return model(normalize_video(video, ft.data)).argmax(-1)

    pred, labels = predict_split(ft, mesh, lambda video: predict(state.params, state.rest, video), cfg.test_split)
    return {"accuracy": float((pred == labels).mean())}
