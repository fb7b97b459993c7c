"""MaskFeat pretraining on Kinetics-400 (Wei et al., "Masked Feature Prediction for Self-Supervised Visual
Pre-Training", CVPR 2022): MaskFeat's K400 recipe on a ViT-B/16 with 2x16x16 tubelets.

The encoder sees every token, 40% of them replaced by a learned mask token, and a linear head on its last
(normalised) tokens regresses the HOG of each masked token's pixels (9 orientations, 8x8-pixel cells, per colour
channel; jvssl/methods/maskfeat.py).

Values come from facebookresearch/SlowFast (commit 287ec00): configs/masked_ssl/k400_MVITv2_S_16x4_MaskFeat_PT.yaml
("the yaml"; MaskFeat's K400 MViT-S run, 82.2 top-1 after fine-tuning in projects/maskfeat/README.md) for the
training, slowfast/models/masked.py (MaskMViT: nbins 9, cell_sz 8, HOG per colour channel, a LayerNorm and a
linear head on the last block) and slowfast/config/defaults.py for what the yaml leaves out; the backbone is
the ViT-B/16 SlowFast builds for video masked pretraining in configs/masked_ssl/k400_VIT_B_16x4_MAE_PT.yaml (its
MVIT section: 2x16x16 patches, 768 wide, 12 deep, 12 heads, qkv bias, a CLS token, separate learned space and
time position tables, no drop path). TRAIN.BATCH_SIZE 32 is one machine's (NUM_SHARDS 1, 8 GPUs); with
SOLVER.BASE_LR_SCALE_NUM_SHARDS, BASE_LR, WARMUP_START_LR and COSINE_END_LR are multiplied by the machines
(defaults.py lines 1281-1284), so here they scale with data.batch_size / 32.

Why a ViT and not jvssl's MViTv2 (jvssl/models/mvit.py): the yaml changes MViTv2-S so that its last stage keeps
the 14x14 grid (POOL_Q_STRIDE [14, 1, 1, 1] "instead of [14, 1, 2, 2] for 14x14 output"), and MaskMViT swaps
mask tokens in for the masked patch embeddings before the first block. jvssl's MViTv2 is torchvision's: every
stage's first block pools the query by 2 (no field changes it), so its last tokens are 7x7 at stride 32, and it
has no embed/encode split for the method to put mask tokens between; both are changes to jvssl/models/mvit.py,
not to this recipe. A ViT-B/16 on 16 x 224 px clips ends on the same 8x14x14 grid at stride (2, 16, 16) as the
yaml's MViT-S, so the HOG targets per token are the same cells. MaskFeat's paper reports its video results on
MViTv2 only (its ViT-B is the ImageNet model, configs/masked_ssl/in1k_VIT_B_MaskFeat_PT.yaml), so this recipe
has no published K400 accuracy of its own to match.

Not yet a jvssl field:
  cube masking (AUG.MASK_TUBE False, MASK_FRAMES False: transform.py MaskingGenerator3D): space-time blocks of
    9-49 units and 1-8 token frames on an 8x7x7 grid of 2x2-token units (MASK_WINDOW_SIZE), until 40% is
    masked; jvssl's MaskFeat masks tubes of single tokens (method.mask_type "tube", 40% of them).
  the HOG of each masked token's first frame only (_get_hog_label_3d takes every PATCH_STRIDE[0]-th frame);
    jvssl regresses the HOG of both frames of the tubelet.
  Sobel gradients and summed (not averaged) cells in HOGLayerC; jvssl/models/hog.py says why its central
    differences give the same normalised histograms up to smoothing.
  one position table over the 8x14x14 tokens (model.pos_embed "learned") for the separate space and time
    tables, and no position for the CLS token.
  DATA.USE_OFFSET_SAMPLING (the clip's start drawn from evenly spaced offsets), float32 training (jvssl: bfloat16).

Variants: the default (300 epochs, SOLVER.MAX_EPOCH); `epochs=800` trains the longer schedule of README's MViT-L
checkpoint (k400_MVIT_L_MaskFeat_PT_epoch_00800, 84.3 top-1), all else as the yaml; add `,runlocal` for a CPU smoke
run on the embedded synthetic data.
  python -m jvssl.main --config=configs/maskfeat_k400.py --workdir=/tmp/maskfeat \\
    --config.data.video_folder.root=/data/k400 --config.data.video_folder.train_list=/data/k400/train.csv
"""

