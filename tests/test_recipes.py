"""The published recipes in configs/: every variant loads, every runlocal variant trains, and every value
matches the one published, written out here beside the script or file it comes from."""

import json
import os

import numpy as np
import pytest

from jvssl import config as config_lib
from jvssl.errors import ConfigError

from conftest import REPO, run_python

CONFIGS = os.path.join(REPO, "configs")

VIDEOMAE = "MCG-NJU/VideoMAE@14ef8d8 "
K400_PT = VIDEOMAE + "scripts/kinetics/videomae_vit_{}_patch16_224_tubemasking_ratio_0.9_epoch_{}/pretrain.sh"
SSV2_PT = VIDEOMAE + "scripts/ssv2/videomae_vit_{}_patch16_224_tubemasking_ratio_0.9_epoch_{}/pretrain.sh"
K400_FT = VIDEOMAE + "scripts/kinetics/videomae_vit_{}_patch16_224_tubemasking_ratio_0.9_epoch_{}/finetune.sh"
SSV2_FT = VIDEOMAE + "scripts/ssv2/videomae_vit_{}_patch16_224_tubemasking_ratio_0.9_epoch_{}/finetune.sh"
UCF_FT = VIDEOMAE + "scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/finetune.sh"
VJEPA2 = "facebookresearch/vjepa2@c2963a4 configs/eval/vitl/k400.yaml (+ evals/video_classification_frozen/*.py)"
JEPA = "facebookresearch/jepa configs/pretrain/vitl16.yaml (+ app/vjepa/train.py, src/helper.py)"
# V-JEPA ViT-L/16 pretraining: every value the yaml sets that jvssl has a field for.
VJEPA_PRETRAIN = {
  "model.variant": "L",  # model.model_name vit_large
  "model.patch_size": (2, 16, 16),  # data.tubelet_size 2, data.patch_size 16
  "model.pos_embed": "sincos",
  "method.num_blocks": (8, 2),  # mask[*].num_blocks
  "method.spatial_scale": (0.15, 0.7),  # mask[*].spatial_scale
  "method.aspect_ratio": (0.75, 1.5),  # mask[*].aspect_ratio
  "method.temporal_scale": 1.0,  # mask[*].temporal_scale
  "method.predictor_width": 384,  # model.pred_embed_dim
  "method.predictor_depth": 12,  # model.pred_depth
  "method.predictor_heads": 16,  # src/helper.py: the encoder's num_heads
  "method.ema": (0.998, 1.0),  # optimization.ema
  "data.num_frames": 16,  # data.num_frames
  "data.frame_stride": 4,  # data.sampling_rate
  "data.image_size": 224,  # data.crop_size
  "data.batch_size": 24 * 16 * 8,  # data.batch_size x nodes x tasks_per_node
  "data.augment.random_crop_scale": (0.3, 1.0),  # data_aug.random_resize_scale
  "optimizer.weight_decay": 0.04,  # optimization.weight_decay (the start of its cosine)
  "optimizer.lr": 6.25e-4,  # optimization.lr
  "optimizer.grad_clip_norm": 10.0,  # optimization.clip_grad
  "schedule.warmup_steps": 40 * 300,  # optimization.warmup x ipe
  "schedule.warmup_init_lr": 2e-4,  # optimization.start_lr
  "schedule.min_lr": 1e-6,  # optimization.final_lr
  "train.num_steps": 300 * 300,  # optimization.epochs x ipe
  "train.compute_dtype": "bfloat16",  # meta.dtype
}

# What every VideoMAE pretraining script shares: its flags, else run_mae_pretraining.py's defaults.
VIDEOMAE_PRETRAIN = {
  "model.patch_size": (2, 16, 16),  # --tubelet_size 2 (default), patch16 models.
  "model.qkv_bias": "qv",  # modeling_pretrain.py qkv_bias=True: q_bias and v_bias.
  "method.mask_type": "tube",  # --mask_type tube
  "method.mask_ratio": 0.9,  # --mask_ratio 0.9
  "method.norm_pix_loss": True,  # --normlize_target default True
  "data.num_frames": 16,  # --num_frames 16
  "data.image_size": 224,  # --input_size default 224
  "data.augment.multi_scale_crop": (1.0, 0.875, 0.75, 0.66),  # datasets.py: GroupMultiScaleCrop(224, [...])
  "data.augment.flip": False,  # DataAugmentationForVideoMAE has no flip.
  "optimizer.name": "adamw",  # --opt adamw
  "optimizer.b1": 0.9,  # --opt_betas 0.9 0.95
  "optimizer.b2": 0.95,
  "optimizer.eps": 1e-8,  # --opt_eps default
  "optimizer.weight_decay": 0.05,  # --weight_decay default
  "optimizer.lr": 1.5e-4,  # --lr default ...
  "optimizer.lr_base_batch_size": 256,  # ... * total_batch_size / 256 (run_mae_pretraining.py line 193)
  "optimizer.grad_clip_norm": 0.0,  # --clip_grad default None
  "schedule.warmup_epochs": 40,  # --warmup_epochs 40
  "schedule.warmup_init_lr": 0.0,  # utils.cosine_scheduler(start_warmup_value=0): --warmup_lr is never passed.
  "schedule.min_lr": 1e-5,  # --min_lr default ...
  "schedule.scale_with_batch": True,  # ... * total_batch_size / 256 (line 194)
}
K400_PRETRAIN = dict(VIDEOMAE_PRETRAIN, **{"data.frame_stride": 4})  # --sampling_rate 4
SSV2_PRETRAIN = dict(VIDEOMAE_PRETRAIN, **{"data.frame_stride": 2})  # --sampling_rate 2

