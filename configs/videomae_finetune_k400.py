"""VideoMAE fine-tuning on Kinetics-400 (Tong et al., NeurIPS 2022), from the official per-size scripts.

Reproduces the paper's Kinetics-400 comparison with the state of the art as README ("Main Results") and
MODEL_ZOO.md ("Kinetics-400") list it: top-1 ViT-S 79.0, ViT-B 80.0 (from 800 pretraining epochs, without
repeated augmentation) / 81.5 (1600), ViT-L 85.2, ViT-H 86.6, tested on 16 frames x 5 clips x 3 crops.
Start from the matching configs/videomae_k400.py checkpoint.

Values come from MCG-NJU/VideoMAE (commit 14ef8d8): the size's
scripts/kinetics/videomae_vit_<size>_patch16_224_tubemasking_ratio_0.9_epoch_<pretrain epochs>/finetune.sh
("finetune.sh") and, for what it leaves out, the defaults of run_class_finetuning.py. As in pretraining the
total batch is --batch_size x GPUs, lr and min_lr are scaled by it / 256 (lines 404-408) and warm-up starts
at 0 (--warmup_lr never reaches utils.cosine_scheduler). MODEL_ZOO.md's ViT-B 1600 row links the ViT-L
fine-tuning script by mistake; the ViT-B 1600 folder's own finetune.sh is used here.

Parts of the recipe jvssl has no field for yet are written beside it as "not yet a jvssl field": loading the
pretrained encoder (--finetune), mixup/CutMix, RandAugment, random erasing, repeated augmentation
(--num_sample 2: every video twice per step; data.batch_size here counts videos, as the lr scaling does)
and multi-view testing. Until they land, this trains without them.

Variants: `:vit_s`, `:vit_b` (default), `:vit_l`, `:vit_h`; `pretrain_epochs=1600` takes ViT-B's script for
the 1600-epoch checkpoint (800 default); add `,runlocal` for a CPU smoke run on synthetic data.
"""

from jvssl.config import base_config, parse_arg
from jvssl.errors import ConfigError

VARIANTS = {"vit_s": "S", "vit_b": "B", "vit_l": "L", "vit_h": "H"}
DEFAULT_PRETRAIN_EPOCHS = {"vit_s": 1600, "vit_b": 800, "vit_l": 1600, "vit_h": 1600}
# (size, pretrain epochs): finetune.sh's (--batch_size x GPUs, --lr, --epochs); GPUs are the nodes x 8.
SCRIPTS = {
  ("vit_s", 1600): (12 * 32, 5e-4, 150),  # --num_sample 2.
  ("vit_b", 800): (8 * 64, 1e-3, 100),  # --num_sample 1.
  ("vit_b", 1600): (6 * 64, 5e-4, 75),  # --num_sample 2.
  ("vit_l", 1600): (2 * 64, 2e-3, 35),  # --num_sample 2.
  ("vit_h", 1600): (8 * 64, 1e-3, 50),  # --num_sample 2.
}

