"""MVD pretraining on Kinetics-400 (Wang et al., "Masked Video Distillation: Rethinking Masked Feature Modeling
for Self-supervised Video Representation Learning", CVPR 2023), from the official scripts.

Reproduces the pretraining behind the paper's K400 results (MODEL_ZOO.md, after fine-tuning with the scripts'
finetune_on_k400.sh): ViT-S 80.6 / 81.0 (ViT-B / ViT-L teachers), ViT-B 82.7 / 83.4, ViT-L 86.0 (400 epochs) /
86.4 (800) top-1, 16 frames x 5 clips x 3 crops. A tube-masked student (90% of the tubelets hidden) regresses,
with one decoder each, the last features of a frozen image teacher (MAE, on each tubelet's first frame) and of a
frozen video teacher (VideoMAE pretrained 1600 epochs on K400) at the masked tubelets (jvssl/methods/mvd.py).

Values come from ruiwang2021/mvd (commit 45b877a): the student's
scripts/mvd_vit_<student>_from_vit_<teacher>_teacher_epoch_<epochs>/pretrain_mvd_<student>_on_k400.sh ("the
script" below) and, for what a script leaves out, the defaults of run_mvd_pretraining.py and
modeling_student.py's pretrain_masked_video_student_<student>_patch16_224. Its batch is --batch_size per GPU
x --update_freq x 32 GPUs (PRETRAIN.md: "16 * 2 * 4 * 8 = 1024"), split here into train.grad_accum_steps =
--update_freq micro-batches as there; lr and min_lr are scaled by that batch / 256 (lines 348-351; --warmup_lr
is scaled too but never reaches utils.cosine_scheduler, so warm-up starts at 0). --epochs 401 (801) trains the
folder's 400 (800) epochs: VideoMAE's code base, which MVD's is, runs one epoch more to dodge a crash in the
last one (VideoMAE's PRETRAIN.md), and the schedule meant is 400 (800).

The teachers are jvssl checkpoints you give; nothing is downloaded. Import the scripts' teachers with
jvssl.tools.import_weights: the video teacher from VideoMAE's
k400_videomae_pretrain_<teacher>_patch16_224_frame_16x4_tube_mask_ratio_0.9_e1600.pth (--from=videomae,
--config=configs/videomae_k400.py:vit_<teacher>), the image teacher from MAE's mae_pretrain_vit_<teacher>.pth in
transformers' ViTMAE layout (--from=hf_vit) into a ViT with model.patch_size (1, 16, 16), pos_embed "learned"
(MAE's 2-D sin-cos table), qkv_bias "all" and pool "cls" (MAE's teacher attends with its CLS token). A teacher
left empty, or not found, stops the run with a one-line error (method.random_teachers False).
  python -m jvssl.main --config=configs/mvd_k400.py:vit_b --workdir=/tmp/mvd \\
    --config.method.image_teacher.checkpoint=/ckpt/mae_vit_b --config.method.video_teacher.checkpoint=/ckpt/vmae_b \\
    --config.data.video_folder.root=/data/k400 --config.data.video_folder.train_list=/data/k400/train.csv

Not yet a jvssl field:
  the teachers' targets: MVD regresses each teacher's last block output as it is (the MAE and VideoMAE teachers
    drop their final norm; --norm_feature is off); jvssl takes the teacher's output tokens (after its final
    norm when the teacher was trained with model.final_norm "tokens") and layer-normalises them.
  positions: the student and its decoders add a 3-D sin-cos table (get_3d_sincos_pos_embed); jvssl's is
    VideoMAE's 1-D table over the flattened token index.
  drop path 0.1 in the decoders too (PretrainVisionTransformerDecoder gets --drop_path); jvssl's decoders
    have none.
  fp16 with a loss scaler; jvssl uses bfloat16.
  ViT-H (mvd_vit_huge_from_vit_huge_teacher_epoch_800): its image teacher is MAE's ViT-H/14, whose 16x16
    tokens at 224 px do not line up with the student's 14x14 (the script passes no --teacher_input_size),
    so that variant is left out.

Variants: `:vit_s`, `:vit_b` (default), `:vit_l` (the student); `teacher=vit_b` or `teacher=vit_l` (default: the
student's size, ViT-B for ViT-S); `epochs=800` takes ViT-L's 800-epoch script (400 default); add `,runlocal`
for a CPU smoke run on the embedded synthetic data, with random teachers.
"""

from jvssl.config import base_config, parse_arg, shrink_vit_for_cpu
from jvssl.errors import ConfigError

