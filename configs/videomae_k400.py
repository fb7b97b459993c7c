"""VideoMAE pretraining on Kinetics-400 (Tong et al., NeurIPS 2022), the published recipe.

ViT-B/16, 16 frames at 224 sampled with stride 4, tubelets of 2x16x16, tube
masking at 90%, a 4-layer decoder of width 384, normalised-pixel loss, AdamW
(lr 1.5e-4 per 256 clips, betas 0.9/0.95, weight decay 0.05), 40 warm-up epochs
then cosine decay to 1e-5, 800 epochs at batch 1024 (the paper's ablation
schedule; its best K400 ViT-B used 1600).

Variants: `:vit_s`, `:vit_b` (default), `:vit_l`, `:vit_h`; add `,runlocal` for a
CPU-sized smoke run of the same recipe on the embedded synthetic data.
  python -m jvssl.main --config=configs/videomae_k400.py:vit_b --workdir=/tmp/vmae
"""

from jvssl.config import base_config, parse_arg

SIZES = {"vit_s": "S", "vit_b": "B", "vit_l": "L", "vit_h": "H"}


DECODERS = {"vit_s": (192, 3), "vit_b": (384, 6), "vit_l": (512, 8), "vit_h": (640, 8)}


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", runlocal=False)
  if arg.variant not in SIZES:
    raise ValueError(f"unknown variant {arg.variant!r}; one of {', '.join(SIZES)}")
  c = base_config(model="vit", method="videomae")

  c.model.variant = SIZES[arg.variant]
  c.model.patch_size = (2, 16, 16)
  c.model.pos_embed = "sincos"
  c.model.qkv_bias = "qv"
  c.method.mask_ratio = 0.9
  c.method.mask_type = "tube"
  # The official decoders (modeling_pretrain.py): S 192/3 heads, B 384/6, L 512/8, H 640/8.
  c.method.decoder_width, c.method.decoder_heads = DECODERS[arg.variant]
  c.method.decoder_depth = 4
  c.method.norm_pix_loss = True

  c.data.source = "video_folder"
  c.data.num_frames = 16
  c.data.frame_stride = 4
  c.data.image_size = 224
  c.data.batch_size = 1024
  c.data.augment.random_crop_scale = (0.66, 1.0)  # VideoMAE's multi-scale crop.
  c.data.augment.flip = True

  c.optimizer.name = "adamw"
  c.optimizer.lr = 1.5e-4
  c.optimizer.lr_base_batch_size = 256
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.95
  c.optimizer.weight_decay = 0.05
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = 40
  c.schedule.warmup_init_lr = 1e-6
  c.schedule.min_lr = 1e-5
  c.train.num_epochs = 800
  c.train.compute_dtype = "bfloat16"
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    c.data.source = "synthetic"
    c.data.num_frames, c.data.frame_stride, c.data.image_size = 4, 1, 32
    c.data.batch_size = 4
    c.model.patch_size = (2, 8, 8)
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 64, 2, 2, 128
    c.method.decoder_width, c.method.decoder_depth, c.method.decoder_heads = 32, 1, 2
    c.train.num_steps = 4
    c.train.log_every_steps = 2
    c.train.compute_dtype = "float32"
  c.lock()
  return c
