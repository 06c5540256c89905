"""Split-level metrics against hand-computed cases and independent NumPy code."""

import math

import numpy as np
import pytest

from pixelnet_jax.metrics import normals, segmentation

# ----------------------------------------------------------------------------
# Segmentation.


def _confusion_by_loop(pred, label, num_classes, ignore_label):
  """Independent reference: one pixel at a time."""
  out = np.zeros((num_classes, num_classes), np.int64)
  for p, g in zip(pred.reshape(-1), label.reshape(-1)):
    if g != ignore_label:
      out[g, p] += 1
  return out


def _iou_by_sets(pred, label, num_classes, ignore_label):
  """Independent reference: IoU from pixel sets, NaN where the union is empty."""
  keep = label != ignore_label
  ious = []
  for c in range(num_classes):
    inter = np.sum(keep & (label == c) & (pred == c))
    union = np.sum(keep & ((label == c) | (pred == c)))
    ious.append(inter / union if union else np.nan)
  return np.array(ious)


def test_confusion_matrix_matches_pixel_loop_on_random_batches():
  rng = np.random.default_rng(0)
  num_classes = 6
  label = rng.integers(0, num_classes, (3, 7, 9))
  label[rng.random(label.shape) < 0.2] = 255
  pred = rng.integers(0, num_classes, label.shape)
  got = segmentation.confusion_matrix(pred, label, num_classes)
  assert got.dtype == np.int64 and got.shape == (num_classes, num_classes)
  np.testing.assert_array_equal(got, _confusion_by_loop(pred, label, num_classes, 255))
  assert got.sum() == np.sum(label != 255)


