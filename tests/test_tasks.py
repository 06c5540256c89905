"""Tasks: losses against hand computations, sampling masks, decode, metrics, errors."""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixelnet_jax import tasks
from pixelnet_jax.metrics import normals as normal_metrics
from pixelnet_jax.metrics import segmentation as seg_metrics
from pixelnet_jax.tasks import edges as edges_task


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _sample_batch(task, labels, num_points, seed=0):
  """Samples every image of a batch under jit + vmap, as the train step does."""
  keys = jax.random.split(jax.random.key(seed), len(next(iter(labels.values()))))
  fn = jax.jit(jax.vmap(functools.partial(task.sample, num_points=num_points)))
  return jax.device_get(fn(keys, labels))


def _sample_one(task, labels, num_points, seed=0):
  """Samples one image under jit (compiling once beats op-by-op dispatch)."""
  fn = jax.jit(task.sample, static_argnums=2)
  return jax.device_get(fn(jax.random.key(seed), labels, num_points))


def _at(array, coords):
  return array[coords[..., 0], coords[..., 1]]


# ----------------------------------------------------------------------------
# Registry and config.


def test_registry_lists_tasks_and_rejects_unknown_names_and_fields():
  assert tasks.available_tasks() == ["edges", "normals", "segmentation"]
  with pytest.raises(ValueError, match=r"Unknown task 'depth'.*edges.*normals.*segmentation"):
    tasks.get_task("depth", None)
  with pytest.raises(ValueError, match="config.task.num_clases"):
    tasks.get_task("segmentation", {"num_clases": 3})
  with pytest.raises(ValueError, match="does not match"):
    tasks.get_task("normals", {"name": "edges"})
  with pytest.raises(ValueError, match="sampling"):
    tasks.get_task("normals", {"sampling": "class_stratified"})
  with pytest.raises(ValueError, match="ignore_label"):
    tasks.get_task("segmentation", {"num_classes": 3, "ignore_label": 1})


def test_default_configs_build_tasks_with_the_contract_attributes():
  expected = {
    "segmentation": (21, "miou", "max"),
    "normals": (3, "mean", "min"),
    "edges": (1, "f_pixel", "max"),
  }
  for name, (k, metric, mode) in expected.items():
    config = tasks.default_task_config(name)
    assert config.name == name
    task = tasks.get_task(name, config)
    assert (task.name, task.num_outputs, task.main_metric, task.main_metric_mode) == (
      name,
      k,
      metric,
      mode,
    )
    assert task.label_keys


# ----------------------------------------------------------------------------
# Segmentation.


def _seg_labels(rng, shape=(2, 12, 10), num_classes=4):
  label = rng.integers(0, num_classes, shape).astype(np.int32)
  label[rng.random(shape) < 0.3] = 255
  valid = np.ones(shape, bool)
  valid[:, :, -3:] = False  # Padding on the right.
  return {"label": label, "valid": valid}


def test_segmentation_loss_matches_numpy_cross_entropy_and_ignores_masked_points():
  task = tasks.get_task("segmentation", {"num_classes": 3})
  logits = np.array(
    [[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0], [50.0, -50.0, 9.0]], np.float32
  )
  targets = np.array([0, 2, 1, 255], np.int32)
  mask = np.array([True, True, True, False])
  expected = -np.mean([_log_softmax(logits[i])[targets[i]] for i in range(3)])
  got = task.loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  assert float(got) == pytest.approx(expected, rel=1e-6)
  # Changing what is masked changes nothing; the gradient there is zero.
  other = logits.copy()
  other[3] = [-7.0, 3.0, 1.0]
  assert float(task.loss(jnp.asarray(other), jnp.asarray(targets), jnp.asarray(mask))) == (
    pytest.approx(expected, rel=1e-6)
  )
  grad = jax.grad(task.loss)(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[3] == 0)
  # No valid point at all: zero, not NaN.
  assert float(task.loss(jnp.asarray(logits), jnp.asarray(targets), jnp.zeros(4, bool))) == 0.0


