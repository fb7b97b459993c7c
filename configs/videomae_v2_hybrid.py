"""VideoMAE V2 pretraining with dual masking (Wang et al., "VideoMAE V2: Scaling Video Masked Autoencoders with
Dual Masking", CVPR 2023), from the official per-size scripts.

Reproduces the pretraining behind the paper's results; docs/MODEL_ZOO.md lists the ViT-g/14 run
(vit_g_hybrid_pt_1200e) fine-tuned to K400 87.2 top-1 (88.4 after K710 post-pre-training), SSv2 77.0, 16 frames
x 5 clips x 3 crops (x 2 x 3 on SSv2). The scripts for ViT-B, ViT-L and ViT-H are the paper's smaller models. The
encoder sees 10% of the tubelets (tube masking 0.9); the decoder reconstructs only half of the masked ones,
chosen by running-cell masking (jvssl/methods/videomae.py, method.decoder_mask_ratio).

Values come from OpenGVLab/VideoMAEv2 (formerly MCG-NJU/VideoMAEv2; commit 29eab1e): the size's
scripts/pretrain/vit_<size>_hybrid_pt.sh ("the script" below) and, for what a script leaves out, the defaults of
run_mae_pretraining.py and models/modeling_pretrain.py's pretrain_videomae_<size>_patch<p>_224. The scripts
pretrain on UnlabeledHybrid (the paper's 1.35M clips from Kinetics, SSv2, AVA, WebVid and Instagram);
point data.video_folder at the list you have (K400 alone gives a smaller-data version of the same recipe).

Batch and epochs: --batch_size 32 videos per GPU x $GPUS, each video giving --num_sample 4 clips with their own
crop and masks (multiple_pretrain_samples_collate), so a step is 128 clips per GPU. run_mae_pretraining.py
scales lr and min_lr by videos / 256 (total_batch_size = --batch_size x GPUs, lines 302 and 356-357) and an
epoch is len(dataset) // videos steps (line 304), so --epochs 300 is the "1200e" of the output folder and
MODEL_ZOO.md in clips. jvssl counts clips: data.batch_size is 128 x GPUs with data.augment.repeats 4, and
lr_base_batch_size 256 x 4 scales by the same videos / 256; an epoch is one pass over the videos, as there.
--warmup_lr is scaled too but never reaches utils.cosine_scheduler, so warm-up starts at 0. --with_checkpoint
(ViT-H, ViT-g) is model.remat "full".

Not yet a jvssl field:
  per-source frame strides: MODEL_ZOO.md samples SSv2 videos every 2 frames and the other sources every 4;
    jvssl has one data.frame_stride (4, the script's --sampling_rate).
  fp16 with a loss scaler (NativeScalerWithGradNormCount); jvssl never trains in fp16 and uses bfloat16.
  torch.compile and tf32 matmuls (torch.set_float32_matmul_precision("high")): speed only.

Variants: `:vit_b`, `:vit_l`, `:vit_h`, `:vit_g` (default, the paper's model); add `,runlocal` for a CPU
smoke run on the embedded synthetic data.
  python -m jvssl.main --config=configs/videomae_v2_hybrid.py:vit_g --workdir=/tmp/vmae2 \\
    --config.data.video_folder.root=/data/hybrid --config.data.video_folder.train_list=/data/hybrid/train.csv
"""

from jvssl.config import base_config, parse_arg, shrink_vit_for_cpu
from jvssl.errors import ConfigError

NUM_SAMPLE = 4  # Every script: --num_sample 4.
# size: (ViT variant, patch, decoder width, decoder heads) of modeling_pretrain.py's pretrain_videomae_<size>_*.
SIZES = {
  "vit_b": ("B", 16, 384, 6),
  "vit_l": ("L", 16, 512, 8),
  "vit_h": ("H", 16, 512, 8),
  "vit_g": ("g", 14, 512, 8),  # giant_patch14: 1408 wide, 40 deep, 16 heads, mlp_ratio 48/11 (6144).
}
# size: (GPUs, --lr, --warmup_epochs, --epochs, --clip_grad or 0, --with_checkpoint) of vit_<size>_hybrid_pt.sh.
SCRIPTS = {
  "vit_b": (32, 1e-3, 20, 200, 0.0, False),
  "vit_l": (48, 1e-3, 30, 300, 0.0, False),
  "vit_h": (64, 1e-3, 30, 300, 0.0, True),
  "vit_g": (64, 6e-4, 30, 300, 0.02, True),
}
# GroupMultiScaleCrop(input_size, [1, .875, .75, .66]): dataset/pretrain_datasets.py DataAugmentationForVideoMAEv2.
MULTI_SCALE = (1.0, 0.875, 0.75, 0.66)


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_g", runlocal=False)
  if arg.variant not in SIZES:
    raise ConfigError(f"VideoMAE V2 has pretraining scripts for {', '.join(SIZES)}, not {arg.variant!r}")
  variant, patch, decoder_width, decoder_heads = SIZES[arg.variant]
  gpus, lr, warmup_epochs, epochs, clip_grad, with_checkpoint = SCRIPTS[arg.variant]
  c = base_config(model="vit", method="videomae")

  c.model.variant = variant
  c.model.patch_size = (2, patch, patch)  # --tubelet_size default 2.
  c.model.pos_embed = "sincos"  # use_learnable_pos_emb=False: get_sinusoid_encoding_table.
  c.model.qkv_bias = "qv"  # modeling_finetune.py Attention: qkv_bias=True gives q_bias and v_bias, k none.
  c.model.drop_path_rate = 0.0  # --drop_path default 0.0.
  c.model.remat = "full" if with_checkpoint else "none"  # --with_checkpoint.
  m = c.method
  m.mask_type, m.mask_ratio = "tube", 0.9  # --mask_type tube --mask_ratio 0.9.
  m.decoder_mask_ratio = 0.5  # --decoder_mask_type run_cell --decoder_mask_ratio 0.5.
  m.decoder_width, m.decoder_heads = decoder_width, decoder_heads
  m.decoder_depth = 4  # --decoder_depth 4.
  m.norm_pix_loss = True  # --normlize_target default True.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride = 16, 4  # --num_frames 16 --sampling_rate 4.
  c.data.image_size = 224  # --input_size default 224.
  c.data.batch_size = 32 * NUM_SAMPLE * gpus  # --batch_size 32 videos per GPU, --num_sample clips of each.
  c.data.augment.repeats = NUM_SAMPLE
  c.data.augment.multi_scale_crop = MULTI_SCALE
  c.data.augment.flip = False  # DataAugmentationForVideoMAEv2 has no flip.

  c.optimizer.name = "adamw"  # --opt adamw --opt_betas 0.9 0.95.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.95
  c.optimizer.eps = 1e-8  # --opt_eps default.
  c.optimizer.weight_decay = 0.05  # --weight_decay default, constant (--weight_decay_end None).
  c.optimizer.lr = lr  # per 256 videos ...
  c.optimizer.lr_base_batch_size = 256 * NUM_SAMPLE  # ... = 1024 clips.
  c.optimizer.grad_clip_norm = clip_grad
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = warmup_epochs
  c.schedule.warmup_init_lr = 0.0
  c.schedule.min_lr = 1e-5  # --min_lr default, per 256 videos like lr.
  c.schedule.scale_with_batch = True
  c.train.num_epochs = epochs
  c.train.compute_dtype = "bfloat16"
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    shrink_vit_for_cpu(c)
    m.decoder_width, m.decoder_depth, m.decoder_heads = 32, 1, 2
  c.lock()
  return c