def test_scores_hand_computed_with_ignored_and_absent_classes():
  # Pairs (gt, pred): (0,0) (0,1) (1,1) (2,2); the 255 pixel is ignored; class 3 absent.
  label = np.array([0, 0, 1, 255, 2])
  pred = np.array([0, 1, 1, 3, 2])
  conf = segmentation.confusion_matrix(pred, label, 4)
  np.testing.assert_array_equal(conf, [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
  s = segmentation.scores(conf)
  np.testing.assert_allclose(s["iou"][:3], [1 / 2, 1 / 2, 1.0])
  assert np.isnan(s["iou"][3])
  assert s["miou"] == pytest.approx(2 / 3)
  assert s["pixel_accuracy"] == pytest.approx(3 / 4)
  assert s["mean_accuracy"] == pytest.approx((1 / 2 + 1 + 1) / 3)


def test_class_only_in_prediction_counts_in_miou_not_in_mean_accuracy():
  label = np.array([0, 0, 1, 1])
  pred = np.array([0, 2, 1, 1])  # Class 2 is predicted but never true.
  s = segmentation.scores(segmentation.confusion_matrix(pred, label, 3))
  np.testing.assert_allclose(s["iou"], [1 / 2, 1.0, 0.0])
  assert s["miou"] == pytest.approx(1.5 / 3)
  assert s["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)


def test_scores_match_set_based_iou_on_random_inputs():
  rng = np.random.default_rng(1)
  num_classes = 8
  label = rng.integers(0, num_classes - 2, (4, 10, 10))  # Classes 6, 7 never true...
  pred = rng.integers(0, num_classes - 1, label.shape)  # ... and 7 never predicted.
  label[:, :2] = 255
  s = segmentation.scores(segmentation.confusion_matrix(pred, label, num_classes))
  ref = _iou_by_sets(pred, label, num_classes, 255)
  np.testing.assert_allclose(s["iou"], ref, equal_nan=True)
  assert np.isnan(s["iou"][7]) and s["iou"][6] == 0.0
  assert s["miou"] == pytest.approx(np.nanmean(ref))
  keep = label != 255
  assert s["pixel_accuracy"] == pytest.approx(np.mean(pred[keep] == label[keep]))
  recalls = [np.mean(pred[keep & (label == c)] == c) for c in range(6)]
  assert s["mean_accuracy"] == pytest.approx(np.mean(recalls))


def test_confusion_matrices_of_batches_add_up_to_the_split():
  rng = np.random.default_rng(2)
  label = rng.integers(0, 5, (6, 8, 8))
  label[label == 4] = 255
  pred = rng.integers(0, 5, label.shape)
  whole = segmentation.confusion_matrix(pred, label, 5)
  parts = sum(
    segmentation.confusion_matrix(pred[i : i + 2], label[i : i + 2], 5) for i in range(0, 6, 2)
  )
  np.testing.assert_array_equal(parts, whole)


def test_confusion_matrix_skips_invalid_pixels():
  label = np.array([[0, 1], [1, 0]])
  pred = np.array([[0, 0], [1, 1]])
  valid = np.array([[True, False], [True, False]])
  conf = segmentation.confusion_matrix(pred, label, 2, valid=valid)
  np.testing.assert_array_equal(conf, [[1, 0], [0, 1]])


def test_confusion_matrix_errors_name_the_bad_value():
  with pytest.raises(ValueError, match="class id 7"):
    segmentation.confusion_matrix(np.zeros(3, int), np.array([0, 7, 255]), 5)
  with pytest.raises(ValueError, match="`pred`.*class id 9"):
    segmentation.confusion_matrix(np.array([0, 9, 0]), np.array([0, 1, 255]), 5)
  with pytest.raises(ValueError, match="shape"):
    segmentation.confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 5)
  with pytest.raises(ValueError, match="class id -1"):
    segmentation.confusion_matrix(np.zeros(2, int), np.array([-1, 0]), 5)


def test_scores_of_empty_confusion_are_nan_without_warnings():
  with np.errstate(all="raise"):
    s = segmentation.scores(np.zeros((3, 3), np.int64))
  assert math.isnan(s["miou"]) and math.isnan(s["pixel_accuracy"])
  assert np.all(np.isnan(s["iou"]))


# ----------------------------------------------------------------------------
# Normals.


def _angles_by_atan2(pred, gt):
  """Independent reference: atan2(|a x b|, a . b) needs no normalisation."""
  cross = np.linalg.norm(np.cross(pred, gt), axis=-1)
  dot = np.sum(pred * gt, axis=-1)
  return np.degrees(np.arctan2(cross, dot))


def test_angular_errors_match_atan2_on_random_unnormalised_vectors():
  rng = np.random.default_rng(3)
  pred = rng.normal(size=(2, 6, 5, 3)) * rng.uniform(0.1, 5, (2, 6, 5, 1))
  gt = rng.normal(size=pred.shape)
  valid = rng.random(pred.shape[:-1]) < 0.7
  errors = normals.angular_errors(pred, gt, valid)
  assert errors.shape == (valid.sum(),)
  np.testing.assert_allclose(errors, _angles_by_atan2(pred[valid], gt[valid]), atol=1e-6)


def test_angular_errors_hand_computed_and_invalid_or_zero_vectors():
  pred = np.array(
    [[1, 0, 0], [1, 1, 0], [-1, 0, 0], [0, 0, 5], [0, 0, 0], [np.nan, 0, 0]], np.float32
  )
  gt = np.array([[0, 2, 0], [1, 0, 0], [3, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0]], np.float32)
  valid = np.array([True, True, True, True, True, False])  # The NaN pixel is invalid.
  errors = normals.angular_errors(pred, gt, valid)
  np.testing.assert_allclose(errors, [90.0, 45.0, 180.0, 0.0, 90.0], atol=1e-5)
  assert np.all(np.isfinite(errors))


def test_angular_errors_clip_cosine_of_parallel_vectors():
  v = np.array([[0.1, 0.2, 0.3]] * 4) * np.array([[1], [3], [7], [1e3]])
  errors = normals.angular_errors(v, v[::-1], np.ones(4, bool))
  assert np.all(np.isfinite(errors)) and np.all(errors < 1e-5)


def test_normal_scores_hand_computed():
  s = normals.scores(np.array([0.0, 10.0, 20.0, 40.0]))
  assert s["mean"] == pytest.approx(17.5)
  assert s["median"] == pytest.approx(15.0)
  assert s["rmse"] == pytest.approx(math.sqrt((0 + 100 + 400 + 1600) / 4))
  assert s["within_11_25"] == pytest.approx(50.0)
  assert s["within_22_5"] == pytest.approx(75.0)
  assert s["within_30"] == pytest.approx(75.0)
  # Strictly below the threshold.
  assert normals.scores(np.array([30.0, 11.25]))["within_30"] == pytest.approx(50.0)


def test_normal_scores_pool_pixels_over_the_split():
  a = np.array([1.0, 2.0, 3.0])  # 3 pixels in one image ...
  b = np.array([50.0])  # ... one in another.
  pooled = normals.scores([a, b])
  assert pooled == normals.scores(np.concatenate([a, b]))
  assert pooled["mean"] == pytest.approx(56.0 / 4)  # Not the mean of image means (26).
  assert pooled["median"] == pytest.approx(2.5)


def test_normal_scores_of_nothing_are_nan():
  s = normals.scores([])
  assert all(math.isnan(v) for v in s.values())
  assert set(s) == {"mean", "median", "rmse", "within_11_25", "within_22_5", "within_30"}


def test_angular_errors_shape_errors():
  with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
    normals.angular_errors(np.zeros((4, 2)), np.zeros((4, 2)), np.ones(4, bool))
  with pytest.raises(ValueError, match="valid"):
    normals.angular_errors(np.zeros((4, 3)), np.zeros((4, 3)), np.ones(5, bool))