# run_class_finetuning.py defaults the scripts keep, none of them a jvssl field yet:
#   mixup 0.8, cutmix 1.0, mixup_prob 1.0, mixup_switch_prob 0.5, mixup_mode "batch" (label smoothing
#   0.1 goes into the mixed targets) -- not yet a jvssl field
#   aa "rand-m7-n4-mstd0.5-inc1" (RandAugment, the same op for every frame) -- not yet a jvssl field
#   reprob 0.25, remode "pixel", recount 1 (random erasing) -- not yet a jvssl field
#   model_ema False (no weight EMA)
# and from finetune.sh:
#   --finetune <pretrain checkpoint> -- not yet a jvssl field (the init section)
#   --test_num_segment 5 --test_num_crop 3 (5 clips x 3 crops, softmax averaged) -- not yet a jvssl field
#   --num_sample 2 (repeated augmentation; 1 for ViT-B from 800 epochs) -- not yet a jvssl field


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", pretrain_epochs=0, runlocal=False)
  if arg.variant not in VARIANTS:
    raise ConfigError(f"unknown variant {arg.variant!r}; one of {', '.join(VARIANTS)}")
  pretrain_epochs = arg.pretrain_epochs or DEFAULT_PRETRAIN_EPOCHS[arg.variant]
  if (arg.variant, pretrain_epochs) not in SCRIPTS:
    known = ", ".join(str(e) for s, e in SCRIPTS if s == arg.variant)
    raise ConfigError(f"no K400 fine-tuning script for {arg.variant} from {pretrain_epochs} epochs; one of {known}")
  batch, lr, epochs = SCRIPTS[arg.variant, pretrain_epochs]
  huge = arg.variant == "vit_h"
  c = base_config(model="vit", method="classify")

  c.model.variant = VARIANTS[arg.variant]
  c.model.patch_size = (2, 16, 16)  # --tubelet_size 2, patch16.
  c.model.pos_embed = "sincos"  # modeling_finetune.py: a fixed sinusoid table unless use_learnable_pos_emb.
  c.model.qkv_bias = "qv"
  c.model.pool, c.model.final_norm = "mean", "pooled"  # --use_mean_pooling default True: mean, then fc_norm.
  c.model.drop_path_rate = 0.2 if huge else 0.1  # ViT-H finetune.sh --drop_path 0.2; the default 0.1.
  c.model.remat = "full" if huge else "none"  # ViT-H finetune.sh --use_checkpoint.
  c.method.num_classes = 400  # --nb_classes 400.
  c.method.label_smoothing = 0.1  # --smoothing default.
  c.method.head_dropout = 0.5 if huge else 0.0  # ViT-H finetune.sh --fc_drop_rate 0.5; the default 0.
  c.method.head_init_scale = 0.001  # --init_scale default.

  c.data.source = "video_folder"
  c.data.video_folder.num_classes = 400
  c.data.num_frames, c.data.frame_stride = 16, 4  # finetune.sh --num_frames 16 --sampling_rate 4.
  c.data.image_size = 224  # --input_size 224 --short_side_size 224.
  c.data.batch_size = batch
  # kinetics.py VideoClsDataset._aug_frame: random resized crop of area (0.08, 1) and aspect (0.75, 1.3333)
  # (jvssl's fixed ratio range), flipped except on SSv2.
  c.data.augment.random_crop_scale = (0.08, 1.0)
  c.data.augment.flip = True

  c.optimizer.name = "adamw"  # finetune.sh --opt adamw --opt_betas 0.9 0.999.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.05  # finetune.sh --weight_decay 0.05, constant.
  c.optimizer.lr = lr
  c.optimizer.lr_base_batch_size = 256
  c.optimizer.layer_decay = 0.75  # --layer_decay default (ViT-H's script passes 0.75 too).
  c.optimizer.grad_clip_norm = 0.0  # --clip_grad default None.
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = 5  # --warmup_epochs default.
  c.schedule.warmup_init_lr = 0.0
  c.schedule.min_lr = 1e-5 if huge else 1e-6  # ViT-H finetune.sh --min_lr 1e-5; the default 1e-6.
  c.schedule.scale_with_batch = True
  c.train.num_epochs = epochs
  c.train.compute_dtype = "bfloat16"  # The scripts use DeepSpeed fp16; jvssl never uses fp16.
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    c.data.source = "synthetic"
    c.data.num_frames, c.data.frame_stride, c.data.image_size = 4, 1, 32
    c.data.batch_size = 4
    c.method.num_classes = c.data.synthetic.num_classes
    c.model.patch_size = (2, 8, 8)
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 64, 2, 2, 128
    c.model.remat = "none"
    c.train.num_steps = 4
    c.train.log_every_steps = 2
    c.train.compute_dtype = "float32"
  c.lock()
  return c
