"""SVT pretraining on Kinetics-400 (Ranasinghe et al., "Self-supervised Video Transformer", CVPR 2022), from
the official code: DINO self-distillation between global and local spatio-temporal views of a video.

Produces the checkpoint behind the paper's linear-evaluation and fine-tuning results on K400, UCF101, HMDB51
and SSv2 (kahnchana/svt README; its releases page has the pretrained weights to compare with).

Values come from kahnchana/svt: scripts/train.sh (4 GPUs x --batch_size_per_gpu 8, --arch timesformer) and,
for what it leaves out, train_ssl.py's argument defaults (lr 5e-4 per 256, min_lr 1e-6, warmup 10 epochs,
--epochs 100, weight decay 0.04 -> 0.4, DINO head out_dim 65536, teacher temperature 0.04,
teacher momentum 0.996 -> 1, 2 global + 8 local crops of area (0.4, 1) and (0.05, 0.4), AdamW) and
models/configs/Kinetics/TimeSformer_divST_8x32_224.yaml (the default --cfg: 8 frames at stride 32, 224 px);
datasets/decoder.py (temporal_aug) and datasets/transform.py (VideoDataAugmentationDINO) make the views.

Not yet a jvssl field:
  backbone: TimeSformer ViT-B/16 with divided space-time attention (attention_type divided_space_time,
    separate temporal embedding, drop path 0.1 in get_vit_base_patch16_224); jvssl's ViT has joint or
    ViViT-factorised attention, joint used here.
  initialisation from ImageNet-21k ViT-B weights (TIMESFORMER.PRETRAINED_MODEL): the init section would load
    them, but jvssl.tools.import_weights has no timm image-ViT format to bring them in.
  weight decay cosine from 0.04 to 0.4 (--weight_decay_end); jvssl's is constant at the start value.
  --clip_grad 3.0, applied to each parameter's gradient on its own (utils.clip_gradients); jvssl's
    optimizer.grad_clip_norm clips the global norm, so it is left off.
  --freeze_last_layer 1: the last DINO layer frozen for the first epoch; --norm_last_layer True.
  the views: the decoded clip spans 8 x 32 frames; global views take 8 frames over all of it (frames
    0..N-5 and 5..N), local views 8 frames over 1/8 of it at 96 px; jvssl resamples every view from the
    8-frame clip at 224 px, so a local view repeats frames.
  per-view colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, probability 0.8) on the device;
    grayscale 0.2 per view is jvssl's view_grayscale_prob. Blur and solarization are no-ops in the code.
  the paper's text trains 20 epochs; train.sh passes no --epochs, so the code's default 100 is used.
  --use_fp16 True (jvssl uses bfloat16).

Variant: the default; add `runlocal` for a CPU smoke run on synthetic data.
"""

from jvssl.config import base_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  c = base_config(model="vit", method="dino")

  c.model.variant = "B"  # get_vit_base_patch16_224: 768 wide, 12 blocks, 12 heads.
  c.model.patch_size = (1, 16, 16)  # TimeSformer patches each frame.
  c.model.pos_embed = "learned"
  c.model.qkv_bias = "all"  # qkv_bias=True.
  c.model.pool = "cls"  # DINO uses the CLS token's output.
  c.model.drop_path_rate = 0.1

  m = c.method
  m.num_global_views, m.num_local_views = 2, 8  # --local_crops_number 8.
  m.global_crop_scale, m.local_crop_scale = (0.4, 1.0), (0.05, 0.4)  # --global_crops_scale, --local_crops_scale.
  m.global_frame_fraction, m.local_frame_fraction = (1.0, 1.0), (0.125, 0.125)  # decoder.py: all, max_len // 8.
  m.view_grayscale_prob = 0.2
  m.num_prototypes = 65536  # --out_dim.
  m.hidden_dim, m.bottleneck_dim, m.head_layers = 2048, 256, 3  # DINOHead defaults.
  m.teacher_temp, m.warmup_teacher_temp, m.teacher_temp_warmup_steps = 0.04, 0.04, 0  # --*teacher_temp*.
  m.student_temp, m.center_momentum = 0.1, 0.9
  m.base_momentum = 0.996  # --momentum_teacher, cosine to 1.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride, c.data.image_size = 8, 32, 224  # NUM_FRAMES, SAMPLING_RATE, crop.
  c.data.batch_size = 4 * 8  # train.sh: 4 GPUs x --batch_size_per_gpu 8.
  c.data.augment.flip = True  # flip_and_color_jitter: horizontal_flip(0.5) per view (here per clip).

  c.optimizer.name = "adamw"  # --optimizer adamw (torch defaults: betas 0.9, 0.999, eps 1e-8).
  c.optimizer.b1, c.optimizer.b2, c.optimizer.eps = 0.9, 0.999, 1e-8
  c.optimizer.lr = 5e-4  # --lr, "specified here for a reference batch size of 256".
  c.optimizer.lr_base_batch_size = 256
  c.optimizer.weight_decay = 0.04  # --weight_decay (start of its cosine to 0.4).
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = 10  # --warmup_epochs.
  c.schedule.warmup_init_lr, c.schedule.min_lr = 0.0, 1e-6  # --min_lr, not scaled with the batch.
  c.train.num_epochs = 100  # --epochs default.
  c.train.compute_dtype = "bfloat16"

  if arg.runlocal:
    c.data.source = "synthetic"
    c.data.num_frames, c.data.frame_stride, c.data.image_size, c.data.batch_size = 4, 1, 32, 4
    c.model.patch_size = (1, 8, 8)
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
    m.num_local_views = 2
    m.hidden_dim, m.bottleneck_dim, m.num_prototypes = 64, 32, 128
    c.train.num_steps, c.train.log_every_steps = 4, 2
    c.train.compute_dtype = "float32"
  c.lock()
  return c
