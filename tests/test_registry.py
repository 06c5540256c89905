"""The one registry mechanism: lookups, errors, defaults, and components added from a test
file alone (a toy head and a toy optimizer) that train through the real loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_config

from pixelnet_jax import config_base, models, optimizers, tasks, train
from pixelnet_jax.data import registry as data_registry
from pixelnet_jax.errors import ConfigError
from pixelnet_jax.models.vgg import normal_init
from pixelnet_jax.registry import Registry
from pixelnet_jax.state import create_train_state


@models.HEADS.register("toy_test_head", defaults=dict(width=8, init_std=0.1))
class ToyHead(models.Head):
  """Concatenated hypercolumn -> Dense (decayed) -> ReLU -> Dense (decayed), times a
  learned scalar gain that is not declared for decay."""

  width: int = 8
  init_std: float = 0.1

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = jnp.concatenate([f.astype(self.dtype) for f in features], axis=-1)
    init = models.decayed(normal_init(self.init_std))
    x = nn.relu(nn.Dense(self.width, kernel_init=init, name="hidden")(x))
    x = nn.Dense(self.num_outputs, kernel_init=init, name="out")(x)
    gain = self.param("gain", nn.initializers.ones, ())
    return (x * gain).astype(jnp.float32)


@optimizers.OPTIMIZERS.register("toy_test_sgd", defaults=dict(momentum=0.0))
def toy_sgd(options, learning_rate, weight_decay, decay_mask):
  return optax.chain(
    optax.add_decayed_weights(weight_decay, decay_mask),
    optax.sgd(learning_rate, momentum=float(options.momentum) or None),
  )


def test_registry_lists_names_and_rejects_unknown_and_duplicate_names():
  reg = Registry("widget", "config.widget")
  reg.register("b", defaults=dict(size=(1, 2)))(lambda: "b")
  reg.register("a")(lambda: "a")
  assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg
  with pytest.raises(ValueError, match=r"Unknown widget 'c' \(config\.widget\).*\['a', 'b'\]"):
    reg.get("c")
  first, second = reg.defaults("b"), reg.defaults("b")
  first.size = (5,)
  assert second.size == (1, 2)  # each call is a fresh copy
  with pytest.raises(ValueError, match="Unknown field 'colour'.*known fields: \\['size'\\]"):
    reg.config("b", {"colour": 1})
  other = type("Other", (), {"__module__": "somewhere.else"})
  with pytest.raises(ValueError, match="already registered"):
    reg.register("a")(other)


def test_components_are_discovered_from_their_packages():
  assert {"procedural", "bsds500", "camvid", "voc2012", "nyuv2_normals"} <= set(
    data_registry.known_sources()
  )
  assert tasks.available_tasks() == ["edges", "normals", "segmentation"]
  assert {"vgg", "vgg16", "vgg_small"} <= set(models.TRUNKS.names())
  assert {"mlp", "linear", "toy_test_head"} <= set(models.HEADS.names())
  assert {"sgd", "adam", "adamw"} <= set(optimizers.OPTIMIZERS.names())
  assert {"step", "cosine", "constant"} <= set(optimizers.SCHEDULES.names())


def test_every_registered_head_and_optimizer_has_its_config_entry():
  c = config_base.paper_config()
  assert set(c.model.heads.keys()) == set(models.HEADS.names())
  assert set(c.model.trunks.keys()) == set(models.TRUNKS.names())
  assert c.model.heads.toy_test_head.width == 8
  assert c.optimizer.toy_test_sgd.momentum == 0.0


@pytest.mark.parametrize(
  "field,value,match",
  [
    ("model.head", "nope", r"'nope'.*config\.model\.head.*registered.*mlp"),
    ("optimizer.name", "nope", r"'nope'.*config\.optimizer\.name.*registered.*adam"),
    ("optimizer.schedule", "nope", r"'nope'.*config\.optimizer\.schedule.*cosine"),
    ("dataset.name", "nope", r"'nope'.*config\.dataset\.name.*procedural"),
    ("task.name", "nope", r"'nope'.*config\.task\.name.*segmentation"),
  ],
)
def test_validation_reads_the_registries(field, value, match):
  c = tiny_config.get_config("segmentation")
  section, key = field.split(".")
  c[section][key] = value
  with pytest.raises(ConfigError, match=match):
    config_base.validate_config(c, 1)


def test_weight_decay_follows_the_modules_declarations():
  c = tiny_config.get_config("segmentation")
  c.model.head = "toy_test_head"
  c.optimizer.name = "toy_test_sgd"
  c.optimizer.weight_decay = 0.5
  c.optimizer.schedule = "constant"
  task, crop = config_base.validate_config(c, 1)
  model = models.create_model(c.model, task.num_outputs)
  state = create_train_state(c, model, jax.random.key(0), crop)
  # With zero gradients the only update is the decay: non-zero exactly on declared params.
  zeros = jax.tree.map(jnp.zeros_like, state.params)
  updates, _ = state.tx.update(zeros, state.opt_state, state.params)
  moved = jax.tree.map(lambda u: bool(np.any(np.asarray(u) != 0)), updates)
  head = moved["head"]
  assert head["hidden"]["kernel"] and head["out"]["kernel"]
  assert not head["gain"] and not head["hidden"]["bias"] and not head["out"]["bias"]
  trunk = moved["trunk"]
  assert all(layer["kernel"] for name, layer in trunk.items() if not name.endswith("_bn"))
  assert not any(v for name, layer in trunk.items() if name.endswith("_bn") for v in layer.values())


def test_a_head_and_optimizer_from_a_test_file_train_through_the_loop(tmp_path):
  c = tiny_config.get_config("segmentation")
  c.model.head = "toy_test_head"
  c.model.heads.toy_test_head.width = 16
  c.optimizer.name = "toy_test_sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "constant"
  c.num_train_steps = 4
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert summary["step"] == 4 and np.isfinite(summary["loss"])
  params = summary["state"].params["head"]
  assert params["hidden"]["kernel"].shape[-1] == 16
  assert float(params["gain"]) != 1.0  # the head was trained


def test_configs_share_no_placeholder():
  """Every config is built fresh: setting a placeholder field of one (a FieldReference in
  the shared defaults) leaves every other config in the process unset."""
  first = config_base.paper_config("segmentation", dataset="camvid")
  first.dataset.num_eval_examples = 2
  first.dataset.manual_dir = "/somewhere"
  first.optimizer.grad_clip_norm = 1.0
  first.model.taps = ("conv1_2",)
  second = config_base.paper_config("segmentation", dataset="camvid")
  assert second.dataset.num_eval_examples is None
  assert second.dataset.manual_dir is None
  assert second.optimizer.grad_clip_norm == 0.0
  assert second.model.taps is None
