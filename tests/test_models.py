"""Tests for pixelnet_jax.models: trunk shapes, heads, dense == sampled, errors, pmap."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixelnet_jax import models
from pixelnet_jax.models import PixelNet

# A tiny member of the family with every kind of layer: 5 stages and fc6/fc7.
TINY = dict(
  trunk="vgg",
  stage_widths=(4, 6, 8, 8, 8),
  convs_per_stage=(1, 2, 1, 1, 2),
  fc=True,
  fc_width=12,
  widths=(16, 8),
)


def _config(**overrides):
  """config.model from flat overrides: trunk fields go to the trunk's entry, head
  fields to every head entry that has them, the rest to config.model itself."""
  flat = {**TINY, **overrides}
  c = models.default_model_config()
  c.trunk = flat.pop("trunk", c.trunk)
  if c.trunk != TINY["trunk"]:  # a preset: TINY's architecture does not apply
    flat = {k: v for k, v in flat.items() if k in overrides or k not in c.trunks.vgg}
  c.head = flat.pop("head", c.head)
  trunk_fields = set(c.trunks.vgg.keys())
  head_fields = {k for h in c.heads.values() for k in h.keys()}
  for key, value in flat.items():
    if key in trunk_fields:
      if c.trunk in c.trunks:
        c.trunks[c.trunk][key] = value
    elif key in head_fields:
      for entry in c.heads.values():
        if key in entry:
          entry[key] = value
    else:
      c[key] = value
  return c


# Test inputs come from NumPy: multi-dimensional jax.random draws compile slowly on CPU.
def _images(seed, b, h, w):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, h, w, 3)), jnp.float32)


def _points(seed, b, n, high):
  return jnp.asarray(np.random.default_rng(seed).uniform(0.0, high, size=(b, n, 2)), jnp.float32)


def _all_points(b, h, w):
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  pts = np.stack([rows.ravel(), cols.ravel()], -1).astype(np.float32)
  return jnp.asarray(np.broadcast_to(pts, (b, h * w, 2)))


K = 4
# Most tests share these shapes so that compiled programs are reused across tests.
B, H, W = 2, 13, 19  # 247 = 13 * 19 pixels: most chunk sizes leave a padded last chunk


def _numpy_init(module, *init_args, seed=0):
  """Variables with the init's structure, drawn by NumPy (test_normal_init checks the real
  init): kernels normal, biases small, BN scale/var 1 and mean 0. Avoids compiling Threefry."""
  init_args = init_args or (jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 1, 2)))
  shapes = models.unbox(jax.eval_shape(module.init, jax.random.key(0), *init_args))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if "scale" in name or "var" in name:
      return jnp.ones(leaf.shape, leaf.dtype)
    if "mean" in name:
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
    return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.cache
def _tiny_variables(head):
  """Variables of the TINY model with K outputs; they fit every image size."""
  return _numpy_init(models.create_model(_config(head=head), num_outputs=K))


@functools.partial(jax.jit, static_argnames=("model", "train"))
def _apply(model, variables, images, points, train=False, key=None):
  """Sampled prediction; in training also returns the batch_stats updates."""
  if train:
    return model.apply(
      variables, images, points, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
  return model.apply(variables, images, points)


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def _dense(model, variables, images, chunk_size=None):
  return model.apply(variables, images, method=PixelNet.predict_dense, chunk_size=chunk_size)


def _trained_variables(model, images, points, head):
  """TINY variables after one train-mode pass, so batch_stats are not the identity."""
  variables = _tiny_variables(head)
  _, updates = _apply(model, variables, images, points, train=True, key=jax.random.key(1))
  return {**variables, **updates}


def test_normal_init_has_the_requested_std_and_shape():
  w = models.vgg.normal_init(0.01)(jax.random.key(0), (3, 3, 64, 64))
  assert w.shape == (3, 3, 64, 64) and w.dtype == jnp.float32
  assert abs(float(jnp.std(w)) - 0.01) < 5e-4 and abs(float(jnp.mean(w))) < 5e-4


def test_trunk_maps_use_ceil_sizes_and_tap_channels():
  c = _config(width_multiplier=2.0)
  spec = models.build_trunk(c.trunk, c.trunks).spec
  assert spec.stage_widths == (8, 12, 16, 16, 16) and spec.fc_width == 24
  taps = spec.tap_names
  assert taps == (
    "conv1_1",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv4_1",
    "conv5_1",
    "conv5_2",
    "fc6",
    "fc7",
  )
  trunk = models.VGG(spec=spec, taps=taps)
  h, w = 45, 70
  x = _images(0, 2, h, w)
  variables = _numpy_init(trunk, x)
  maps = trunk.apply(variables, x)
  assert set(maps) == set(taps)
  for tap in taps:
    pools = spec.tap_num_pools(tap)
    expected = (2, math.ceil(h / 2**pools), math.ceil(w / 2**pools), spec.tap_channels(tap))
    assert maps[tap].shape == expected, tap
    assert maps[tap].dtype == jnp.float32
  # 45x70 -> 23x35 -> 12x18 -> 6x9 -> 3x5, and fc6/fc7 at 2x3.
  assert maps["fc7"].shape[1:3] == (2, 3)


def test_pre_relu_taps_are_post_relu_taps_before_the_relu():
  c = _config()
  spec = models.build_trunk(c.trunk, c.trunks).spec
  taps = ("conv1_1", "conv3_1", "fc6")
  x = _images(0, B, H, W)
  pre = models.VGG(spec=spec, taps=taps, tap_activation="pre")
  post = models.VGG(spec=spec, taps=taps, tap_activation="post")
  tiny = _tiny_variables("mlp")
  variables = {k: tiny[k]["trunk"] for k in ("params", "batch_stats")}
  maps_pre, maps_post = pre.apply(variables, x), post.apply(variables, x)
  for tap in taps:
    assert float(jnp.min(maps_pre[tap])) < 0.0, tap
    np.testing.assert_allclose(maps_post[tap], jax.nn.relu(maps_pre[tap]), atol=1e-6)


def test_trunk_is_built_only_up_to_the_deepest_tap():
  model = models.create_model(_config(taps=("conv1_1", "conv3_1")), num_outputs=2)
  shapes = jax.eval_shape(
    model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 4, 2))
  )
  assert sorted(k for k in shapes["params"]["trunk"] if not k.endswith("_bn")) == [
    "conv1_1",
    "conv2_1",
    "conv2_2",
    "conv3_1",
  ]


@pytest.mark.parametrize(
  "head,fc,activation",
  [
    ("mlp", True, "post"),
    ("mlp", False, "pre"),
    ("linear", True, "pre"),
    ("linear", False, "post"),
  ],
)
def test_sampled_outputs_have_shape_b_n_k(head, fc, activation):
  taps = ("conv1_1", "conv2_2", "conv5_2") + (("fc7",) if fc else ())
  model = models.create_model(
    _config(head=head, fc=fc, tap_activation=activation, taps=taps, hypercolumn_dropout=0.2),
    num_outputs=3,
  )
  x = _images(0, 2, 21, 26)
  pts = _points(1, 2, 7, 20.0)
  variables = _numpy_init(model)
  out, updates = _apply(model, variables, x, pts, train=True, key=jax.random.key(3))
  assert out.shape == (2, 7, 3) and out.dtype == jnp.float32
  assert set(updates) == {"batch_stats"}
  assert _apply(model, variables, x, pts).shape == (2, 7, 3)
  head_params = variables["params"]["head"]["first"]
  assert sorted(head_params) == sorted(["first_bias"] + [f"first_{t}" for t in taps])


def test_default_config_is_the_paper_model():
  model = models.create_model(models.default_model_config(), num_outputs=21)
  assert model.spec == models.VGG16
  assert model.taps == ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc7")
  assert sum(model.spec.tap_channels(t) for t in model.taps) == 5568
  assert model.head.widths == (4096, 4096) and model.head.dropout == 0.5
  assert model.head.init_std == 0.001 and model.trunk.init_std == 0.01


def test_vgg16_parameter_count_matches_analytic_count():
  k = 21
  model = models.create_model(models.default_model_config(), num_outputs=k)
  shapes = jax.eval_shape(
    model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 4, 2))
  )
  count = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))

  # conv: k*k*cin*cout weights + cout bias + 2*cout BN scale/offset; BN stats 2*cout.
  layers, cin = [], 3
  for width, n in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
    for _ in range(n):
      layers.append((3, cin, width))
      cin = width
  conv_part = sum(kk * kk * ci * co + co + 2 * co for kk, ci, co in layers)
  # torchvision's vgg16 features hold 14,714,688 weights+biases; BN adds 2 * 4224.
  assert conv_part == 14_714_688 + 2 * 4224
  layers += [(7, 512, 4096), (1, 4096, 4096)]
  trunk_params = sum(kk * kk * ci * co + co + 2 * co for kk, ci, co in layers)
  trunk_stats = sum(2 * co for _, _, co in layers)
  head_params = (5568 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * k + k)

  # torchvision's vgg16 has 138,357,544 with fc8 (4096 * 1000 + 1000); BN adds 2 * 12416.
  assert trunk_params == 138_357_544 - 4_097_000 + 2 * (4224 + 8192)
  assert count(shapes["params"]["trunk"]) == trunk_params
  assert count(shapes["batch_stats"]["trunk"]) == trunk_stats
  assert count(shapes["params"]["head"]) == head_params
  assert set(shapes) == {"params", "batch_stats"}


@pytest.mark.parametrize(
  "head,chunks",
  [
    ("mlp", (19, 50, None)),  # divides 247; pads the last chunk; the default exceeds 247
    ("linear", (50,)),
  ],
)
def test_dense_prediction_equals_sampled_prediction_at_every_pixel(head, chunks):
  model = models.create_model(_config(head=head), num_outputs=K)
  x = _images(0, B, H, W)
  pts = _all_points(B, H, W)
  variables = _trained_variables(model, x, pts, head)
  sampled = _apply(model, variables, x, pts).reshape(B, H, W, K)
  assert float(jnp.std(sampled)) > 1e-2  # a meaningful comparison, not all ~0
  for chunk in chunks:
    out = _dense(model, variables, x, chunk_size=chunk)
    assert out.shape == (B, H, W, K) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, sampled, atol=1e-4, rtol=1e-4, err_msg=f"chunk={chunk}")


def test_dense_prediction_is_the_head_on_linearly_resized_maps():
  # With 32 | H, W every tap's stride 2**k is also H / h, where the read equals a resize.
  h, w = 32, 32
  model = models.create_model(_config(head="mlp"), num_outputs=K)
  x = _images(4, 1, h, w)
  variables = _tiny_variables("mlp")
  maps = model.apply(variables, x, method=PixelNet.feature_maps)
  resized = [jax.image.resize(maps[t], (1, h, w, maps[t].shape[-1]), "linear") for t in model.taps]
  head = models.MLPHead(tap_names=model.taps, num_outputs=K, widths=model.head.widths)
  expected = head.apply({"params": variables["params"]["head"]}, resized)
  dense = _dense(model, variables, x, chunk_size=300)
  np.testing.assert_allclose(dense, expected, atol=1e-4, rtol=1e-4)


def test_taps_are_read_with_stride_two_to_the_pools_at_any_image_size():
  model = models.create_model(_config(head="mlp"), num_outputs=K)
  x = _images(5, B, H, W)  # 13 x 19: no stride divides it, so H / h would misplace reads
  maps = model.apply(_tiny_variables("mlp"), x, method=PixelNet.feature_maps)
  for tap in ("conv2_2", "conv3_1", "conv5_2", "fc7"):
    stride = 2 ** model.spec.tap_num_pools(tap)
    fm = maps[tap]
    rows, cols = np.meshgrid(np.arange(fm.shape[1]), np.arange(fm.shape[2]), indexing="ij")
    centres = np.stack([rows.ravel(), cols.ravel()], -1) * stride + (stride - 1) / 2
    pts = jnp.asarray(np.broadcast_to(centres, (B,) + centres.shape), jnp.float32)
    (read,) = models.pixelnet.read_taps(maps, (tap,), (stride,), pts)
    np.testing.assert_allclose(read, fm.reshape(B, -1, fm.shape[-1]), atol=1e-5, err_msg=tap)


def test_split_first_layer_equals_dense_layer_on_the_concatenated_hypercolumn():
  rng = np.random.default_rng(0)
  feats = [jnp.asarray(rng.normal(size=(5, c)), jnp.float32) for c in (3, 7, 2)]
  layer = models.SplitDense(tap_names=("a", "b", "c"), features=6, init_std=1.0)
  params = models.unbox(layer.init(jax.random.key(9), feats)["params"])
  params = {**params, "first_bias": jnp.arange(6.0)}
  kernel = jnp.concatenate([params["first_a"], params["first_b"], params["first_c"]], axis=0)
  expected = jnp.concatenate(feats, axis=-1) @ kernel + params["first_bias"]
  np.testing.assert_allclose(layer.apply({"params": params}, feats), expected, atol=1e-5)


def test_gradients_reach_every_trunk_layer_from_sampled_points():
  model = models.create_model(_config(tap_activation="pre"), num_outputs=K)
  x = _images(0, B, H, W)
  pts = _points(1, B, H * W, H - 1.0)
  variables = _tiny_variables("mlp")

  def loss(params):
    out, _ = model.apply(
      {**variables, "params": params},
      x,
      pts,
      train=True,
      rngs={"dropout": jax.random.key(3)},
      mutable=["batch_stats"],
    )
    return jnp.mean(jnp.square(out - 1.0))

  grads = jax.jit(jax.grad(loss))(variables["params"])
  trunk = grads["trunk"]
  assert len([k for k in trunk if not k.endswith("_bn")]) == len(model.spec.tap_names)
  for name, layer in trunk.items():
    for leaf_name, g in layer.items():
      norm = float(jnp.linalg.norm(g))
      if leaf_name == "bias" and not name.endswith("_bn"):
        # BatchNorm removes the batch mean, so a conv bias before it gets no gradient.
        assert norm < 1e-3 * float(jnp.linalg.norm(layer["kernel"])), (name, norm)
      else:
        assert norm > 0.0, (name, leaf_name)
  for leaf in jax.tree_util.tree_leaves(grads["head"]):
    assert float(jnp.linalg.norm(leaf)) > 0.0


def test_dropout_zeroes_the_rate_and_rescales_the_rest():
  x = jnp.ones((40, 50, 3))
  out = models.heads.Dropout(0.25).apply({}, x, True, rngs={"dropout": jax.random.key(0)})
  kept = np.asarray(out) != 0
  np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.75, rtol=1e-6)
  assert abs(kept.mean() - 0.75) < 0.02
  np.testing.assert_array_equal(models.heads.Dropout(0.25).apply({}, x, False), x)


def test_dropout_is_random_in_training_and_off_in_eval():
  model = models.create_model(_config(dropout=0.3, hypercolumn_dropout=0.3), num_outputs=K)
  x = _images(0, B, H, W)
  pts = _all_points(B, H, W)
  variables = _tiny_variables("mlp")
  run = lambda key: _apply(model, variables, x, pts, train=True, key=key)[0]
  assert not np.allclose(run(jax.random.key(5)), run(jax.random.key(6)))
  # In eval the output does not depend on the dropout rates.
  other = models.create_model(_config(head="mlp"), num_outputs=K)
  assert (other.head.dropout, other.head.hypercolumn_dropout) != (
    model.head.dropout,
    model.head.hypercolumn_dropout,
  )
  np.testing.assert_allclose(
    _apply(model, variables, x, pts), _apply(other, variables, x, pts), atol=1e-6
  )


@pytest.mark.parametrize(
  "overrides,match",
  [
    (dict(taps=("conv1_1", "fc8")), r"'fc8'.*Available taps: conv1_1, conv2_1"),
    (dict(taps=("pool3",)), r"'pool3'.*Available taps"),
    (dict(fc=False, taps=("conv1_1", "fc7")), r"'fc7'.*no fc6/fc7.*Available taps: .*conv5_2\."),
    (dict(trunk="vgg_small", taps=("conv5_3",)), r"'conv5_3'.*4 stages.*Available taps: conv1_1, "),
    (dict(taps=("conv2_3",)), r"'conv2_3'.*Available taps"),
    (dict(taps=("conv1_1", "conv1_1")), r"twice"),
    (dict(head="transformer"), r"'transformer'.*config\.model\.head.*registered.*mlp"),
    (dict(trunk="resnet50"), r"'resnet50'.*config\.model\.trunk.*vgg16"),
    (dict(trunk="vgg", stage_widths=None), r"config\.model\.trunks\.vgg\.stage_widths"),
    (dict(tap_activation="mid"), r"tap_activation"),
    (dict(dropout=1.0), r"config\.model\.heads\.mlp\.dropout"),
  ],
)
def test_invalid_configs_raise_clear_errors(overrides, match):
  with pytest.raises(ValueError, match=match):
    models.create_model(_config(**overrides), num_outputs=2)


def test_unknown_config_field_is_rejected():
  c = _config()
  c.tapz = ("conv1_1",)
  with pytest.raises(ValueError, match="tapz"):
    models.create_model(c, num_outputs=2)


def test_presets_and_width_multiplier():
  c = models.default_model_config()
  c.trunks.vgg16.width_multiplier = 0.25
  spec = models.build_trunk(c.trunk, c.trunks).spec
  assert spec.stage_widths == (16, 32, 64, 128, 128) and spec.fc_width == 1024
  c = models.default_model_config()
  c.trunk = "vgg_small"
  model = models.create_model(c, num_outputs=2)
  assert model.spec == models.VGG_SMALL and "fc7" not in model.taps
  assert model.taps == tuple(
    f"conv{s + 1}_{n}" for s, n in enumerate(models.VGG_SMALL.convs_per_stage)
  )


def test_batchnorm_statistics_are_averaged_over_pmap_axis():
  if jax.local_device_count() < 2:
    pytest.skip("needs 2+ devices; tests/conftest.py sets 8 host CPU devices via XLA_FLAGS")
  cfg = _config(head="linear")
  single = models.create_model(cfg, num_outputs=K)
  sharded = models.create_model(cfg, num_outputs=K, bn_axis_name="batch")
  x = _images(0, B, H, W)
  pts = _points(1, B, H * W, H - 1.0)
  variables = _tiny_variables("linear")
  expected, expected_upd = _apply(single, variables, x, pts, train=True, key=jax.random.key(0))

  def step(v, xs, ps):
    return sharded.apply(v, xs, ps, train=True, mutable=["batch_stats"])

  devices = jax.local_devices()[:B]  # one image per device
  out, upd = jax.pmap(step, axis_name="batch", in_axes=(None, 0, 0), devices=devices)(
    variables, x[:, None], pts[:, None]
  )
  np.testing.assert_allclose(out[:, 0], expected, atol=1e-4, rtol=1e-4)
  jax.tree_util.tree_map(
    lambda a, b: np.testing.assert_allclose(a[0], b, atol=1e-5, rtol=1e-4), upd, expected_upd
  )
  jax.tree_util.tree_map(lambda a: np.testing.assert_array_equal(a[0], a[1]), upd)


# ----------------------------------------------------------------------------
# Linear-first head: the first layer's projection before the read (same parameters).


def _map_projections(model, variables, images, points):
  """How many dot products the forward pass runs on 4-D [B, h, w, C] maps (the
  linear-first projections; the plain path only has [B, N, C] dots)."""
  text = str(jax.make_jaxpr(lambda v: model.apply(v, images, points))(variables))
  return len(re.findall(r":[a-z0-9]+\[\d+,\d+,\d+,\d+\] = dot_general", text))


def _rel_err(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-30))


def test_linear_first_agrees_with_the_plain_path():
  # min_stride 2 projects every tap of TINY but conv1_1 (strides 2, 4, 8, 16, 32).
  plain = models.create_model(_config(head="mlp", linear_first=False, dropout=0.0), K)
  first = models.create_model(
    _config(head="mlp", linear_first=True, linear_first_min_stride=2, dropout=0.0), K
  )
  x = _images(7, B, H, W)
  pts = _points(8, B, 40, H - 1.0)

  def init(model):
    return jax.eval_shape(model.init, jax.random.key(0), x, pts)

  assert jax.tree.structure(init(first)) == jax.tree.structure(init(plain))
  variables = _numpy_init(plain, seed=3)
  assert _map_projections(first, variables, x, pts) == len(first.taps) - 1
  assert _map_projections(plain, variables, x, pts) == 0

  expected = _apply(plain, variables, x, pts)
  out = _apply(first, variables, x, pts)
  assert float(jnp.std(expected)) > 1e-2
  assert _rel_err(out, expected) < 1e-5
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(expected).max()))
  dense_expected = _dense(plain, variables, x, chunk_size=50)
  dense = _dense(first, variables, x, chunk_size=50)
  assert _rel_err(dense, dense_expected) < 1e-5
  np.testing.assert_allclose(
    dense, dense_expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(dense_expected).max())
  )

  def grads(model):
    def loss(params):
      out, _ = model.apply(
        {**variables, "params": params}, x, pts, train=True, mutable=["batch_stats"]
      )
      return jnp.mean(jnp.square(out - 1.0))

    return jax.jit(jax.grad(loss))(variables["params"])

  g_plain, g_first = grads(plain), grads(first)
  scale = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(g_plain))))
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(g_first), jax.tree.leaves(g_plain), strict=True
  ):
    # Relative per leaf; conv biases before BatchNorm have a zero gradient (rounding
    # noise only), so they are held to the global scale instead.
    err = float(jnp.linalg.norm(a - b))
    assert err <= 1e-4 * float(jnp.linalg.norm(b)) + 1e-6 * scale, jax.tree_util.keystr(path)
  # The projected taps' kernels get real gradients (the per-leaf check is not vacuous).
  assert float(jnp.linalg.norm(g_first["head"]["first"]["first_fc7"])) > 1e-4 * scale


def test_linear_first_is_ignored_by_a_head_that_cannot_project():
  # LinearHead normalises and rectifies each tap before its FC: no exact linear-first path.
  on = models.create_model(_config(head="linear", linear_first=True, linear_first_min_stride=1), K)
  off = models.create_model(_config(head="linear", linear_first=False), K)
  variables = _tiny_variables("linear")
  x, pts = _images(0, B, H, W), _points(1, B, 5, H - 1.0)
  assert _map_projections(on, variables, x, pts) == 0
  np.testing.assert_array_equal(_apply(on, variables, x, pts), _apply(off, variables, x, pts))