@pytest.mark.parametrize("mode", ["uniform", "grid", "class_stratified"])
def test_segmentation_sampling_never_picks_ignored_or_padded_pixels(mode):
  rng = np.random.default_rng(0)
  task = tasks.get_task("segmentation", {"num_classes": 4, "sampling": mode})
  labels = _seg_labels(rng)
  sample = _sample_batch(task, labels, 64)
  assert sample.coords.shape == (2, 64, 2) and sample.mask.all()
  for b in range(2):
    picked = _at(labels["label"][b], sample.coords[b])
    assert np.all(picked != 255)
    assert np.all(_at(labels["valid"][b], sample.coords[b]))
    targets = task.gather_targets({k: v[b] for k, v in labels.items()}, sample.coords[b])
    np.testing.assert_array_equal(targets, picked)


def test_class_stratified_sampling_gives_each_present_class_its_quota():
  label = np.zeros((10, 10), np.int32)
  label[0, :3] = 2  # A rare class: 3 pixels.
  label[5:, :] = 255
  task = tasks.get_task("segmentation", {"num_classes": 4, "sampling": "class_stratified"})
  sample = _sample_one(task, {"label": label}, 40, seed=1)
  counts = np.bincount(_at(label, np.asarray(sample.coords)), minlength=4)
  np.testing.assert_array_equal(counts, [20, 0, 20, 0])  # Absent classes' shares go to others.
  weighted = tasks.get_task(
    "segmentation",
    {"num_classes": 4, "sampling": "class_stratified", "class_fractions": [3, 1, 1, 1]},
  )
  sample = _sample_one(weighted, {"label": label}, 40, seed=1)
  counts = np.bincount(_at(label, np.asarray(sample.coords)), minlength=4)
  np.testing.assert_array_equal(counts, [30, 0, 10, 0])


def test_fully_ignored_image_gives_empty_mask_and_zero_loss():
  task = tasks.get_task("segmentation", {"num_classes": 3})
  labels = {"label": np.full((4, 4), 255, np.int32)}
  sample = _sample_one(task, labels, 8)
  assert not np.any(sample.mask)
  targets = task.gather_targets(labels, sample.coords)
  assert float(task.loss(jnp.ones((8, 3)), targets, sample.mask)) == 0.0


def test_segmentation_decode_and_metric_accumulation():
  rng = np.random.default_rng(4)
  task = tasks.get_task("segmentation", {"num_classes": 4})
  dense = rng.normal(size=(4, 12, 10, 4)).astype(np.float32)
  pred = np.asarray(task.decode(jnp.asarray(dense)))
  assert pred.shape == (4, 12, 10) and pred.dtype == np.int32
  np.testing.assert_array_equal(pred, dense.argmax(-1))
  labels = _seg_labels(rng, (4, 12, 10))
  state = task.metric_init()
  for sl in (slice(0, 1), slice(1, 4)):
    state = task.metric_update(state, pred[sl], {k: v[sl] for k, v in labels.items()})
  one_shot = task.metric_update(task.metric_init(), pred, labels)
  np.testing.assert_array_equal(state["confusion"], one_shot["confusion"])
  keep = labels["valid"]
  expected = seg_metrics.scores(seg_metrics.confusion_matrix(pred[keep], labels["label"][keep], 4))
  result = task.metric_result(state)
  assert result["miou"] == pytest.approx(expected["miou"])
  assert set(result) == {"miou", "pixel_accuracy", "mean_accuracy"}
  # Padded pixels are not scored: changing predictions there changes nothing.
  pred2 = pred.copy()
  pred2[~keep] = (pred2[~keep] + 1) % 4
  np.testing.assert_array_equal(
    task.metric_update(task.metric_init(), pred2, labels)["confusion"], one_shot["confusion"]
  )