from jvssl.config import base_config, parse_arg, shrink_vit_for_cpu
from jvssl.errors import ConfigError

EPOCHS = (300, 800)  # The yaml's SOLVER.MAX_EPOCH; README's MViT-L checkpoint epoch.


def get_config(arg=None):
  arg = parse_arg(arg, epochs=300, runlocal=False)
  if arg.epochs not in EPOCHS:
    raise ConfigError(f"MaskFeat's K400 schedules are {' and '.join(map(str, EPOCHS))} epochs, not {arg.epochs}")
  c = base_config(model="vit", method="maskfeat")

  # k400_VIT_B_16x4_MAE_PT.yaml MVIT: PATCH_KERNEL (2, 16, 16), EMBED_DIM 768, NUM_HEADS 12, DEPTH 12.
  c.model.variant = "B"
  c.model.patch_size = (2, 16, 16)
  c.model.qkv_bias = "all"  # QKV_BIAS True: one nn.Linear(dim, 3 * dim, bias=True).
  c.model.pos_embed = "learned"  # SEP_POS_EMBED True: learned tables (see above).
  c.model.pool = "cls"  # CLS_EMBED_ON True.
  c.model.norm_eps = 1e-6  # partial(nn.LayerNorm, eps=1e-6) in the blocks and the head.
  c.model.drop_path_rate = 0.0  # DROPPATH_RATE 0.0.
  c.model.final_norm = "tokens"  # MSSeparateHead: LayerNorm, then the linear projection.
  m = c.method
  m.mask_ratio = 0.4  # AUG.MASK_RATIO 0.4.
  m.mask_type = "tube"  # Cube masking is not a jvssl mask (see above).
  m.hog_orientations, m.hog_cell = 9, 8  # masked.py: self.nbins = 9, self.cell_sz = 8.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride = 16, 4  # DATA.NUM_FRAMES 16, SAMPLING_RATE 4.
  c.data.image_size = 224  # DATA.TRAIN_CROP_SIZE 224.
  c.data.batch_size = 32  # TRAIN.BATCH_SIZE per machine; the yaml runs one machine of 8 GPUs.
  c.data.mean, c.data.std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)  # defaults.py DATA.MEAN, DATA.STD.
  # TRAIN_JITTER_SCALES_RELATIVE [0.5, 1.0] (area) with TRAIN_JITTER_ASPECT_RELATIVE [0.75, 1.3333], jvssl's.
  c.data.augment.random_crop_scale = (0.5, 1.0)
  c.data.augment.flip = True  # defaults.py DATA.RANDOM_FLIP True; AUG: no colour jitter, RandAugment or erasing.

  c.optimizer.name = "adamw"  # SOLVER.OPTIMIZING_METHOD adamw; optimizer.py: eps=1e-08.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999  # defaults.py SOLVER.BETAS.
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.05  # SOLVER.WEIGHT_DECAY.
  # ZERO_WD_1D_PARAM True: biases and norms undecayed; ZERO_DECAY_POS_CLS False: positions, CLS and mask token
  # decayed (they are not 1-D there).
  c.optimizer.no_decay = ("bias", "norm")
  c.optimizer.lr = 1e-4  # SOLVER.BASE_LR, per machine of 32 clips ...
  c.optimizer.lr_base_batch_size = 32
  c.optimizer.grad_clip_norm = 0.02  # SOLVER.CLIP_GRAD_L2NORM.
  c.schedule.name = "warmup_cosine"  # LR_POLICY cosine, COSINE_AFTER_WARMUP True.
  c.schedule.warmup_epochs = 10  # SOLVER.WARMUP_EPOCHS.
  c.schedule.warmup_init_lr = 1e-6  # SOLVER.WARMUP_START_LR ...
  c.schedule.min_lr = 1e-6  # SOLVER.COSINE_END_LR ...
  c.schedule.scale_with_batch = True  # ... all three times the machines.
  c.train.num_epochs = arg.epochs
  c.train.compute_dtype = "bfloat16"
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    shrink_vit_for_cpu(c)
  c.lock()
  return c