# What every VideoMAE fine-tuning script shares: its flags, else run_class_finetuning.py's defaults.
VIDEOMAE_FINETUNE = {
  "model.patch_size": (2, 16, 16),  # --tubelet_size default 2
  "model.pos_embed": "sincos",  # modeling_finetune.py: fixed sinusoid table (use_learnable_pos_emb False).
  "model.final_norm": "pooled",  # --use_mean_pooling default True: mean of the tokens, then fc_norm.
  "model.pool": "mean",
  "method.label_smoothing": 0.1,  # --smoothing default
  "method.head_init_scale": 0.001,  # --init_scale default
  "data.num_frames": 16,  # --num_frames 16
  "data.image_size": 224,  # --input_size 224
  "data.augment.random_crop_scale": (0.08, 1.0),  # kinetics.py _aug_frame: scl [0.08, 1.0]
  "optimizer.name": "adamw",  # --opt adamw
  "optimizer.b1": 0.9,  # --opt_betas 0.9 0.999
  "optimizer.b2": 0.999,
  "optimizer.weight_decay": 0.05,  # --weight_decay 0.05
  "schedule.warmup_epochs": 5,  # --warmup_epochs default
  "schedule.warmup_init_lr": 0.0,  # --warmup_lr never reaches utils.cosine_scheduler.
  "schedule.scale_with_batch": True,  # min_lr * total_batch_size / 256 (line 407)
  # Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob, switch_prob=..., mode=...,
  # label_smoothing=args.smoothing): run_class_finetuning.py's defaults, which no script changes.
  "method.mixup_alpha": 0.8,  # --mixup default
  "method.cutmix_alpha": 1.0,  # --cutmix default
  "method.mix_prob": 1.0,  # --mixup_prob default
  "method.mix_switch_prob": 0.5,  # --mixup_switch_prob default
  "method.mix_mode": "batch",  # --mixup_mode default
  "method.ema_decay": 0.0,  # --model_ema default False
  "data.augment.rand_augment_ops": 4,  # --aa default rand-m7-n4-mstd0.5-inc1: n4
  "data.augment.rand_augment_magnitude": 7.0,  # m7
  "data.augment.rand_augment_magnitude_std": 0.5,  # mstd0.5
  "data.augment.random_erase_prob": 0.25,  # --reprob default (--remode pixel)
  "data.augment.random_erase_count": 1,  # --recount default
  "init.what": "encoder",  # --finetune: the pretrained encoder; the head (another shape) is dropped.
  "evals.multiview.test_split": "test",  # final_test on test.csv
}


def videomae_views(videos, num_sample, test_num_segment):
  """A fine-tuning script's batch and views. total_batch_size = --batch_size x GPUs counts videos (lr * it / 256,
  len(dataset) // it steps per epoch); with --num_sample each video gives that many clips of the step, and jvssl's
  data.batch_size counts clips (data.augment.repeats of each video), so lr_base_batch_size is 256 x num_sample."""
  return {
    "data.batch_size": videos * num_sample,
    "data.augment.repeats": num_sample,  # --num_sample
    "optimizer.lr_base_batch_size": 256 * num_sample,
    "evals.multiview.num_clips": test_num_segment,  # --test_num_segment (x --test_num_crop 3)
  }


K400_FINETUNE = dict(
  VIDEOMAE_FINETUNE,
  **{
    "method.num_classes": 400,  # --nb_classes 400
    "data.frame_stride": 4,  # --sampling_rate 4
    "data.sampling": "random",  # kinetics.py: dense sampling of consecutive frames.
    "data.augment.flip": True,  # spatial_sampling(random_horizontal_flip=True) unless SSV2.
  },
)
SSV2_FINETUNE = dict(
  VIDEOMAE_FINETUNE,
  **{
    "method.num_classes": 174,  # --nb_classes 174
    "data.sampling": "segment",  # ssv2.py: one frame from each of 16 segments.
    "data.augment.flip": False,  # random_horizontal_flip=False if args.data_set == 'SSV2'
    "model.drop_path_rate": 0.1,  # --drop_path default
    "method.head_dropout": 0.0,  # --fc_drop_rate default
    "schedule.min_lr": 1e-6,  # --min_lr default
  },
)
# scripts/ucf101/.../finetune.sh, in full.
UCF101_FINETUNE = dict(
  K400_FINETUNE,
  **{
    "model.variant": "B",  # --model vit_base_patch16_224
    "method.num_classes": 101,  # --nb_classes 101
    **videomae_views(16 * 8, 2, 5),  # --batch_size 16 on 8 GPUs, --num_sample 2, --test_num_segment 5
    "optimizer.lr": 5e-4,  # --lr 5e-4
    "schedule.min_lr": 1e-5,  # --min_lr 1e-5
    "optimizer.layer_decay": 0.7,  # --layer_decay 0.7
    "train.num_epochs": 100,  # --epochs 100
    "method.head_dropout": 0.5,  # --fc_drop_rate 0.5
    "model.drop_path_rate": 0.2,  # --drop_path 0.2
    "model.remat": "full",  # --use_checkpoint
  },
)


def k400_finetune(variant, videos, num_sample, lr, epochs, **more):
  values = {"model.variant": variant, "optimizer.lr": lr, "train.num_epochs": epochs}
  values |= videomae_views(videos, num_sample, 5)  # --test_num_segment 5
  defaults = {  # run_class_finetuning.py defaults, unless the script sets them (ViT-H).
    "optimizer.layer_decay": 0.75,
    "model.drop_path_rate": 0.1,
    "method.head_dropout": 0.0,
    "schedule.min_lr": 1e-6,
    "model.remat": "none",
  }
  return {**K400_FINETUNE, **defaults, **values, **more}


SLOWFAST = "facebookresearch/SlowFast "
BYOL_YAML = SLOWFAST + "configs/contrastive_ssl/BYOL_SlowR50_8x8.yaml (+ slowfast/config/defaults.py)"
RHO_BYOL = {
  "method.hidden_dim": 4096,  # CONTRASTIVE.MLP_DIM
  "method.embed_dim": 256,  # CONTRASTIVE.DIM
  "method.head_layers": 2,  # CONTRASTIVE.NUM_MLP_LAYERS
  "method.predictor_layers": 2,  # CONTRASTIVE.PREDICTOR_DEPTHS [2]
  "method.batch_norm": True,  # CONTRASTIVE.BN_MLP
  "method.base_momentum": 0.996,  # CONTRASTIVE.MOMENTUM, annealed (MOMENTUM_ANNEALING True)
  "data.num_frames": 8,  # DATA.NUM_FRAMES
  "data.frame_stride": 8,  # DATA.SAMPLING_RATE
  "data.image_size": 224,  # DATA.TRAIN_CROP_SIZE
  "data.batch_size": 64,  # defaults.py TRAIN.BATCH_SIZE (per machine)
  "data.mean": (0.45, 0.45, 0.45),  # defaults.py DATA.MEAN
  "data.std": (0.225, 0.225, 0.225),  # defaults.py DATA.STD
  "data.augment.random_crop_scale": (0.2, 0.766),  # DATA.TRAIN_JITTER_SCALES_RELATIVE
  "data.augment.flip": True,  # defaults.py DATA.RANDOM_FLIP
  "data.augment.color_jitter": (0.6, 0.6, 0.6, 0.15),  # SSL_COLOR_BRI_CON_SAT, SSL_COLOR_HUE
  "data.augment.color_jitter_prob": 0.8,  # transform.py color_jitter_video_ssl, moco_v2_aug: p=0.8
  "data.augment.grayscale_prob": 0.2,  # DATA.COLOR_RND_GRAYSCALE
  "data.augment.blur_prob": 0.5,  # moco_v2_aug: GaussianBlur([.1, 2.]) with p=0.5
  "data.augment.blur_sigma": (0.1, 2.0),
  "optimizer.name": "sgd",  # SOLVER.OPTIMIZING_METHOD
  "optimizer.b1": 0.9,  # SOLVER.MOMENTUM
  "optimizer.lr_base_batch_size": 64,  # BASE_LR_SCALE_NUM_SHARDS: BASE_LR per machine of 64 clips
  "optimizer.weight_decay": 1e-6,  # SOLVER.WEIGHT_DECAY
  "schedule.warmup_epochs": 35,  # SOLVER.WARMUP_EPOCHS
  "schedule.warmup_init_lr": 0.001,  # SOLVER.WARMUP_START_LR ...
  "schedule.min_lr": 0.0,  # defaults.py COSINE_END_LR
  "schedule.scale_with_batch": True,  # ... both scaled with BASE_LR by the machines (defaults.py line 1282)
  "train.num_epochs": 200,  # SOLVER.MAX_EPOCH
}

