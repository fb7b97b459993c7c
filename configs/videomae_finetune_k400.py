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

Repeated augmentation (--num_sample 2, 1 for ViT-B from 800 epochs): each video gives num_sample clips,
side by side in the step (multiple_samples_collate), but the script's total_batch_size, its lr scaling and
its steps per epoch count videos. jvssl's data.batch_size counts clips, data.augment.repeats of each video
(jvssl/data/pipeline.py), so here data.batch_size = videos x num_sample and optimizer.lr_base_batch_size =
256 x num_sample: the lr is the script's (videos / 256) and an epoch has the script's steps.

Mixup/CutMix, RandAugment and random erasing are run_class_finetuning.py's defaults (the scripts keep them);
no weight EMA (--model_ema default False). Mixup's "batch" mode draws once per GPU's batch there (pairing
clips within it), once per global batch in jvssl. At the end the `multiview` evaluator tests 5 clips x 3 crops
(--test_num_segment 5 --test_num_crop 3, softmax averaged) as the script's final_test does.

Start from the pretraining workdir (--finetune): the encoder's arrays are loaded, the head is new.
  python -m jvssl.main --config=configs/videomae_finetune_k400.py:vit_b --workdir=/tmp/vmae_ft \\
    --config.init.checkpoint=/tmp/vmae --config.data.video_folder.root=/data/k400 \\
    --config.data.video_folder.train_list=/data/k400/train.csv --config.data.video_folder.test_list=/data/k400/val.csv

