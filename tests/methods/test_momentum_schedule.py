"""A method's schedules follow the trainer that runs it, not a run length recomputed from the config."""

import jax.numpy as jnp
import numpy as np

from jvssl import config as config_lib, sharding, trainer as trainer_lib
from jvssl.data import pipeline


def _byol():
  c = config_lib.load("configs/ssl_synthetic.py:byol,runlocal")
  assert c.train.num_steps == 4  # What the config says; the trainers below run longer.
  return c


def _teacher_kernel(state):
  return np.asarray(state.rest["teacher"]["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"])


def _teacher_moves_per_step(config, num_steps: int, steps: int) -> tuple[list[float], trainer_lib.Trainer]:
  trainer = trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), num_steps, 1.0)
  state = trainer.init(0)
  host = next(pipeline.train_dataset(config, inputs=trainer.inputs).as_numpy_iterator())
  batch = pipeline.to_global(host, trainer.mesh, trainer.rules)
  moves, before = [], _teacher_kernel(state)
  for _ in range(steps):
    state, _ = trainer.step(state, batch)
    after = _teacher_kernel(state)
    moves.append(float(np.abs(after - before).max()))
    before = after
  return moves, trainer


def test_teacher_momentum_follows_the_trainers_run_length():
  c = _byol()
  moves, trainer = _teacher_moves_per_step(c, 50, 6)
  short = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh), 4, 1.0)
  momentum = lambda t, s: float(t.method.teacher_momentum(jnp.int32(s)))
  assert momentum(trainer, 4) < 1.0 and momentum(trainer, 50) == 1.0
  assert momentum(short, 4) == 1.0  # A schedule over the config's 4 steps would freeze the teacher from step 4.
  # Step 0's learning rate is 0 (warm-up), so the student, and with it the teacher, first moves at step 1;
  # the 50-step trainer's teacher keeps following the student past the config's 4 steps.
  assert moves[0] == 0.0 and all(m > 0 for m in moves[1:]), moves
