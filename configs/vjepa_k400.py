"""V-JEPA pretraining (Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations from
Video", 2024), ViT-L/16, from the official config, evaluated frozen with configs/probe_k400.py:attentive.

Values come from facebookresearch/jepa configs/pretrain/vitl16.yaml ("the yaml" below) and, for what it leaves
out, app/vjepa/train.py and src/helper.py. The paper pretrains on VideoMix2M (K400, K710, SSv2, HowTo100M);
point data.video_folder at whichever mix you have. The yaml's batch is 24 clips per GPU on 16 nodes of 8 GPUs.
Its "epochs" are `ipe` (300) iterations each, so the run is 300 x 300 steps, with 40 x 300 of warm-up.

Where jvssl differs: the weight decay stays at the yaml's start value 0.04 (V-JEPA raises it along a cosine to
0.4); the cosine of the learning rate ends at the last step (V-JEPA stretches its schedules by ipe_scale 1.25, so
training stops at 80% of them); the random resized crop draws aspect ratios in (3/4, 4/3) (the yaml: 0.75-1.35);
the fixed position table is VideoMAE's 1-D sin-cos over the flattened token index (V-JEPA: a 3-D table).

Variants: the default; `,rope` gives the encoder and predictor V-JEPA 2's 3-D rotary positions instead of the
table (the rest of the recipe stays V-JEPA's); add `,runlocal` for a CPU smoke run on the embedded synthetic data.
  python -m jvssl.main --config=configs/vjepa_k400.py --workdir=/tmp/vjepa \\
    --config.data.video_folder.root=/data/k400 --config.data.video_folder.train_list=/data/k400/train.csv
"""

from jvssl.config import base_config, parse_arg, shrink_vit_for_cpu

IPE = 300  # optimization.ipe: iterations per "epoch".


def get_config(arg=None):
  arg = parse_arg(arg, rope=False, runlocal=False)
  c = base_config(model="vit", method="vjepa")

  c.model.variant = "L"  # model.model_name vit_large.
  c.model.patch_size = (2, 16, 16)  # data.tubelet_size 2, data.patch_size 16.
  c.model.qkv_bias = "all"  # src/models/vision_transformer.py: qkv_bias=True on one nn.Linear.
  c.model.pos_embed = "rope" if arg.rope else "sincos"

  m = c.method
  # mask: 8 blocks of spatial scale 0.15 and 2 of 0.7, aspect ratio 0.75-1.5, spanning every token frame.
  m.num_blocks, m.spatial_scale, m.aspect_ratio, m.temporal_scale = (8, 2), (0.15, 0.7), (0.75, 1.5), 1.0
  m.predictor_width, m.predictor_depth = 384, 12  # model.pred_embed_dim, model.pred_depth.
  m.predictor_heads = 16  # src/helper.py: the predictor has the encoder's heads (ViT-L: 16).
  m.ema = (0.998, 1.0)  # optimization.ema.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride = 16, 4  # data.num_frames, data.sampling_rate.
  c.data.image_size = 224  # data.crop_size.
  c.data.batch_size = 24 * 16 * 8  # data.batch_size per GPU x nodes 16 x tasks_per_node 8 = 3072.
  c.data.augment.random_crop_scale = (0.3, 1.0)  # data_aug.random_resize_scale.
  c.data.augment.flip = True  # app/vjepa/train.py: make_transforms(random_horizontal_flip=True).

  c.optimizer.name = "adamw"  # src/helper.py init_opt: torch.optim.AdamW with its default betas.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999
  c.optimizer.weight_decay = 0.04  # optimization.weight_decay (final_weight_decay 0.4: see above).
  c.optimizer.lr = 6.25e-4  # optimization.lr, not scaled with the batch.
  c.optimizer.grad_clip_norm = 10.0  # optimization.clip_grad.
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_steps = 40 * IPE  # optimization.warmup 40 "epochs".
  c.schedule.warmup_init_lr = 2e-4  # optimization.start_lr.
  c.schedule.min_lr = 1e-6  # optimization.final_lr.
  c.train.num_steps = 300 * IPE  # optimization.epochs 300.
  c.train.compute_dtype = "bfloat16"  # meta.dtype.
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    shrink_vit_for_cpu(c)
    m.predictor_width, m.predictor_depth, m.predictor_heads = 32, 1, 2
    m.min_context = 4
    c.schedule.warmup_steps = 1
  c.lock()
  return c
