"""Frozen-encoder protocols on Kinetics-400: the linear probe and the attentive probe.

`:linear` (default) is the K400 linear protocol of Feichtenhofer et al. (CVPR 2021) on the rho-BYOL encoder
of configs/rho_byol_k400.py, the "K400-linear" column of SlowFast projects/contrastive_ssl/README.md
(67.4 top-1 for rho = 2). Run it on a pretraining workdir:
  python -m jvssl.main --config=configs/probe_k400.py:linear --mode=eval --workdir=/tmp/rho_byol
Its values come from SlowFast configs/contrastive_ssl/linear_k400_Slow_8x8_R50_syn0.yaml; jvssl's
linear_probe evaluator fits the head on frozen features with its own solver, so the yaml's training is
written here but is not yet a jvssl field:
  SGD, momentum 0.9, BASE_LR 0.5 per machine of 64 clips (BASE_LR_SCALE_NUM_SHARDS), cosine over
  MAX_EPOCH 60 after WARMUP_EPOCHS 8 from WARMUP_START_LR 0, WEIGHT_DECAY 0, DETACH_FINAL_FC;
  training clips scale-jittered to a short side in [256, 320] (TRAIN_JITTER_SCALES) then cropped at 224
  and flipped; testing at TEST_CROP_SIZE 256 on TEST.NUM_ENSEMBLE_VIEWS 10 x NUM_SPATIAL_CROPS 3 views.

`:attentive` is V-JEPA's frozen evaluation (Bardes et al., 2024) on a VideoMAE ViT-L encoder
(configs/videomae_k400.py:vit_l), from facebookresearch/jepa (commit 51c59d5)
configs/evals/vitl16_k400_16x8x3.yaml and evals/video_classification_frozen/eval.py: an attentive probe
(AttentiveClassifier with depth=1: one cross-attention block with a learned query, then a linear layer) on
16 frames at step 4 and 224 px, 8 segments x 3 views per video with attend_across_segments, batch 4 per GPU
x 64 GPUs (8 nodes x 8), AdamW lr 0.001 (start_lr 0.001, no warm-up, cosine to final_lr 0) for 20 epochs,
weight decay 0.01 cosine to 1e-6 (init_opt final_wd), bfloat16. The attentive probe evaluator is not yet a
jvssl field (issue 13, item 4), so this variant stops with an error naming it.

Add `,runlocal` for a CPU smoke run on synthetic data.
"""

import os

from jvssl import config as config_lib
from jvssl.config import eval_config, parse_arg
from jvssl.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOLS = ("linear", "attentive")


def get_config(arg=None):
  arg = parse_arg(arg, protocol="linear", runlocal=False)
  if arg.protocol not in PROTOCOLS:
    raise ConfigError(f"unknown variant {arg.protocol!r}; one of {', '.join(PROTOCOLS)}")
  if arg.protocol == "attentive":
    raise ConfigError("jvssl has no attentive probe evaluator yet (issue 13 item 4); use :linear")
  # The encoder's own recipe, so --mode=eval restores its checkpoint; the probe adds the labelled data.
  c = config_lib.load(os.path.join(HERE, "rho_byol_k400.py") + (":runlocal" if arg.runlocal else ""))
  c.data.video_folder.num_classes = 400  # MODEL.NUM_CLASSES.
  # The features: global average pool of res5 (the head's pooling; DETACH_FINAL_FC keeps the encoder frozen).
  with c.unlocked():
    c.evals.linear_probe = eval_config("linear_probe", readout="mean", train_split="train", test_split="test")
  if arg.runlocal:
    c.evals.linear_probe.num_train = 32
    c.evals.linear_probe.steps = 20
  return c
