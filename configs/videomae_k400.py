"""VideoMAE pretraining on Kinetics-400 (Tong et al., NeurIPS 2022), from the official per-size scripts.

Reproduces the pretraining behind the paper's Kinetics-400 comparison with the state of the art, as the
repository's README ("Main Results") and MODEL_ZOO.md ("Kinetics-400") list it after fine-tuning with
configs/videomae_finetune_k400.py: ViT-S 79.0, ViT-B 80.0 (800 epochs) / 81.5 (1600), ViT-L 85.2, ViT-H 86.6
top-1, 16 frames x 5 clips x 3 crops.

Values come from MCG-NJU/VideoMAE (commit 14ef8d8): the size's script
scripts/kinetics/videomae_vit_<size>_patch16_224_tubemasking_ratio_0.9_epoch_<epochs>/pretrain.sh
("pretrain.sh" below) and, for what a script leaves out, the defaults of run_mae_pretraining.py.
Its total batch is --batch_size per GPU x GPUs; it scales lr and min_lr by total batch / 256 (lines
193-195; --warmup_lr is scaled too but never reaches utils.cosine_scheduler, so warm-up starts at 0).
PRETRAIN.md: "--epochs 801" only dodged a crash in the last epoch, the schedule meant is 800 (1601: 1600).

Variants: `:vit_s`, `:vit_b` (default), `:vit_l`, `:vit_h`; `epochs=1600` takes ViT-B's 1600-epoch script
(the other sizes have only that one); add `,runlocal` for a CPU smoke run on the embedded synthetic data.
  python -m jvssl.main --config=configs/videomae_k400.py:vit_b --workdir=/tmp/vmae \\
    --config.data.video_folder.root=/data/k400 --config.data.video_folder.train_list=/data/k400/train.csv
"""

from jvssl.config import base_config, parse_arg, shrink_vit_for_cpu
from jvssl.errors import ConfigError

# size: (ViT variant, decoder width, decoder heads) of modeling_pretrain.py's pretrain_videomae_<size>_patch16_224.
SIZES = {"vit_s": ("S", 192, 3), "vit_b": ("B", 384, 6), "vit_l": ("L", 512, 8), "vit_h": ("H", 640, 8)}
# (size, epochs): (pretrain.sh --batch_size x GPUs, --decoder_depth). The GPU counts are the scripts' nodes x 8.
SCRIPTS = {
  ("vit_s", 1600): (32 * 32, 4),  # videomae_vit_small_..._epoch_1600: 4 nodes.
  ("vit_b", 800): (32 * 64, 4),  # videomae_vit_base_..._epoch_800: 8 nodes (PRETRAIN.md: "= 2048").
  ("vit_b", 1600): (32 * 64, 4),  # videomae_vit_base_..._epoch_1600.
  ("vit_l", 1600): (8 * 64, 12),  # videomae_vit_large_..._epoch_1600.
  ("vit_h", 1600): (16 * 64, 12),  # videomae_vit_huge_..._epoch_1600, with --use_checkpoint.
}
DEFAULT_EPOCHS = {"vit_s": 1600, "vit_b": 800, "vit_l": 1600, "vit_h": 1600}
# GroupMultiScaleCrop(input_size, [1, .875, .75, .66]): datasets.py, DataAugmentationForVideoMAE. No flip.
MULTI_SCALE = (1.0, 0.875, 0.75, 0.66)


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", epochs=0, runlocal=False)
  if arg.variant not in SIZES:
    raise ConfigError(f"unknown variant {arg.variant!r}; one of {', '.join(SIZES)}")
  epochs = arg.epochs or DEFAULT_EPOCHS[arg.variant]
  if (arg.variant, epochs) not in SCRIPTS:
    known = ", ".join(str(e) for s, e in SCRIPTS if s == arg.variant)
    raise ConfigError(f"VideoMAE published no {epochs}-epoch K400 script for {arg.variant}; epochs= one of {known}")
  batch, decoder_depth = SCRIPTS[arg.variant, epochs]
  c = base_config(model="vit", method="videomae")

  c.model.variant, c.method.decoder_width, c.method.decoder_heads = SIZES[arg.variant]
  c.model.patch_size = (2, 16, 16)  # --tubelet_size 2 (modeling_pretrain.py default), patch16.
  c.model.pos_embed = "sincos"
  c.model.qkv_bias = "qv"  # qkv_bias=True there means learned q and v biases, k none.
  c.model.remat = "full" if arg.variant == "vit_h" else "none"  # pretrain.sh --use_checkpoint (ViT-H only).
  c.method.mask_type, c.method.mask_ratio = "tube", 0.9  # pretrain.sh --mask_type tube --mask_ratio 0.9.
  c.method.decoder_depth = decoder_depth
  c.method.norm_pix_loss = True  # run_mae_pretraining.py --normlize_target default True.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride = 16, 4  # pretrain.sh --num_frames 16 --sampling_rate 4.
  c.data.image_size = 224  # --input_size default 224.
  c.data.batch_size = batch
  c.data.augment.multi_scale_crop = MULTI_SCALE
  c.data.augment.flip = False

  c.optimizer.name = "adamw"  # pretrain.sh --opt adamw --opt_betas 0.9 0.95.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.95
  c.optimizer.eps = 1e-8  # --opt_eps default.
  c.optimizer.weight_decay = 0.05  # --weight_decay default, constant (--weight_decay_end None).
  c.optimizer.lr = 1.5e-4  # --lr default, per 256 clips.
  c.optimizer.lr_base_batch_size = 256
  c.optimizer.grad_clip_norm = 0.0  # --clip_grad default None.
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = 40  # pretrain.sh --warmup_epochs 40.
  c.schedule.warmup_init_lr = 0.0
  c.schedule.min_lr = 1e-5  # --min_lr default, per 256 clips like lr.
  c.schedule.scale_with_batch = True
  c.train.num_epochs = epochs
  c.train.compute_dtype = "bfloat16"  # The scripts train in fp16 with a loss scaler; jvssl never uses fp16.
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    shrink_vit_for_cpu(c)
    c.method.decoder_width, c.method.decoder_depth, c.method.decoder_heads = 32, 1, 2
  c.lock()
  return c