def test_segmentation_validate_labels_errors():
  task = tasks.get_task("segmentation", {"num_classes": 21})
  task.validate_labels({"label": np.array([[0, 20], [255, 3]], np.int32)})
  with pytest.raises(ValueError, match="class id 21"):
    task.validate_labels({"label": np.array([[0, 21], [255, 3]], np.int32)})
  with pytest.raises(ValueError, match=r"labels\['label'\] must have shape"):
    task.validate_labels({"label": np.zeros((5,), np.int32)})
  with pytest.raises(ValueError, match="int"):
    task.validate_labels({"label": np.zeros((2, 2), np.float32)})
  with pytest.raises(ValueError, match="missing"):
    task.validate_labels({"edges": np.zeros((2, 2), np.float32)})
  with pytest.raises(ValueError, match=r"labels\['valid'\] has shape"):
    task.validate_labels({"label": np.zeros((2, 2), np.int32), "valid": np.ones((3, 2), bool)})
  with pytest.raises(ValueError, match="prediction shape"):
    task.metric_update(
      task.metric_init(), np.zeros((2, 3), np.int32), {"label": np.zeros((2, 2), np.int32)}
    )


# ----------------------------------------------------------------------------
# Normals.


def test_normals_loss_is_two_minus_two_cosine_by_hand():
  task = tasks.get_task("normals", None)
  outputs = np.array([[2, 0, 0], [1, 1, 0], [0, 0, -3], [0, 0, 0], [9, 9, 9]], np.float32)
  targets = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]], np.float32)
  mask = np.array([True, True, True, False, False])
  # 2 (1 - cos): 90 deg -> 2, 45 deg -> 2 - sqrt(2), 180 deg -> 4.
  expected = (2.0 + (2 - math.sqrt(2)) + 4.0) / 3
  loss = task.loss(jnp.asarray(outputs), jnp.asarray(targets), jnp.asarray(mask))
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  # Zero-length outputs/targets (even unmasked) stay finite, also in the gradient.
  grad = jax.grad(task.loss)(jnp.asarray(outputs), jnp.asarray(targets), jnp.ones(5, bool))
  assert np.all(np.isfinite(grad))
  assert np.all(
    np.asarray(jax.grad(task.loss)(jnp.asarray(outputs), jnp.asarray(targets), jnp.asarray(mask)))[
      3:
    ]
    == 0
  )


def _normal_labels(rng, shape=(2, 9, 8)):
  normals = rng.normal(size=shape + (3,)).astype(np.float32)
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  normals_valid = rng.random(shape) < 0.6
  normals[~normals_valid] = np.nan  # Missing depth: garbage that must never be read.
  valid = np.ones(shape, bool)
  valid[:, -2:] = False
  return {"normals": normals, "normals_valid": normals_valid, "valid": valid}


@pytest.mark.parametrize("mode", ["uniform", "grid"])
def test_normals_sampling_only_at_valid_depth_inside_valid(mode):
  rng = np.random.default_rng(5)
  task = tasks.get_task("normals", {"sampling": mode})
  labels = _normal_labels(rng)
  sample = _sample_batch(task, labels, 50)
  assert sample.mask.all()
  for b in range(2):
    assert np.all(_at(labels["normals_valid"][b], sample.coords[b]))
    assert np.all(_at(labels["valid"][b], sample.coords[b]))
    targets = np.asarray(
      task.gather_targets({k: v[b] for k, v in labels.items()}, sample.coords[b])
    )
    assert targets.shape == (50, 3)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=-1), 1.0, rtol=1e-5)


def test_normals_decode_and_pooled_metric_accumulation():
  rng = np.random.default_rng(6)
  task = tasks.get_task("normals", None)
  labels = _normal_labels(rng, (3, 9, 8))
  labels["normals"] = np.nan_to_num(labels["normals"])
  dense = rng.normal(size=(3, 9, 8, 3)).astype(np.float32) * 4
  pred = np.asarray(task.decode(jnp.asarray(dense)))
  assert pred.shape == (3, 9, 8, 3)
  np.testing.assert_allclose(np.linalg.norm(pred, axis=-1), 1.0, rtol=1e-5)
  state = task.metric_init()
  for sl in (slice(0, 2), slice(2, 3)):
    state = task.metric_update(state, pred[sl], {k: v[sl] for k, v in labels.items()})
  result = task.metric_result(state)
  one_shot = task.metric_result(task.metric_update(task.metric_init(), pred, labels))
  assert result == pytest.approx(one_shot)
  keep = labels["normals_valid"] & labels["valid"]
  cos = np.clip(np.sum(pred[keep] * labels["normals"][keep], -1), -1, 1)
  errors = np.degrees(np.arccos(cos))
  assert result["mean"] == pytest.approx(errors.mean(), rel=1e-5)
  assert result["median"] == pytest.approx(np.median(errors), rel=1e-5)
  assert result["within_30"] == pytest.approx(100 * np.mean(errors < 30))
  assert result == pytest.approx(normal_metrics.scores(errors), rel=1e-5)