CVRL_SRC = "tensorflow/models official/projects/video_ssl configs/{video_ssl.py, cvrl_pretrain_k600_200ep.yaml}"
CVRL = {
  "model.depth": 50,  # backbone resnet_3d model_id 50
  "method.hidden_dim": 2048,  # VideoSSLModel.hidden_dim
  "method.head_layers": 3,  # VideoSSLModel.hidden_layer_num
  "method.embed_dim": 128,  # VideoSSLModel.projection_dim
  "method.temperature": 0.1,  # SSLLosses.temperature
  "data.num_frames": 16,  # feature_shape (16, 224, 224, 3)
  "data.image_size": 224,
  "data.frame_stride": 2,  # temporal_stride 2
  "data.batch_size": 1024,  # global_batch_size 1024
  "data.mean": (0.0, 0.0, 0.0),  # normalize_image, zero_centering_image False: [0, 1]
  "data.std": (1.0, 1.0, 1.0),
  "data.augment.random_crop_scale": (0.3, 1.0),  # video_ssl_input.py random_crop_resize(..., (0.3, 1))
  "data.augment.flip": True,  # random_flip_left_right
  "data.augment.color_jitter": (0.8, 0.8, 0.8, 0.2),  # color_jitter(strength=1.0): 0.8 x3, hue 0.2
  "data.augment.color_jitter_prob": 0.8,  # random_color_jitter_3d: random_apply(..., p=0.8)
  "data.augment.grayscale_prob": 0.2,  # random_apply(to_grayscale, p=0.2)
  "optimizer.name": "sgd",  # optimizer sgd, nesterov false
  "optimizer.b1": 0.9,  # video_classification.py add_trainer: momentum 0.9
  "optimizer.lr": 0.32,  # initial_learning_rate 0.32 at batch 1024
  "optimizer.weight_decay": 1e-6,  # losses.l2_weight_decay
  "schedule.warmup_epochs": 5,  # warmup_steps 1787 = 5 x 357.4 steps per K600 epoch
  "schedule.warmup_init_lr": 0.0,  # add_trainer warmup_learning_rate 0
  "schedule.min_lr": 0.0,  # cosine to 0
}

SVT_SRC = "kahnchana/svt scripts/train.sh, train_ssl.py defaults, TimeSformer_divST_8x32_224.yaml"
SVT = {
  "model.variant": "B",  # get_vit_base_patch16_224
  "model.patch_size": (1, 16, 16),  # TimeSformer: 16x16 patches of each frame
  "model.qkv_bias": "all",  # qkv_bias=True
  "model.pool": "cls",
  "model.drop_path_rate": 0.1,  # drop_path_rate=0.1
  "method.num_global_views": 2,
  "method.num_local_views": 8,  # --local_crops_number 8
  "method.global_crop_scale": (0.4, 1.0),  # --global_crops_scale
  "method.local_crop_scale": (0.05, 0.4),  # --local_crops_scale
  "method.num_prototypes": 65536,  # --out_dim
  "method.teacher_temp": 0.04,  # --teacher_temp
  "method.warmup_teacher_temp": 0.04,  # --warmup_teacher_temp
  "method.base_momentum": 0.996,  # --momentum_teacher
  "method.view_grayscale_prob": 0.2,  # VideoDataAugmentationDINO.flip_and_color_jitter: grayscale p 0.2
  "data.num_frames": 8,  # DATA.NUM_FRAMES
  "data.frame_stride": 32,  # DATA.SAMPLING_RATE
  "data.image_size": 224,
  "data.batch_size": 32,  # train.sh: 4 GPUs x --batch_size_per_gpu 8
  "optimizer.name": "adamw",  # --optimizer adamw
  "optimizer.lr": 5e-4,  # --lr, for a reference batch of 256
  "optimizer.lr_base_batch_size": 256,
  "optimizer.weight_decay": 0.04,  # --weight_decay (start of the cosine to --weight_decay_end 0.4)
  "schedule.warmup_epochs": 10,  # --warmup_epochs
  "schedule.min_lr": 1e-6,  # --min_lr
  "schedule.scale_with_batch": False,  # only the peak lr is scaled (train_ssl.py lr_schedule)
  "train.num_epochs": 100,  # --epochs default (train.sh passes none)
}

