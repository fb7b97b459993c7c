"""CVRL pretraining on Kinetics-400 (Qian et al., "Spatiotemporal Contrastive Video Representation Learning",
CVPR 2021), from the official TF2 code.

Reproduces the Kinetics-400 rows of the official README's "Pre-trained Model Checkpoints" table: R3D-50
(1x), 31.7M parameters, K400 linear top-1 63.8 after 200 epochs and 66.1 after 800 (default).

Values come from tensorflow/models official/projects/video_ssl: configs/video_ssl.py
(video_ssl_pretrain_kinetics400: 16 frames at 224, temporal stride 2; VideoSSLModel: hidden 2048, 3 hidden
layers, projection 128; SSLLosses: temperature 0.1), configs/experiments/cvrl_pretrain_k600_200ep.yaml (the
only published experiment file, K600 200 epochs: global batch 1024, SGD without Nesterov, lr 0.32 cosine
over 71488 steps after 1787 linear warm-up steps = 5 epochs of K600's 357.4 steps, L2 1e-6, sync BN, bfloat16),
official/vision/configs/video_classification.py add_trainer (momentum 0.9, warm-up from 0) and
dataloaders/video_ssl_input.py + ops/video_ssl_preprocess_ops.py (the augmentations). The K400 schedule is
that file's, in epochs.

Not yet a jvssl field:
  backbone: R3D-50 with temporal kernels (1, 1, 3, 3) per stage and a 5x7x7 stem of temporal stride 2
    (cvrl_pretrain_k600_200ep.yaml block_specs); jvssl's r3d depth 50 is Hara et al.'s, 3x3x3 in every
    block (47M parameters), the nearest it has.
  temporal interval: the two clips' start distance drawn from a linearly decreasing distribution
    (sample_ssl_sequence, power 1); jvssl draws the two starts independently.
  crop aspect ratio (0.5, 2) (random_crop_resize); jvssl's is fixed at (3/4, 4/3).
  colour jitter in a random order (color_jitter_rand); jvssl's order is fixed.
  Gaussian blur per clip: probability 1.0 for the first, 0.1 for the second, sigma (0.1, 2.0), kernel
    size // 10 (random_blur); jvssl has one probability for both clips, so blur is off here.
  solarization with probability 0.2, second clip only (random_solarization).
  the L2 term 1e-6 goes through the momentum in Keras; jvssl's SGD adds weight decay after it.
  the linear evaluation (cvrl_linear_eval_k600.yaml: 32 frames, stride 2, batch 1024, SGD lr 32.0, cosine
    over 100 epochs after 5 warm-up epochs, no weight decay, crop area (0.3, 1) aspect (0.5, 2), tested on
    10 clips x 3 crops at 256 px).

Variants: `epochs=800` (default) or `epochs=200`; add `,runlocal` for a CPU smoke run on synthetic data.
"""

from jvssl.config import base_config, parse_arg, shrink_cnn_for_cpu
from jvssl.errors import ConfigError


def get_config(arg=None):
  arg = parse_arg(arg, epochs=800, runlocal=False)
  if arg.epochs not in (200, 800):
    raise ConfigError(f"CVRL published K400 checkpoints for 200 and 800 epochs, not {arg.epochs}")
  c = base_config(model="r3d", method="simclr")
  c.model.depth = 50

  m = c.method
  m.num_views = 2
  m.hidden_dim, m.head_layers, m.embed_dim = 2048, 3, 128  # VideoSSLModel hidden_dim, hidden_layer_num, projection.
  m.batch_norm = True  # hidden_norm_activation (sync BN in the experiment file).
  m.temperature = 0.1  # SSLLosses.temperature.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride, c.data.image_size = 16, 2, 224  # feature_shape, temporal_stride.
  c.data.batch_size = 1024  # global_batch_size.
  c.data.clips_per_video = 2  # Two clips of one video, each with its own crop and colours.
  # normalize_image without zero centering: pixels in [0, 1], no mean or std.
  c.data.mean, c.data.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
  aug = c.data.augment
  aug.random_crop_scale = (0.3, 1.0)  # random_crop_resize area range.
  aug.flip = True  # random_flip_left_right.
  # color_jitter(strength=1.0): brightness, contrast, saturation 0.8, hue 0.2, with probability 0.8.
  aug.color_jitter, aug.color_jitter_prob = (0.8, 0.8, 0.8, 0.2), 0.8
  aug.grayscale_prob = 0.2  # random_color_jitter_3d: to_grayscale with probability 0.2.

  c.optimizer.name = "sgd"
  c.optimizer.b1 = 0.9  # Momentum: add_trainer's sgd.momentum.
  c.optimizer.lr = 0.32  # initial_learning_rate, for the batch of 1024 as given (no scaling rule in the code).
  c.optimizer.weight_decay = 1e-6  # losses.l2_weight_decay.
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = 5  # 1787 of 71488 steps.
  c.schedule.warmup_init_lr, c.schedule.min_lr = 0.0, 0.0
  c.train.num_epochs = arg.epochs
  c.train.compute_dtype = "bfloat16"  # mixed_precision_dtype.

  if arg.runlocal:
    shrink_cnn_for_cpu(c)
  c.lock()
  return c