Variants: `:vit_s`, `:vit_b` (default), `:vit_l`, `:vit_h`; `pretrain_epochs=1600` takes ViT-B's script for
the 1600-epoch checkpoint (800 default); add `,runlocal` for a CPU smoke run on synthetic data.
"""

from jvssl import config as config_lib
from jvssl.config import base_config, parse_arg
from jvssl.errors import ConfigError

VARIANTS = {"vit_s": "S", "vit_b": "B", "vit_l": "L", "vit_h": "H"}
DEFAULT_PRETRAIN_EPOCHS = {"vit_s": 1600, "vit_b": 800, "vit_l": 1600, "vit_h": 1600}
# (size, pretrain epochs): finetune.sh's (--batch_size x GPUs in videos, --lr, --epochs, --num_sample); GPUs
# are the nodes x 8.
SCRIPTS = {
  ("vit_s", 1600): (12 * 32, 5e-4, 150, 2),
  ("vit_b", 800): (8 * 64, 1e-3, 100, 1),
  ("vit_b", 1600): (6 * 64, 5e-4, 75, 2),
  ("vit_l", 1600): (2 * 64, 2e-3, 35, 2),
  ("vit_h", 1600): (8 * 64, 1e-3, 50, 2),
}


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", pretrain_epochs=0, runlocal=False)
  if arg.variant not in VARIANTS:
    raise ConfigError(f"unknown variant {arg.variant!r}; one of {', '.join(VARIANTS)}")
  pretrain_epochs = arg.pretrain_epochs or DEFAULT_PRETRAIN_EPOCHS[arg.variant]
  if (arg.variant, pretrain_epochs) not in SCRIPTS:
    known = ", ".join(str(e) for s, e in SCRIPTS if s == arg.variant)
    raise ConfigError(f"no K400 fine-tuning script for {arg.variant} from {pretrain_epochs} epochs; one of {known}")
  videos, lr, epochs, num_sample = SCRIPTS[arg.variant, pretrain_epochs]
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
  # timm Mixup(mixup_alpha=--mixup 0.8, cutmix_alpha=--cutmix 1.0, prob=--mixup_prob 1.0,
  # switch_prob=--mixup_switch_prob 0.5, mode=--mixup_mode "batch", label_smoothing=--smoothing 0.1).
  c.method.mixup_alpha, c.method.cutmix_alpha = 0.8, 1.0
  c.method.mix_prob, c.method.mix_switch_prob, c.method.mix_mode = 1.0, 0.5, "batch"
  c.method.ema_decay = 0.0  # --model_ema default False.
  c.init.what = "encoder"  # --finetune: the pretrained encoder; the head (another shape) starts afresh.

  c.data.source = "video_folder"
  c.data.video_folder.num_classes = 400
  c.data.num_frames, c.data.frame_stride = 16, 4  # finetune.sh --num_frames 16 --sampling_rate 4.
  c.data.image_size = 224  # --input_size 224 --short_side_size 224.
  c.data.batch_size = videos * num_sample  # Clips per step (see the docstring).
  # kinetics.py VideoClsDataset._aug_frame: random resized crop of area (0.08, 1) and aspect (0.75, 1.3333)
  # (jvssl's fixed ratio range), flipped except on SSv2.
  c.data.augment.random_crop_scale = (0.08, 1.0)
  c.data.augment.flip = True
  c.data.augment.repeats = num_sample  # --num_sample.
  # --aa rand-m7-n4-mstd0.5-inc1: 4 ops of magnitude 7 (std 0.5), the increasing ops; one draw per clip.
  c.data.augment.rand_augment_ops, c.data.augment.rand_augment_magnitude = 4, 7.0
  c.data.augment.rand_augment_magnitude_std = 0.5
  # --reprob 0.25 --remode pixel --recount 1: a box of per-pixel normal noise. kinetics.py runs timm's
  # RandomErasing over the T axis, so each frame draws its own; jvssl erases one box in all frames of a clip.
  c.data.augment.random_erase_prob, c.data.augment.random_erase_count = 0.25, 1

  c.optimizer.name = "adamw"  # finetune.sh --opt adamw --opt_betas 0.9 0.999.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.05  # finetune.sh --weight_decay 0.05, constant.
  c.optimizer.lr = lr
  c.optimizer.lr_base_batch_size = 256 * num_sample  # lr x videos / 256: total_batch_size counts videos.
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
  # final_test: --test_num_segment 5 x --test_num_crop 3 views of each test video; a batch holds the script's
  # videos per step (its test loader's --batch_size per GPU), each view in turn.
  c.evals.multiview = config_lib.eval_config("multiview", num_clips=5, test_split="test", batch_size=videos)

  if arg.runlocal:
    # The data and ViT of `make demo`'s pretraining (configs/videomae_synthetic.py), so its workdir is this
    # run's init.checkpoint: 8x48x48 clips of moving shapes (class: the shape, 8 classes), 4x8x8 tubelets.
    c.data.source = "synthetic"
    c.data.num_frames, c.data.frame_stride, c.data.image_size = 8, 2, 48
    syn = c.data.synthetic
    syn.radius, syn.zoom, syn.travel = (0.22, 0.32), (0.1, 0.3), (0.1, 0.3)
    syn.background_texture, syn.pixel_noise = 0.0, 0.0
    c.method.num_classes = syn.num_classes
    c.model.patch_size = (4, 8, 8)
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 128, 4, 4, 512
    c.model.remat = "none"
    # Few labels and a short schedule, where pretraining pays off: 1024 labelled clips, 300 steps of 32, the
    # demo's fine-tuning evaluator's settings. The recipe's regularisers are for 35-150 epochs: off here.
    c.data.train_subset = 1024
    c.data.batch_size = 32
    c.optimizer.lr, c.optimizer.lr_base_batch_size = 2e-3, 0
    c.schedule.warmup_steps = 3
    c.model.drop_path_rate = 0.0
    c.method.mixup_alpha = c.method.cutmix_alpha = 0.0
    c.data.augment.random_crop_scale, c.data.augment.flip, c.data.augment.repeats = (1.0, 1.0), False, 1
    c.data.augment.rand_augment_ops, c.data.augment.random_erase_prob = 0, 0.0
    # A smoke run of 10 steps, as every runlocal is; the README's fine-tuning of the demo's encoder adds
    # --config.train.num_steps=300 --config.schedule.warmup_steps=30.
    c.train.num_steps = 10
    c.train.log_every_steps = 5
    c.train.checkpoint_every_steps = 5
    c.train.compute_dtype = "float32"
    c.eval.batch_size = 128
    # One clip of 3 crops: a synthetic video is one clip long, and its square frames are what a crop keeps.
    c.evals.multiview.num_clips, c.evals.multiview.batch_size = 1, 64
  c.lock()
  return c