def test_normals_validate_labels_errors():
  task = tasks.get_task("normals", None)
  good = {"normals": np.zeros((4, 5, 3), np.float32), "normals_valid": np.ones((4, 5), bool)}
  task.validate_labels(good)
  with pytest.raises(ValueError, match=r"labels\['normals'\] must have shape \[\.\.\., H, W, 3\]"):
    task.validate_labels(dict(good, normals=np.zeros((4, 5, 2), np.float32)))
  with pytest.raises(ValueError, match=r"labels\['normals_valid'\] has shape"):
    task.validate_labels(dict(good, normals_valid=np.ones((5, 4), bool)))
  with pytest.raises(ValueError, match="bool"):
    task.validate_labels(dict(good, normals_valid=np.ones((4, 5), np.int32)))
  bad = good["normals"].copy()
  bad[1, 1, 0] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    task.validate_labels(dict(good, normals=bad))


# ----------------------------------------------------------------------------
# Edges.


def _bce(logit, y):
  p = 1 / (1 + math.exp(-logit))
  return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_edges_loss_by_hand_plain_and_class_balanced():
  logits = np.array([[1.0], [-2.0], [0.5], [3.0], [40.0]], np.float32)
  targets = np.array([1.0, 0.0, 0.0, 0.0, 0.0], np.float32)
  mask = np.array([True, True, True, True, False])
  plain = tasks.get_task("edges", None)
  expected = np.mean([_bce(float(logits[i, 0]), targets[i]) for i in range(4)])
  got = plain.loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # HED: beta = |Y-|/|Y| = 3/4 on positives, 1 - beta = 1/4 on negatives; / 4 valid points.
  balanced = tasks.get_task("edges", {"class_balance": "sampled"})
  expected = (0.75 * _bce(1.0, 1) + 0.25 * (_bce(-2.0, 0) + _bce(0.5, 0) + _bce(3.0, 0))) / 4
  got = balanced.loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # The masked point (even made positive) changes neither the loss nor beta.
  other = targets.copy()
  other[4] = 1.0
  assert float(balanced.loss(jnp.asarray(logits), jnp.asarray(other), jnp.asarray(mask))) == (
    pytest.approx(expected, rel=1e-5)
  )


def test_edges_soft_labels_give_soft_cross_entropy():
  task = tasks.get_task("edges", {"label_fusion": "soft"})
  edges = np.array([[0.0, 0.2], [0.6, 1.0]], np.float32)
  coords = np.array([[0, 1], [1, 0], [1, 1]], np.int32)
  targets = np.asarray(task.gather_targets({"edges": edges}, coords))
  np.testing.assert_allclose(targets, [0.2, 0.6, 1.0])
  logits = np.array([[0.3], [-0.7], [2.0]], np.float32)
  expected = np.mean([_bce(0.3, 0.2), _bce(-0.7, 0.6), _bce(2.0, 1.0)])
  assert float(task.loss(jnp.asarray(logits), jnp.asarray(targets), jnp.ones(3, bool))) == (
    pytest.approx(expected, rel=1e-5)
  )
  hard = tasks.get_task("edges", {"label_fusion": "threshold", "label_threshold": 0.5})
  np.testing.assert_array_equal(hard.gather_targets({"edges": edges}, coords), [0.0, 1.0, 1.0])


def _edge_labels(rng, shape=(2, 16, 12)):
  edges = np.zeros(shape, np.float32)
  edges[:, 3, :] = 1.0  # Agreed boundary.
  edges[:, 8, :] = 0.2  # One annotator in five.
  edges[:, :, 5] = np.maximum(edges[:, :, 5], 0.6)
  valid = np.ones(shape, bool)
  valid[:, -4:, :] = False
  edges[:, -4:, :] = 1.0  # Edges in the padding must never be sampled.
  return {"edges": edges, "valid": valid}