# V-JEPA 2's frozen K400 evaluation (the probe and how its training clips are made) on the VideoMAE ViT-L encoder.
ATTENTIVE_PROBE = {
  "model.variant": "L",  # The encoder probed: configs/videomae_k400.py:vit_l (V-JEPA's ViT-L/16 comparison).
  "data.num_frames": 16,  # frames_per_clip
  "data.frame_stride": 4,  # frame_step
  "data.image_size": 224,  # facebookresearch/jepa configs/evals/vitl16_k400_16x8x3.yaml resolution 224
  # make_dataloader -> make_transforms(training=True): VideoTransform.
  "data.augment.multi_scale_crop": (),
  "data.augment.random_crop_scale": (0.08, 1.0),  # random_resize_scale=(0.08, 1.0)
  "data.augment.flip": False,  # random_horizontal_flip=False
  "data.augment.rand_augment_ops": 4,  # auto_augment=True: "rand-m7-n4-mstd0.5-inc1"
  "data.augment.rand_augment_magnitude": 7.0,
  "data.augment.rand_augment_magnitude_std": 0.5,
  "data.augment.random_erase_prob": 0.25,  # reprob=0.25, RandomErasing(mode="pixel", max_count=1)
  "data.augment.random_erase_count": 1,
  "evals.attentive_probe.depth": 4,  # classifier.num_probe_blocks
  "evals.attentive_probe.num_heads": 16,  # classifier.num_heads
  "evals.attentive_probe.mlp_ratio": 4.0,  # src/models/attentive_pooler.py AttentiveClassifier default
  "evals.attentive_probe.init_std": 0.02,  # AttentiveClassifier default
  "evals.attentive_probe.lrs": (5e-3, 3e-3, 1e-3, 3e-4, 1e-4),  # multihead_kwargs lr (= start_lr; final_lr 0)
  "evals.attentive_probe.weight_decays": (0.01, 0.1, 0.4, 0.8),  # multihead_kwargs weight_decay (= final)
  "evals.attentive_probe.num_epochs": 20,  # optimization.num_epochs
  "evals.attentive_probe.batch_size": 4 * 64,  # optimization.batch_size 4 x nodes 8 x tasks_per_node 8
  "evals.attentive_probe.select_on": "test",  # eval.py logs each epoch's best probe on dataset_val
  "evals.attentive_probe.stream": True,  # the frozen encoder runs on every epoch's augmented clips
}

# VideoMAE V2: every script's flags, else run_mae_pretraining.py's defaults (batch = --batch_size x GPUs videos,
# --num_sample clips of each).
VIDEOMAE_V2 = "OpenGVLab/VideoMAEv2@29eab1e scripts/pretrain/vit_{}_hybrid_pt.sh (+ run_mae_pretraining.py)"
VIDEOMAE_V2_PRETRAIN = {
  "model.pos_embed": "sincos",  # modeling_pretrain.py use_learnable_pos_emb=False
  "model.qkv_bias": "qv",  # modeling_finetune.py Attention: q_bias and v_bias
  "model.drop_path_rate": 0.0,  # --drop_path default
  "method.mask_type": "tube",  # --mask_type tube
  "method.mask_ratio": 0.9,  # --mask_ratio 0.9
  "method.decoder_mask_ratio": 0.5,  # --decoder_mask_type run_cell --decoder_mask_ratio 0.5
  "method.decoder_depth": 4,  # --decoder_depth 4
  "method.norm_pix_loss": True,  # --normlize_target default True
  "data.num_frames": 16,  # --num_frames 16
  "data.frame_stride": 4,  # --sampling_rate 4
  "data.image_size": 224,  # --input_size default
  "data.augment.repeats": 4,  # --num_sample 4
  "data.augment.multi_scale_crop": (1.0, 0.875, 0.75, 0.66),  # pretrain_datasets.py GroupMultiScaleCrop
  "data.augment.flip": False,  # DataAugmentationForVideoMAEv2 has no flip.
  "optimizer.name": "adamw",  # --opt adamw
  "optimizer.b1": 0.9,  # --opt_betas 0.9 0.95
  "optimizer.b2": 0.95,
  "optimizer.eps": 1e-8,  # --opt_eps default
  "optimizer.weight_decay": 0.05,  # --weight_decay default
  "optimizer.lr_base_batch_size": 256 * 4,  # lr * total_batch_size / 256, total_batch_size counting videos
  "schedule.warmup_init_lr": 0.0,  # --warmup_lr never reaches utils.cosine_scheduler.
  "schedule.min_lr": 1e-5,  # --min_lr default ...
  "schedule.scale_with_batch": True,  # ... * total_batch_size / 256 (line 357)
}


def videomae_v2(variant, patch, decoder_width, decoder_heads, gpus, lr, warmup, epochs, clip_grad, remat):
  return dict(
    VIDEOMAE_V2_PRETRAIN,
    **{
      "model.variant": variant,  # --model pretrain_videomae_<size>_patch<patch>_224
      "model.patch_size": (2, patch, patch),  # --tubelet_size default 2
      "method.decoder_width": decoder_width,  # decoder_embed_dim
      "method.decoder_heads": decoder_heads,  # decoder_num_heads
      "data.batch_size": 32 * 4 * gpus,  # --batch_size 32 x --num_sample 4 x GPUS
      "optimizer.lr": lr,  # --lr
      "schedule.warmup_epochs": warmup,  # --warmup_epochs
      "train.num_epochs": epochs,  # --epochs
      "optimizer.grad_clip_norm": clip_grad,  # --clip_grad (default None)
      "model.remat": remat,  # --with_checkpoint
    },
  )


# MVD: every script's flags, else run_mvd_pretraining.py's defaults.
MVD = "ruiwang2021/mvd@45b877a scripts/mvd_vit_{}_from_vit_{}_teacher_epoch_{}/pretrain_mvd_{}_on_k400.sh"
MVD_PRETRAIN = {
  "model.patch_size": (2, 16, 16),  # --tubelet_size default 2, patch16
  "model.pos_embed": "sincos",
  "model.qkv_bias": "qv",  # modeling_finetune.py Attention: q_bias and v_bias
  "method.mask_type": "tube",  # --mask_type tube
  "method.mask_ratio": 0.9,  # --mask_ratio 0.9
  "method.loss": "smooth_l1",  # --distill_loss_func SmoothL1 --video_distill_loss_func SmoothL1
  "method.image_teacher.weight": 1.0,  # --image_teacher_loss_weight default
  "method.video_teacher.weight": 1.0,  # --video_teacher_loss_weight default
  "method.random_teachers": False,  # --image_teacher_model_ckpt_path, --video_teacher_model_ckpt_path
  "data.num_frames": 16,  # --num_frames 16
  "data.frame_stride": 4,  # --sampling_rate 4
  "data.image_size": 224,  # --input_size default
  "data.augment.multi_scale_crop": (1.0, 0.875, 0.75, 0.66),  # datasets.py GroupMultiScaleTwoResizedCrop
  "data.augment.flip": False,
  "optimizer.name": "adamw",  # --opt adamw
  "optimizer.b1": 0.9,  # --opt_betas 0.9 0.95
  "optimizer.b2": 0.95,
  "optimizer.eps": 1e-8,  # --opt_eps default
  "optimizer.weight_decay": 0.05,  # --weight_decay default
  "optimizer.lr": 1.5e-4,  # --lr 1.5e-4 ...
  "optimizer.lr_base_batch_size": 256,  # ... * total_batch_size / 256 (run_mvd_pretraining.py line 350)
  "optimizer.grad_clip_norm": 0.0,  # --clip_grad default None
  "schedule.warmup_epochs": 40,  # --warmup_epochs 40
  "schedule.warmup_init_lr": 0.0,  # --warmup_lr never reaches utils.cosine_scheduler.
  "schedule.scale_with_batch": True,  # min_lr * total_batch_size / 256 (line 351)
}


