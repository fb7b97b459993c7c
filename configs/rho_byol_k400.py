"""rho-BYOL pretraining on Kinetics-400 (Feichtenhofer et al., "A Large-Scale Study on Unsupervised
Spatiotemporal Representation Learning", CVPR 2021), from the official SlowFast config.

Reproduces the BYOL rows of facebookresearch/SlowFast projects/contrastive_ssl/README.md ("Kinetics 400 and
600"): Slow-only R50 8x8, 200 epochs, K400 linear top-1 67.4 with rho = 2 (default), 70.1 with rho = 4;
UCF101 split-1 fine-tuning 94.0 / 94.7.

Values come from SlowFast configs/contrastive_ssl/BYOL_SlowR50_8x8.yaml ("the yaml") and, for what it leaves
out, slowfast/config/defaults.py: TRAIN.BATCH_SIZE 64 clips per machine (loader.py divides it over the
machine's GPUs), DATA.MEAN 0.45 / DATA.STD 0.225, COSINE_END_LR 0. With SOLVER.BASE_LR_SCALE_NUM_SHARDS
(defaults.py lines 1281-1284) BASE_LR, WARMUP_START_LR and COSINE_END_LR are multiplied by the number of
machines, so here they scale with data.batch_size / 64: --config.data.batch_size=512 is 8 machines.

Not yet a jvssl field:
  backbone: Slow-only R50 (the yaml's ARCH slow: 1x7x7 stem, temporal kernel 1 in res2-res3 and 3 in
    res4-res5, no temporal striding); jvssl's r3d depth 50 (3x3x3 in every block) is the nearest it has.
  optimizer: LARS (SOLVER.LARS_ON True) on SGD with momentum 0.9; jvssl has plain SGD.
  MoCo v2 blur: GaussianBlur sigma (0.1, 2.0) with probability 0.5, before the crop (color_jitter_video_ssl),
    so sigma is in pixels of the decoded frame; jvssl blurs after the crop, in output pixels.
  the evaluation protocols: configs/contrastive_ssl/linear_k400_Slow_8x8_R50_syn0.yaml (linear, see
    configs/probe_k400.py:linear) and finetune_ucf_Slow_R50_syn0.yaml.

Variants: `rho=2` (default) or `rho=4` (the yaml's "BASE_LR: 1.2 # for rho=4 clips"); add `,runlocal` for a
CPU smoke run on synthetic data.
"""

from jvssl.config import base_config, parse_arg, shrink_cnn_for_cpu
from jvssl.errors import ConfigError

BASE_LR = {2: 0.6, 4: 1.2}  # The yaml: BASE_LR 0.6, and 1.2 "for rho=4 clips".


def get_config(arg=None):
  arg = parse_arg(arg, rho=2, runlocal=False)
  if arg.rho not in BASE_LR:
    raise ConfigError(f"rho-BYOL's published settings are rho=2 and rho=4, not rho={arg.rho}")
  c = base_config(model="r3d", method="byol")
  c.model.depth = 50

  m = c.method
  m.num_views = arg.rho
  m.hidden_dim, m.embed_dim = 4096, 256  # CONTRASTIVE.MLP_DIM, CONTRASTIVE.DIM.
  m.head_layers, m.predictor_layers = 2, 2  # CONTRASTIVE.NUM_MLP_LAYERS 2, PREDICTOR_DEPTHS [2].
  m.batch_norm = True  # CONTRASTIVE.BN_MLP (synchronised: BN_SYNC_MLP).
  m.base_momentum = 0.996  # CONTRASTIVE.MOMENTUM, cosine-annealed to 1 (MOMENTUM_ANNEALING True).

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride, c.data.image_size = 8, 8, 224  # NUM_FRAMES, SAMPLING_RATE, TRAIN_CROP_SIZE.
  c.data.batch_size = 64  # TRAIN.BATCH_SIZE per machine; the yaml runs one machine of 8 GPUs.
  c.data.clips_per_video = arg.rho  # DATA.TRAIN_CROP_NUM_TEMPORAL: rho clips of one video.
  c.data.mean, c.data.std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
  aug = c.data.augment
  # TRAIN_JITTER_SCALES_RELATIVE [0.2, 0.766] (area) with TRAIN_JITTER_ASPECT_RELATIVE [0.75, 1.3333], jvssl's.
  aug.random_crop_scale = (0.2, 0.766)
  aug.flip = True  # DATA.RANDOM_FLIP default.
  # SSL_MOCOV2_AUG: ColorJitter(SSL_COLOR_BRI_CON_SAT 0.6 x3, SSL_COLOR_HUE 0.15) with probability 0.8,
  # RandomGrayscale(COLOR_RND_GRAYSCALE 0.2), GaussianBlur([0.1, 2.0]) with probability 0.5.
  aug.color_jitter, aug.color_jitter_prob = (0.6, 0.6, 0.6, 0.15), 0.8
  aug.grayscale_prob = 0.2
  aug.blur_prob, aug.blur_sigma = 0.5, (0.1, 2.0)

  c.optimizer.name = "sgd"  # SOLVER.OPTIMIZING_METHOD sgd, MOMENTUM 0.9.
  c.optimizer.b1 = 0.9
  c.optimizer.lr = BASE_LR[arg.rho]
  c.optimizer.lr_base_batch_size = 64
  c.optimizer.weight_decay = 1e-6  # SOLVER.WEIGHT_DECAY; BN.WEIGHT_DECAY 0 (jvssl skips "norm" parameters).
  c.schedule.name = "warmup_cosine"  # LR_POLICY cosine.
  c.schedule.warmup_epochs = 35  # WARMUP_EPOCHS.
  c.schedule.warmup_init_lr, c.schedule.min_lr = 0.001, 0.0  # WARMUP_START_LR; COSINE_END_LR default.
  c.schedule.scale_with_batch = True
  c.train.num_epochs = 200  # MAX_EPOCH.
  c.train.compute_dtype = "bfloat16"  # SlowFast trains in float32; bfloat16 is jvssl's choice on accelerators.

  if arg.runlocal:
    shrink_cnn_for_cpu(c)
  c.lock()
  return c