def test_edges_stratified_sampling_respects_positive_fraction_and_masks():
  rng = np.random.default_rng(7)
  labels = _edge_labels(rng)
  task = tasks.get_task("edges", {"positive_fraction": 0.25, "ignore_uncertain": True})
  sample = _sample_batch(task, labels, 40)
  for b in range(2):
    picked = _at(labels["edges"][b], sample.coords[b])
    assert np.all(_at(labels["valid"][b], sample.coords[b]))
    assert np.sum(picked >= 0.5) == 10
    assert not np.any((picked > 0) & (picked < 0.5))  # Uncertain pixels ignored.
  soft = tasks.get_task("edges", {"positive_fraction": 0.75, "label_fusion": "soft"})
  sample = _sample_batch(soft, labels, 40)
  for b in range(2):
    picked = _at(labels["edges"][b], sample.coords[b])
    assert np.all(_at(labels["valid"][b], sample.coords[b]))
    assert np.sum(picked > 0) == 30  # Soft: any annotator's mark is a positive stratum.


def _pr_by_brute_force(prob, positive, thresholds):
  best_f, ap, last_recall = 0.0, 0.0, 0.0
  for t in sorted(thresholds, reverse=True):  # Recall grows as the threshold falls.
    predicted = prob >= t
    tp = np.sum(predicted & positive)
    precision = tp / predicted.sum() if predicted.sum() else 1.0
    recall = tp / positive.sum()
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    best_f = max(best_f, f)
    ap += (recall - last_recall) * precision
    last_recall = recall
  return best_f, ap


def test_edges_pixel_f_and_ap_match_brute_force_and_accumulate():
  rng = np.random.default_rng(8)
  task = tasks.get_task("edges", {"metric_bins": 20})
  edges = (rng.random((3, 10, 11)) < 0.2).astype(np.float32) * rng.choice([0.4, 1.0], (3, 10, 11))
  logits = rng.normal(size=(3, 10, 11, 1)).astype(np.float32) + 2.0 * (edges[..., None] > 0.5)
  prob = np.asarray(task.decode(jnp.asarray(logits)))
  assert prob.shape == (3, 10, 11)
  np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logits[..., 0])), rtol=1e-5)
  state = task.metric_init()
  for sl in (slice(0, 1), slice(1, 3)):
    state = task.metric_update(state, prob[sl], {"edges": edges[sl]})
  result = task.metric_result(state)
  one_shot = task.metric_result(task.metric_update(task.metric_init(), prob, {"edges": edges}))
  assert result == one_shot
  f, ap = _pr_by_brute_force(prob.astype(np.float64), edges >= 0.5, np.arange(20) / 20)
  assert result["f_pixel"] == pytest.approx(f)
  assert result["ap_pixel"] == pytest.approx(ap)
  assert 0 < result["f_pixel"] <= 1


def test_perfect_edge_prediction_scores_one():
  task = tasks.get_task("edges", None)
  edges = np.zeros((6, 6), np.float32)
  edges[2] = 1.0
  result = task.metric_result(task.metric_update(task.metric_init(), edges, {"edges": edges}))
  assert result["f_pixel"] == pytest.approx(1.0) and result["ap_pixel"] == pytest.approx(1.0)


def test_edges_validate_labels_and_config_errors():
  task = tasks.get_task("edges", None)
  task.validate_labels({"edges": np.full((3, 3), 0.4, np.float32)})
  with pytest.raises(ValueError, match=r"\[0, 1\], found 2"):
    task.validate_labels({"edges": np.full((3, 3), 2.0, np.float32)})
  with pytest.raises(ValueError, match=r"labels\['edges'\] must be float"):
    task.validate_labels({"edges": np.ones((3, 3), np.uint8)})
  with pytest.raises(ValueError, match="label_fusion"):
    tasks.get_task("edges", {"label_fusion": "mean"})
  with pytest.raises(ValueError, match="positive_fraction"):
    tasks.get_task("edges", {"positive_fraction": 1.5})


