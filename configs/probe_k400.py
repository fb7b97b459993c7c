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

`:attentive` is the frozen evaluation of V-JEPA (Bardes et al., 2024), whose comparison with pixel-prediction
methods probes a VideoMAE ViT-L/16, here on configs/videomae_k400.py:vit_l's encoder:
  python -m jvssl.main --config=configs/probe_k400.py:attentive --mode=eval --workdir=/tmp/vmae_vit_l
The probe is V-JEPA 2's (facebookresearch/vjepa2 commit c2963a4, configs/eval/vitl/k400.yaml and
evals/video_classification_frozen/eval.py), jvssl's `attentive_probe` evaluator: classifier num_probe_blocks
4 (3 self-attention blocks, then the cross-attention block with one learned query) and num_heads 16;
20 probes trained at once over multihead_kwargs' lr {5e-3, 3e-3, 1e-3, 3e-4, 1e-4} x weight_decay
{0.01, 0.1, 0.4, 0.8} (start_lr = lr, warmup 0, cosine to final_lr 0, final_weight_decay = weight_decay),
num_epochs 20, batch_size 4 per GPU on 8 nodes x 8 tasks (256), the best probe on the validation split
reported (select_on="test"). Training streams the encoder over augmented clips as make_dataloader(training=True)
makes them: random resized crop of area (0.08, 1) and aspect (0.75, 4/3), no flip, RandAugment
rand-m7-n4-mstd0.5-inc1, random erasing 0.25 (pixel, 1 box). Clips are frames_per_clip 16 at frame_step 4,
224 px: V-JEPA's ViT-L/16 setting (facebookresearch/jepa configs/evals/vitl16_k400_16x8x3.yaml resolution
224, the size VideoMAE ViT-L was pretrained at; V-JEPA 2's 256 is its own encoder's).
Not yet a jvssl field: num_segments 8 (8 clips per video whose tokens the probe attends to together,
modelcustom/vit_encoder_multiclip) and num_views_per_segment 3 at test; jvssl's probe sees one clip per
video and tests on the centre clip. The random erasing of both codebases draws a box per frame (timm
RandomErasing over the T axis); jvssl's random_erase puts one box in every frame.

Add `,runlocal` for a CPU smoke run on synthetic data.
"""

import os

from jvssl import config as config_lib
from jvssl.config import eval_config, parse_arg
from jvssl.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOLS = ("linear", "attentive")
# V-JEPA 2 configs/eval/vitl/k400.yaml multihead_kwargs: 5 learning rates x 4 weight decays.
LRS = (5e-3, 3e-3, 1e-3, 3e-4, 1e-4)
WEIGHT_DECAYS = (0.01, 0.1, 0.4, 0.8)


def get_config(arg=None):
  arg = parse_arg(arg, protocol="linear", runlocal=False)
  if arg.protocol not in PROTOCOLS:
    raise ConfigError(f"unknown variant {arg.protocol!r}; one of {', '.join(PROTOCOLS)}")
  if arg.protocol == "attentive":
    return attentive(arg.runlocal)
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


def attentive(runlocal: bool):
  """V-JEPA 2's attentive probe sweep on the VideoMAE ViT-L encoder (see the docstring)."""
  c = config_lib.load(os.path.join(HERE, "videomae_k400.py") + (":vit_l,runlocal" if runlocal else ":vit_l"))
  c.data.video_folder.num_classes = 400  # num_classes.
  # make_dataloader(training=True)'s VideoTransform: what the streamed probe training sees.
  aug = c.data.augment
  aug.multi_scale_crop = ()
  aug.random_crop_scale = (0.08, 1.0)  # random_resize_scale; random_resize_aspect_ratio (0.75, 4/3) is jvssl's.
  aug.flip = False  # random_horizontal_flip=False.
  aug.rand_augment_ops, aug.rand_augment_magnitude, aug.rand_augment_magnitude_std = 4, 7.0, 0.5  # auto_augment.
  aug.random_erase_prob, aug.random_erase_count = 0.25, 1  # reprob 0.25, RandomErasing(mode="pixel", max_count=1).
  probe = eval_config(
    "attentive_probe",
    depth=4,  # num_probe_blocks.
    num_heads=16,
    lrs=LRS,
    weight_decays=WEIGHT_DECAYS,
    num_epochs=20,
    batch_size=4 * 64,  # batch_size 4 per task, nodes 8 x tasks_per_node 8.
    select_on="test",  # eval.py reports the best probe's val_acc.
    stream=True,  # The encoder runs on every epoch's augmented clips, as eval.py does.
  )
  if runlocal:
    probe.num_train, probe.num_epochs, probe.batch_size = 32, 2, 16
  with c.unlocked():
    c.evals.attentive_probe = probe
  return c
