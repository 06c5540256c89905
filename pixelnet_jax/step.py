"""The train step, written once for one shard of the batch.

It samples pixels inside the step from the state's key (folded with the step and
each image's global index, so the pixels do not depend on the device layout), reads
hypercolumns, applies the head, keeps the points the task trains on (all of them, or
the hardest for 'hard' sampling) and applies the task's loss, and sums the gradients of
per-shard losses that are already scaled to the global mean. Collectives run over
the axis ``AXIS``; ``parallel.ParallelStep`` maps it over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

AXIS = "batch"


def train_step(
  state, batch: dict[str, jax.Array], *, model, task, num_points: int, axis_name: str = AXIS
):
  """One SGD step on this shard's images; collectives over ``axis_name``.

  Args:
    state: the (replicated) TrainState.
    batch: this shard's ``image [b, H, W, 3] float32`` and the task's label keys
      ``[b, H, W, ...]`` (plus ``valid [b, H, W] bool``).
    model: PixelNet built with ``bn_axis_name=axis_name``.
    task: the task value (sampling, targets, loss).
    num_points: pixels per image, static (ignored by 'dense' sampling, which reads every
      pixel; the model's head then runs over chunks of ``model.dense_chunk_size``).

  Returns:
    (new state, metrics dict of replicated scalars).
  """
  local_batch = batch["image"].shape[0]
  shard = lax.axis_index(axis_name)
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  key_points, key_dropout = jax.random.split(step_key)
  image_index = shard * local_batch + jnp.arange(local_batch)
  image_keys = jax.vmap(lambda i: jax.random.fold_in(key_points, i))(image_index)
  labels = task.select_labels(batch)
  num_read = task.num_candidates(num_points)
  samples = jax.vmap(lambda k, lab: task.sample(k, lab, num_read))(image_keys, labels)
  targets = jax.vmap(task.gather_targets)(labels, samples.coords)
  points = samples.coords.astype(jnp.float32)

  def flat(x):
    return x.reshape((-1,) + x.shape[2:])

  def loss_fn(params):
    outputs, new_vars = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      batch["image"],
      points,
      train=True,
      rngs={"dropout": jax.random.fold_in(key_dropout, shard)},
      mutable=["batch_stats"],
    )
    # The loss is float32 whatever the compute dtype (config.model.dtype).
    outputs = outputs.astype(jnp.float32)
    # 'hard' sampling keeps the hardest of the points read; other modes keep them all.
    outputs, kept_targets, mask = task.select_points(outputs, targets, samples.mask, num_points)
    local_count = mask.sum()
    global_count = jnp.maximum(lax.psum(local_count, axis_name), 1)
    local_mean = task.loss(flat(outputs), jax.tree.map(flat, kept_targets), flat(mask))
    # Scaled so that the sum over shards is the mean over every sampled pixel.
    loss = local_mean * local_count / global_count
    return loss, (new_vars.get("batch_stats", {}), local_count)

  (loss, (batch_stats, local_count)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
    state.params
  )
  kept = num_points if task.hard else samples.mask.shape[-1]
  grads = lax.psum(grads, axis_name)
  loss = lax.psum(loss, axis_name)
  batch_stats = lax.pmean(batch_stats, axis_name)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = {
    "loss": loss,
    "grad_norm": jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads))),
    "sampled_fraction": lax.psum(local_count, axis_name)
    / (lax.psum(local_batch, axis_name) * kept),
  }
  return new_state, metrics