def test_pixel_pr_scores_without_positives_is_nan():
  result = edges_task.pixel_pr_scores(np.zeros(4), np.array([1, 2, 3, 4]))
  assert math.isnan(result["f_pixel"])


# ----------------------------------------------------------------------------
# Real data.


def test_real_labels_validate_and_sample(test_data_dir):
  scipy_io = pytest.importorskip("scipy.io")
  gt = scipy_io.loadmat(
    os.path.join(test_data_dir, "sbd_sample/cls/2008_000051.mat"),
    squeeze_me=True,
    struct_as_record=False,
  )["GTcls"]
  label = gt.Segmentation.astype(np.int32)
  seg = tasks.get_task("segmentation", {"num_classes": 21, "sampling": "class_stratified"})
  seg.validate_labels({"label": label})
  with pytest.raises(ValueError, match="class id 15"):
    tasks.get_task("segmentation", {"num_classes": 10}).validate_labels({"label": label})
  sample = _sample_one(seg, {"label": label}, 400, seed=0)
  present = np.unique(label)
  counts = np.bincount(_at(label, np.asarray(sample.coords)), minlength=21)
  np.testing.assert_array_equal(np.nonzero(counts)[0], present)
  assert np.all(counts[present] == 400 // len(present))

  annotators = scipy_io.loadmat(
    os.path.join(test_data_dir, "bsds_bench/groundTruth/2018.mat"),
    squeeze_me=True,
    struct_as_record=False,
  )["groundTruth"]
  edges = np.mean([a.Boundaries for a in annotators], axis=0).astype(np.float32)
  edge_task = tasks.get_task("edges", {"positive_fraction": 0.3})
  edge_task.validate_labels({"edges": edges})
  sample = _sample_one(edge_task, {"edges": edges}, 200, seed=1)
  assert np.sum(_at(edges, np.asarray(sample.coords)) >= 0.5) == 60


# ----------------------------------------------------------------------------
# The train-step path: sample -> gather -> loss, per image under vmap, in one jit.


@pytest.mark.parametrize("name", ["segmentation", "normals", "edges"])
def test_sample_gather_loss_compose_under_jit_and_vmap(name):
  rng = np.random.default_rng(9)
  task = tasks.get_task(name, {"num_classes": 4} if name == "segmentation" else None)
  labels = {
    "segmentation": lambda: _seg_labels(rng, (2, 12, 10)),
    "normals": lambda: _normal_labels(rng, (2, 12, 10)),
    "edges": lambda: _edge_labels(rng, (2, 12, 10)),
  }[name]()
  outputs = jnp.asarray(rng.normal(size=(2, 16, task.num_outputs)), jnp.float32)

  @jax.jit
  def step(key, labels, outputs):
    keys = jax.random.split(key, 2)
    sample = jax.vmap(lambda k, l: task.sample(k, l, 16))(keys, labels)
    targets = jax.vmap(task.gather_targets)(labels, sample.coords)
    return jax.value_and_grad(task.loss)(outputs, targets, sample.mask), targets, sample.mask

  (loss, grad), targets, mask = step(jax.random.key(0), labels, outputs)
  assert np.isfinite(float(loss)) and float(loss) > 0
  assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.isfinite(np.asarray(targets)))
  assert np.asarray(mask).all()
  # Per image or flattened over the batch, the masked mean is the same for equal counts.
  flat = task.loss(
    outputs.reshape(32, -1), targets.reshape((32,) + targets.shape[2:]), mask.reshape(32)
  )
  assert float(flat) == pytest.approx(float(loss), rel=1e-6)


def test_hard_sampling_stays_inside_the_sample_mask():
  rng = np.random.default_rng(10)
  task = tasks.get_task("segmentation", {"num_classes": 4})
  labels = {k: v[0] for k, v in _seg_labels(rng).items()}
  scores = rng.random(labels["label"].shape).astype(np.float32)
  fn = jax.jit(task.sample_hard, static_argnums=3)
  sample = jax.device_get(fn(jax.random.key(0), labels, scores, 20))
  assert sample.mask.all()
  assert np.all(_at(labels["label"], sample.coords) != 255)
  assert np.all(_at(labels["valid"], sample.coords))