def mvd(variant, per_gpu, update_freq, decoder_depth, decoder_width, decoder_heads, min_lr, drop_path, epochs):
  return dict(
    MVD_PRETRAIN,
    **{
      "model.variant": variant,  # --model pretrain_masked_video_student_<size>_patch16_224
      "data.batch_size": per_gpu * update_freq * 32,  # --batch_size x --update_freq x 32 GPUs
      "train.grad_accum_steps": update_freq,  # --update_freq
      "method.decoder_depth": decoder_depth,  # --decoder_depth
      "method.decoder_width": decoder_width,  # --feat_decoder_embed_dim (default: the student's width)
      "method.decoder_heads": decoder_heads,  # --feat_decoder_num_heads (default: the student's heads)
      "schedule.min_lr": min_lr,  # --min_lr (default 1e-5)
      "model.drop_path_rate": drop_path,  # --drop_path
      "train.num_epochs": epochs,  # --epochs 401 / 801: the folder's epoch_400 / epoch_800
    },
  )


# MaskFeat: the K400 MViT-S yaml's training on SlowFast's video ViT-B/16.
MASKFEAT = (
  "facebookresearch/SlowFast@287ec00 configs/masked_ssl/k400_MVITv2_S_16x4_MaskFeat_PT.yaml"
  " (+ k400_VIT_B_16x4_MAE_PT.yaml MVIT, slowfast/models/masked.py, slowfast/config/defaults.py)"
)
MASKFEAT_PRETRAIN = {
  "model.variant": "B",  # MVIT EMBED_DIM 768, NUM_HEADS 12, DEPTH 12 (k400_VIT_B_16x4_MAE_PT.yaml)
  "model.patch_size": (2, 16, 16),  # MVIT PATCH_KERNEL / PATCH_STRIDE (2, 16, 16)
  "model.qkv_bias": "all",  # MVIT QKV_BIAS True
  "model.pos_embed": "learned",  # MVIT SEP_POS_EMBED True (learned)
  "model.pool": "cls",  # MVIT CLS_EMBED_ON True
  "model.norm_eps": 1e-6,  # partial(nn.LayerNorm, eps=1e-6)
  "model.drop_path_rate": 0.0,  # MVIT DROPPATH_RATE 0.0
  "model.final_norm": "tokens",  # MSSeparateHead: norm_layer, then the projection
  "method.mask_ratio": 0.4,  # AUG.MASK_RATIO 0.4
  "method.hog_orientations": 9,  # masked.py self.nbins = 9
  "method.hog_cell": 8,  # masked.py self.cell_sz = 8
  "data.num_frames": 16,  # DATA.NUM_FRAMES
  "data.frame_stride": 4,  # DATA.SAMPLING_RATE
  "data.image_size": 224,  # DATA.TRAIN_CROP_SIZE
  "data.batch_size": 32,  # TRAIN.BATCH_SIZE (NUM_SHARDS 1)
  "data.mean": (0.45, 0.45, 0.45),  # defaults.py DATA.MEAN
  "data.std": (0.225, 0.225, 0.225),  # defaults.py DATA.STD
  "data.augment.random_crop_scale": (0.5, 1.0),  # DATA.TRAIN_JITTER_SCALES_RELATIVE
  "data.augment.flip": True,  # defaults.py DATA.RANDOM_FLIP
  "optimizer.name": "adamw",  # SOLVER.OPTIMIZING_METHOD
  "optimizer.b1": 0.9,  # defaults.py SOLVER.BETAS (0.9, 0.999)
  "optimizer.b2": 0.999,
  "optimizer.eps": 1e-8,  # optimizer.py AdamW(eps=1e-08)
  "optimizer.weight_decay": 0.05,  # SOLVER.WEIGHT_DECAY
  "optimizer.no_decay": ("bias", "norm"),  # SOLVER.ZERO_WD_1D_PARAM True, MVIT.ZERO_DECAY_POS_CLS False
  "optimizer.lr": 1e-4,  # SOLVER.BASE_LR ...
  "optimizer.lr_base_batch_size": 32,  # ... per machine (BASE_LR_SCALE_NUM_SHARDS)
  "optimizer.grad_clip_norm": 0.02,  # SOLVER.CLIP_GRAD_L2NORM
  "schedule.warmup_epochs": 10,  # SOLVER.WARMUP_EPOCHS
  "schedule.warmup_init_lr": 1e-6,  # SOLVER.WARMUP_START_LR ...
  "schedule.min_lr": 1e-6,  # SOLVER.COSINE_END_LR ...
  "schedule.scale_with_batch": True,  # ... both scaled with BASE_LR by the machines (defaults.py line 1282)
}

