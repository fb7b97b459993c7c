"""VideoMAE on jvssl's embedded synthetic data: the `make demo` job.

A small ViT learns from unlabelled moving-shape clips, then is evaluated
against its own random initialisation by linear probe and k-NN on frozen
features and by fine-tuning with few labels.
  python -m jvssl.main --config=configs/videomae_synthetic.py --workdir=/tmp/demo
`:runlocal` shrinks it to a smoke run.
"""

from jvssl.config import base_config, eval_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  c = base_config(model="vit", method="videomae")
  c.seed = 0

  c.data.source = "synthetic"
  c.data.num_frames, c.data.frame_stride, c.data.image_size = 16, 1, 32
  c.data.batch_size = 32
  c.data.synthetic.num_classes = 8
  c.data.synthetic.num_train = 8192
  c.data.synthetic.num_test = 1024

  c.model.variant = "S"
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 128, 4, 4, 512
  c.model.patch_size = (2, 8, 8)
  c.method.mask_ratio = 0.75
  c.method.decoder_width, c.method.decoder_depth, c.method.decoder_heads = 64, 2, 4

  c.optimizer.lr = 1e-3
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.95
  c.optimizer.weight_decay = 0.05
  c.schedule.warmup_steps = 100
  c.schedule.min_lr = 1e-5
  c.train.num_steps = 1000
  c.train.log_every_steps = 100
  c.train.checkpoint_every_steps = 500

  c.eval.batch_size = 128
  c.eval.compare_random_init = True
  c.evals.knn = eval_config("knn", num_train=2048, readout="time")
  c.evals.linear_probe = eval_config("linear_probe", num_train=2048, readout="time")
  c.evals.finetune = eval_config("finetune", num_train=320, num_steps=300, batch_size=32, lr=1e-3,
                                 warmup_steps=30, layer_decay=0.75, drop_path_rate=0.0)

  if arg.runlocal:
    c.data.num_frames, c.data.batch_size = 4, 8
    c.data.synthetic.num_train, c.data.synthetic.num_test = 64, 32
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
    c.method.decoder_width, c.method.decoder_depth, c.method.decoder_heads = 32, 1, 2
    c.train.num_steps, c.train.log_every_steps, c.train.checkpoint_every_steps = 4, 2, 2
    c.schedule.warmup_steps = 1
    c.eval.batch_size = 16
    c.evals.knn.num_train = c.evals.linear_probe.num_train = 32
    c.evals.linear_probe.steps = 20
    c.evals.finetune.num_train, c.evals.finetune.num_steps, c.evals.finetune.batch_size = 16, 4, 8
    c.evals.finetune.warmup_steps = 1
  c.lock()
  return c