STUDENTS = {"vit_s": "S", "vit_b": "B", "vit_l": "L"}
DEFAULT_TEACHER = {"vit_s": "vit_b", "vit_b": "vit_b", "vit_l": "vit_l"}
# (student, teacher, epochs): (--batch_size, --update_freq, --decoder_depth, decoder width and heads, --min_lr).
# Decoder width and heads: --feat_decoder_embed_dim / --feat_decoder_num_heads, by default the student's (768/12
# for ViT-B, 384/6 for ViT-S). --min_lr: run_mvd_pretraining.py's default 1e-5 where a script passes none.
SCRIPTS = {
  ("vit_s", "vit_b", 400): (16, 2, 2, (384, 6), 1e-4),
  ("vit_s", "vit_l", 400): (16, 2, 2, (384, 6), 1e-4),
  ("vit_b", "vit_b", 400): (16, 2, 2, (768, 12), 1e-4),
  ("vit_b", "vit_l", 400): (8, 4, 2, (768, 12), 1e-4),
  ("vit_l", "vit_l", 400): (8, 2, 4, (512, 8), 1e-4),
  ("vit_l", "vit_l", 800): (8, 2, 4, (512, 8), 1e-5),
}
GPUS = 32  # Every script: "train on 32 V100 GPUs (4 nodes x 8 GPUs)".
# GroupMultiScaleTwoResizedCrop(input_size, teacher_input_size, [1, .875, .75, .66]): datasets.py
# DataAugmentationForVideoDistillation; both sizes are 224, so the teachers see the student's crop. No flip.
MULTI_SCALE = (1.0, 0.875, 0.75, 0.66)


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", teacher="", epochs=400, runlocal=False)
  if arg.variant not in STUDENTS:
    raise ConfigError(f"MVD published K400 scripts for students {', '.join(STUDENTS)}, not {arg.variant!r}")
  teacher = arg.teacher or DEFAULT_TEACHER[arg.variant]
  if (arg.variant, teacher, arg.epochs) not in SCRIPTS:
    known = ", ".join(f"teacher={t},epochs={e}" for s, t, e in SCRIPTS if s == arg.variant)
    raise ConfigError(f"MVD has no {arg.variant} script with teacher={teacher},epochs={arg.epochs}; one of {known}")
  per_gpu, update_freq, decoder_depth, decoder, min_lr = SCRIPTS[arg.variant, teacher, arg.epochs]
  c = base_config(model="vit", method="mvd")

  c.model.variant = STUDENTS[arg.variant]  # --model pretrain_masked_video_student_<student>_patch16_224.
  c.model.patch_size = (2, 16, 16)  # --tubelet_size default 2, patch16.
  c.model.pos_embed = "sincos"
  c.model.qkv_bias = "qv"  # modeling_finetune.py Attention: qkv_bias=True gives q_bias and v_bias, k none.
  c.model.drop_path_rate = 0.1  # --drop_path 0.1.
  m = c.method
  m.mask_type, m.mask_ratio = "tube", 0.9  # --mask_type tube --mask_ratio 0.9.
  m.decoder_depth = decoder_depth
  m.decoder_width, m.decoder_heads = decoder
  m.loss = "smooth_l1"  # --distill_loss_func SmoothL1 --video_distill_loss_func SmoothL1.
  m.image_teacher.weight = 1.0  # --image_teacher_loss_weight default 1.0.
  m.video_teacher.weight = 1.0  # --video_teacher_loss_weight default 1.0.
  m.random_teachers = False  # --image_teacher_model_ckpt_path, --video_teacher_model_ckpt_path: yours to give.

  c.data.source = "video_folder"
  c.data.num_frames, c.data.frame_stride = 16, 4  # --num_frames 16 --sampling_rate 4.
  c.data.image_size = 224  # --input_size, --teacher_input_size, --video_teacher_input_size defaults 224.
  c.data.batch_size = per_gpu * update_freq * GPUS  # --batch_size x --update_freq x GPUs.
  c.data.augment.multi_scale_crop = MULTI_SCALE
  c.data.augment.flip = False

  c.optimizer.name = "adamw"  # --opt adamw --opt_betas 0.9 0.95.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.95
  c.optimizer.eps = 1e-8  # --opt_eps default.
  c.optimizer.weight_decay = 0.05  # --weight_decay default, constant (--weight_decay_end None).
  c.optimizer.lr = 1.5e-4  # --lr 1.5e-4, per 256 clips.
  c.optimizer.lr_base_batch_size = 256
  c.optimizer.grad_clip_norm = 0.0  # --clip_grad default None.
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_epochs = 40  # --warmup_epochs 40.
  c.schedule.warmup_init_lr = 0.0
  c.schedule.min_lr = min_lr  # per 256 clips, like lr.
  c.schedule.scale_with_batch = True
  c.train.num_epochs = arg.epochs
  c.train.grad_accum_steps = update_freq  # --update_freq: gradients summed over micro-batches, one update.
  c.train.compute_dtype = "bfloat16"
  c.train.checkpoint_every_steps = 1000

  if arg.runlocal:
    shrink_vit_for_cpu(c)
    m.decoder_width, m.decoder_depth, m.decoder_heads = 32, 1, 2
    m.random_teachers = True  # Frozen random copies of the small student: no checkpoint to give.
    c.train.grad_accum_steps = 1
  c.lock()
  return c