PUBLISHED = {
  "vjepa_k400.py": (JEPA, VJEPA_PRETRAIN),
  # V-JEPA 2's rotary positions on V-JEPA's recipe: only the positions change.
  "vjepa_k400.py:rope": (JEPA, dict(VJEPA_PRETRAIN, **{"model.pos_embed": "rope"})),
  # VideoMAE pretraining, per size (run_mae_pretraining.py; batch = --batch_size x GPUs).
  "videomae_k400.py:vit_s": (
    K400_PT.format("small", 1600),
    dict(K400_PRETRAIN, **{"model.variant": "S", "data.batch_size": 32 * 32, "train.num_epochs": 1600}),
  ),
  "videomae_k400.py:vit_b": (
    K400_PT.format("base", 800),
    dict(K400_PRETRAIN, **{"model.variant": "B", "data.batch_size": 32 * 64, "train.num_epochs": 800}),
  ),
  "videomae_k400.py:vit_b,epochs=1600": (
    K400_PT.format("base", 1600),
    dict(K400_PRETRAIN, **{"model.variant": "B", "data.batch_size": 32 * 64, "train.num_epochs": 1600}),
  ),
  "videomae_k400.py:vit_l": (
    K400_PT.format("large", 1600),
    dict(K400_PRETRAIN, **{"model.variant": "L", "data.batch_size": 8 * 64, "train.num_epochs": 1600}),
  ),
  "videomae_k400.py:vit_h": (
    K400_PT.format("huge", 1600),
    dict(
      K400_PRETRAIN,
      **{"model.variant": "H", "data.batch_size": 16 * 64, "train.num_epochs": 1600, "model.remat": "full"},
    ),
  ),
  "videomae_ssv2.py:vit_s": (
    SSV2_PT.format("small", 2400),  # --nnodes=8 (its comment says 4 nodes).
    dict(SSV2_PRETRAIN, **{"model.variant": "S", "data.batch_size": 32 * 64, "train.num_epochs": 2400}),
  ),
  "videomae_ssv2.py:vit_b": (
    SSV2_PT.format("base", 800),
    dict(SSV2_PRETRAIN, **{"model.variant": "B", "data.batch_size": 32 * 64, "train.num_epochs": 800}),
  ),
  "videomae_ssv2.py:vit_b,epochs=2400": (
    SSV2_PT.format("base", 2400),
    dict(SSV2_PRETRAIN, **{"model.variant": "B", "data.batch_size": 32 * 64, "train.num_epochs": 2400}),
  ),
  # VideoMAE fine-tuning (run_class_finetuning.py; batch = --batch_size x GPUs).
  # k400_finetune(size, --batch_size x GPUs, --num_sample, --lr, --epochs).
  "videomae_finetune_k400.py:vit_s": (K400_FT.format("small", 1600), k400_finetune("S", 12 * 32, 2, 5e-4, 150)),
  "videomae_finetune_k400.py:vit_b": (K400_FT.format("base", 800), k400_finetune("B", 8 * 64, 1, 1e-3, 100)),
  "videomae_finetune_k400.py:vit_b,pretrain_epochs=1600": (
    K400_FT.format("base", 1600),
    k400_finetune("B", 6 * 64, 2, 5e-4, 75),
  ),
  "videomae_finetune_k400.py:vit_l": (K400_FT.format("large", 1600), k400_finetune("L", 2 * 64, 2, 2e-3, 35)),
  "videomae_finetune_k400.py:vit_h": (
    K400_FT.format("huge", 1600),
    k400_finetune(
      "H",
      8 * 64,
      2,
      1e-3,
      50,
      **{
        "schedule.min_lr": 1e-5,  # --min_lr 1e-5
        "model.drop_path_rate": 0.2,  # --drop_path 0.2
        "method.head_dropout": 0.5,  # --fc_drop_rate 0.5
        "model.remat": "full",  # --use_checkpoint
      },
    ),
  ),
  "videomae_finetune_ssv2.py:vit_s": (
    SSV2_FT.format("small", 2400),
    dict(
      SSV2_FINETUNE,
      **{
        "model.variant": "S",
        **videomae_views(12 * 32, 2, 2),  # --test_num_segment 2
        "optimizer.lr": 1e-3,
        "optimizer.layer_decay": 0.7,  # --layer_decay 0.7
        "train.num_epochs": 40,
      },
    ),
  ),
  "videomae_finetune_ssv2.py:vit_b": (
    SSV2_FT.format("base", 800),
    dict(
      SSV2_FINETUNE,
      **{
        "model.variant": "B",
        **videomae_views(8 * 64, 1, 2),
        "optimizer.lr": 5e-4,
        "optimizer.layer_decay": 0.75,
        "train.num_epochs": 50,
      },
    ),
  ),
  "videomae_finetune_ssv2.py:vit_b,pretrain_epochs=2400": (
    SSV2_FT.format("base", 2400),
    dict(
      SSV2_FINETUNE,
      **{
        "model.variant": "B",
        **videomae_views(6 * 64, 2, 2),
        "optimizer.lr": 5e-4,
        "optimizer.layer_decay": 0.75,
        "train.num_epochs": 30,
      },
    ),
  ),
  "videomae_finetune_ucf101.py:1": (UCF_FT, UCF101_FINETUNE),
  # No HMDB51 script exists: the recipe is UCF101's with 51 classes (see the recipe's docstring).
  "videomae_finetune_hmdb51.py:1": (
    UCF_FT + " (no HMDB51 script)",
    dict(UCF101_FINETUNE, **{"method.num_classes": 51}),
  ),
  # The contrastive family.
  "cvrl_k400.py": (CVRL_SRC, dict(CVRL, **{"train.num_epochs": 800})),  # README: R3D-50 K400 800 epochs.
  "cvrl_k400.py:epochs=200": (CVRL_SRC, dict(CVRL, **{"train.num_epochs": 200})),
  "rho_byol_k400.py": (BYOL_YAML, dict(RHO_BYOL, **{"method.num_views": 2, "optimizer.lr": 0.6})),  # BASE_LR
  "rho_byol_k400.py:rho=4": (BYOL_YAML, dict(RHO_BYOL, **{"method.num_views": 4, "optimizer.lr": 1.2})),
  "svt_k400.py": (SVT_SRC, SVT),
  # The linear protocol runs on the rho-BYOL encoder's recipe; its own values are not yet jvssl fields.
  "probe_k400.py:linear": (BYOL_YAML, dict(RHO_BYOL, **{"method.num_views": 2, "optimizer.lr": 0.6})),
  "probe_k400.py:attentive": (VJEPA2, ATTENTIVE_PROBE),
  # The masked-modelling family.
  # videomae_v2(size, patch, decoder width, heads, GPUS, --lr, --warmup_epochs, --epochs, --clip_grad, remat).
  "videomae_v2_hybrid.py:vit_b": (
    VIDEOMAE_V2.format("b"),
    videomae_v2("B", 16, 384, 6, 32, 1e-3, 20, 200, 0.0, "none"),
  ),
  "videomae_v2_hybrid.py:vit_l": (
    VIDEOMAE_V2.format("l"),
    videomae_v2("L", 16, 512, 8, 48, 1e-3, 30, 300, 0.0, "none"),
  ),
  "videomae_v2_hybrid.py:vit_h": (
    VIDEOMAE_V2.format("h"),
    videomae_v2("H", 16, 512, 8, 64, 1e-3, 30, 300, 0.0, "full"),
  ),
  "videomae_v2_hybrid.py": (VIDEOMAE_V2.format("g"), videomae_v2("g", 14, 512, 8, 64, 6e-4, 30, 300, 0.02, "full")),
  # mvd(size, --batch_size, --update_freq, --decoder_depth, decoder width, heads, --min_lr, --drop_path, epochs).
  "mvd_k400.py": (MVD.format("base", "base", 400, "base"), mvd("B", 16, 2, 2, 768, 12, 1e-4, 0.1, 400)),
  "mvd_k400.py:vit_b,teacher=vit_l": (
    MVD.format("base", "large", 400, "base"),
    mvd("B", 8, 4, 2, 768, 12, 1e-4, 0.1, 400),
  ),
  "mvd_k400.py:vit_s": (MVD.format("small", "base", 400, "small"), mvd("S", 16, 2, 2, 384, 6, 1e-4, 0.1, 400)),
  "mvd_k400.py:vit_s,teacher=vit_l": (
    MVD.format("small", "large", 400, "small"),
    mvd("S", 16, 2, 2, 384, 6, 1e-4, 0.1, 400),
  ),
  "mvd_k400.py:vit_l": (MVD.format("large", "large", 400, "large"), mvd("L", 8, 2, 4, 512, 8, 1e-4, 0.1, 400)),
  "mvd_k400.py:vit_l,epochs=800": (
    MVD.format("large", "large", 800, "large"),
    mvd("L", 8, 2, 4, 512, 8, 1e-5, 0.1, 800),  # No --min_lr: the default 1e-5.
  ),
  "maskfeat_k400.py": (MASKFEAT, dict(MASKFEAT_PRETRAIN, **{"train.num_epochs": 300})),  # SOLVER.MAX_EPOCH
  # projects/maskfeat/README.md: the MViT-L checkpoint k400_MVIT_L_MaskFeat_PT_epoch_00800.
  "maskfeat_k400.py:epochs=800": (MASKFEAT, dict(MASKFEAT_PRETRAIN, **{"train.num_epochs": 800})),
}

# Variants a published recipe does not have: each stops with a one-line ConfigError.
UNPUBLISHED = (
  "videomae_k400.py:vit_x",
  "videomae_k400.py:vit_s,epochs=800",
  "videomae_ssv2.py:vit_l",
  "videomae_ssv2.py:vit_h",
  "videomae_finetune_ssv2.py:vit_l",
  "videomae_finetune_k400.py:vit_l,pretrain_epochs=800",
  "videomae_finetune_ucf101.py:4",
  "videomae_finetune_hmdb51.py:split=0",
  "cvrl_k400.py:epochs=100",
  "rho_byol_k400.py:rho=3",
  "probe_k400.py:cosine",
  "videomae_v2_hybrid.py:vit_s",
  "mvd_k400.py:vit_h",  # Its ViT-H/14 image teacher's tokens do not line up with the student's.
  "mvd_k400.py:vit_b,epochs=800",
  "mvd_k400.py:vit_l,teacher=vit_b",
  "maskfeat_k400.py:epochs=400",
)

# The published recipes (configs/videomae_synthetic.py and ssl_synthetic.py are jvssl's own demos).
RECIPES = (
  "cvrl_k400.py",
  "maskfeat_k400.py",
  "mvd_k400.py",
  "probe_k400.py",
  "rho_byol_k400.py",
  "svt_k400.py",
  "videomae_finetune_hmdb51.py",
  "videomae_finetune_k400.py",
  "videomae_finetune_ssv2.py",
  "videomae_finetune_ucf101.py",
  "videomae_k400.py",
  "videomae_ssv2.py",
  "videomae_v2_hybrid.py",
  "vjepa_k400.py",
)


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def _same(value, published) -> bool:
  if isinstance(published, str):
    return value == published
  if isinstance(published, tuple) and published and isinstance(published[0], str):  # Names (optimizer.no_decay).
    return tuple(value) == published
  return np.shape(value) == np.shape(published) and np.allclose(value, published, rtol=1e-12, atol=0)


@pytest.mark.parametrize("spec", sorted(PUBLISHED))
def test_recipe_values_are_the_published_ones(spec):
  source, values = PUBLISHED[spec]
  c = config_lib.load(os.path.join(CONFIGS, spec))
  wrong = {key: (_get(c, key), value) for key, value in values.items() if not _same(_get(c, key), value)}
  assert not wrong, f"{spec} differs from {source}: {{key: (recipe, published)}} = {wrong}"


def test_attentive_probe_runlocal_keeps_the_sweep_and_shrinks_the_run():
  c = config_lib.load(os.path.join(CONFIGS, "probe_k400.py:attentive,runlocal"))
  probe = c.evals.attentive_probe
  assert len(probe.lrs) * len(probe.weight_decays) == 20 and probe.stream and probe.select_on == "test"
  assert (probe.num_train, probe.num_epochs, probe.batch_size) == (32, 2, 16)
  assert c.data.source == "synthetic" and c.model.width % probe.num_heads == 0  # The probe's heads split the width.


@pytest.mark.parametrize("spec", UNPUBLISHED)
def test_unpublished_variants_are_refused_in_one_line(spec):
  with pytest.raises(ConfigError) as error:
    config_lib.load(os.path.join(CONFIGS, spec))
  assert "\n" not in str(error.value)


def test_every_recipe_has_a_published_table_entry():
  assert set(RECIPES) <= {spec.split(":")[0] for spec in PUBLISHED}


def test_videomae_schedule_scales_warmup_and_floor_with_the_batch():
  """run_mae_pretraining.py lines 193-195: at batch 2048 the peak is 1.2e-3 and the floor 8e-5; warm-up from 0."""
  from jvssl import optim

  c = config_lib.load(os.path.join(CONFIGS, "videomae_k400.py:vit_b"))
  steps_per_epoch = 100.0
  schedule = optim.make_schedule(c, int(800 * steps_per_epoch), steps_per_epoch)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(40 * 100)), 1.5e-4 * 2048 / 256, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(800 * 100)), 1e-5 * 2048 / 256, rtol=1e-6)
  c.schedule.scale_with_batch = False
  np.testing.assert_allclose(float(optim.make_schedule(c, 80000, 100.0)(80000)), 1e-5, rtol=1e-6)


@pytest.mark.parametrize(
  "spec, videos, lr, min_lr",
  [
    ("videomae_finetune_k400.py:vit_s", 12 * 32, 5e-4, 1e-6),  # --num_sample 2
    ("videomae_finetune_k400.py:vit_b", 8 * 64, 1e-3, 1e-6),  # --num_sample 1
    ("videomae_finetune_ssv2.py:vit_b,pretrain_epochs=2400", 6 * 64, 5e-4, 1e-6),  # --num_sample 2
    ("videomae_finetune_ucf101.py:1", 16 * 8, 5e-4, 1e-5),  # --num_sample 2
  ],
)
def test_videomae_finetune_lr_and_epochs_count_videos(spec, videos, lr, min_lr):
  """run_class_finetuning.py lines 404-407: total_batch_size = --batch_size x GPUs videos, whatever --num_sample;
  lr and min_lr are multiplied by it / 256 and an epoch is len(dataset_train) // it steps."""
  from jvssl import optim, trainer as trainer_lib

  c = config_lib.load(os.path.join(CONFIGS, spec))
  c.data.source, c.data.synthetic.num_train = "synthetic", 100 * videos  # A training split of 100 steps' videos.
  length = trainer_lib.run_length(c)
  assert length.steps_per_epoch == 100 and length.num_steps == 100 * c.train.num_epochs
  schedule = optim.make_schedule(c, length.num_steps, length.steps_per_epoch)
  np.testing.assert_allclose(float(schedule(5 * 100)), lr * videos / 256, rtol=1e-6)  # After 5 warm-up epochs.
  np.testing.assert_allclose(float(schedule(length.num_steps)), min_lr * videos / 256, rtol=1e-6)


def test_videomae_v2_lr_and_epochs_count_videos():
  """run_mae_pretraining.py lines 302-304 and 356-357: total_batch_size = --batch_size x GPUs videos, whatever
  --num_sample; lr and min_lr are multiplied by it / 256 and an epoch is len(dataset_train) // it steps."""
  from jvssl import optim, trainer as trainer_lib

  videos = 32 * 64  # ViT-g: --batch_size 32 on 64 GPUs.
  c = config_lib.load(os.path.join(CONFIGS, "videomae_v2_hybrid.py:vit_g"))
  c.data.source, c.data.synthetic.num_train = "synthetic", 100 * videos  # A training split of 100 steps' videos.
  length = trainer_lib.run_length(c)
  assert length.steps_per_epoch == 100 and length.num_steps == 100 * 300
  schedule = optim.make_schedule(c, length.num_steps, length.steps_per_epoch)
  np.testing.assert_allclose(float(schedule(30 * 100)), 6e-4 * videos / 256, rtol=1e-6)  # After 30 warm-up epochs.
  np.testing.assert_allclose(float(schedule(length.num_steps)), 1e-5 * videos / 256, rtol=1e-6)


def test_mvd_recipe_stops_in_one_line_without_its_teachers(tmp_path):
  """The recipe distils checkpoints the user gives: none, or one that is not there, is a one-line ConfigError
  when the run starts, never a silently random teacher."""
  from jvssl import registry
  from jvssl.methods.base import RunLength

  c = config_lib.load(os.path.join(CONFIGS, "mvd_k400.py"))
  method = registry.METHODS.get("mvd")
  with pytest.raises(ConfigError, match=r"method\.image_teacher\.checkpoint is empty") as error:
    method(c, RunLength(1, 1.0))
  assert "\n" not in str(error.value)
  c.method.image_teacher.checkpoint = c.method.video_teacher.checkpoint = str(tmp_path / "none")
  with pytest.raises(ConfigError, match="does not exist") as error:
    method(c, RunLength(1, 1.0))
  assert "\n" not in str(error.value)


def test_mvd_smooth_l1_is_torchs():
  """torch.nn.SmoothL1Loss (beta 1, MVD's --distill_loss_func SmoothL1): 0.5 x^2 below 1, |x| - 0.5 above."""
  from jvssl.methods import mvd

  x = np.array([[[-3.0, -1.0, -0.5, 0.0, 0.2, 1.0, 2.5]]], np.float32)
  expected = np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5).mean()
  np.testing.assert_allclose(float(mvd.LOSSES["smooth_l1"](x, np.zeros_like(x))), expected, rtol=1e-6)


def test_multi_scale_crop_draws_every_box_group_multi_scale_crop_can_and_no_other():
  """The boxes of a 240x320 frame against a port of TSN's GroupMultiScaleCrop._sample_crop_size."""
  import tensorflow as tf

  from jvssl.data import augment

  scales, size, height, width = (1, 0.875, 0.75, 0.66), 224, 240, 320
  sides = [int(min(height, width) * s) for s in scales]
  sides = [size if abs(s - size) < 3 else s for s in sides]
  expected = set()
  for i, h in enumerate(sides):
    for j, w in enumerate(sides):
      if abs(i - j) > 1:
        continue
      hs, ws = (height - h) // 4, (width - w) // 4
      places = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
      expected |= {(y * hs, x * ws, h, w) for x, y in places}  # (w_step, h_step) multiples, as fill_fix_offset.
  seeds = tf.stack([tf.range(2000, dtype=tf.int64), tf.fill([2000], tf.constant(7, tf.int64))], axis=1)
  boxes = tf.map_fn(
    lambda seed: tf.stack(augment.multi_scale_box(height, width, seed, scales, size)),
    seeds,
    fn_output_signature=tf.int32,
  ).numpy()
  drawn = {tuple(int(v) for v in box) for box in boxes}
  assert drawn == expected
  video = tf.zeros([2, height, width, 3], tf.uint8)
  assert augment.multi_scale_crop(video, tf.constant([1, 2], tf.int64), scales, size).shape == (2, 224, 224, 3)


_TRAIN = """
import json, tempfile
import jax
from jvssl import config as config_lib, sharding, trainer as trainer_lib
from jvssl.data import pipeline

losses = {}
with tempfile.TemporaryDirectory() as cache:
  # Variants that build the same step (K400 and SSv2 pretraining, UCF101 and HMDB51) compile it once.
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  for spec in %(specs)r:
    c = config_lib.load("configs/" + spec)
    trainer = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh), 2, 1.0)
    state = trainer.init(0)
    batches = pipeline.train_dataset(c, inputs=trainer.method.inputs()).as_numpy_iterator()
    losses[spec] = []
    for _ in range(2):
      state, metrics = trainer.step(state, pipeline.to_global(next(batches), trainer.mesh, trainer.rules))
      losses[spec].append(float(metrics["loss"]))
print("LOSSES" + json.dumps(losses))
"""

# One runlocal variant per recipe: the sizes of a recipe shrink to the same CPU model (UCF101 and HMDB51 train with
# data.augment.repeats 2, every fine-tuning recipe with mixup/CutMix, RandAugment and random erasing).
TRAINED = tuple(f"{name}:runlocal" for name in RECIPES)


@pytest.fixture(scope="module")
def losses():
  # About 3.5 minutes on 2 idle cores; the limit leaves room for a machine shared with other jobs.
  proc = run_python(_TRAIN % {"specs": TRAINED}, timeout=1500, optimize=False)
  return json.loads(proc.stdout.split("LOSSES", 1)[1])


@pytest.mark.parametrize("spec", TRAINED)
def test_runlocal_variant_trains_two_steps(losses, spec):
  assert len(losses[spec]) == 2 and np.isfinite(losses[spec]).all(), losses[spec]
