"""Built-in procedural dataset: ray-cast rooms with textured materials, no download.

Each example is a small analytic 3D scene seen by a pinhole camera: a closed box room
(floor, ceiling, four walls) holding a few spheres, vertical cylinders and boxes rotated
about the vertical axis. Every ray's nearest hit gives the depth and the analytic surface
normal; every surface carries one of ``NUM_CLASSES`` materials. A material is recognised
by its APPEARANCE only (a colour palette plus a texture -- stripes, checker, dots,
speckle, wood rings -- with per-surface jitter of hue, saturation, brightness, scale,
orientation and phase); any material may land on any surface, so neither position nor
shape predicts the class. Classes come in pairs sharing a palette (red stripes / red
dots, ...), so colour alone is not enough. Images are shaded Lambertian (ambient plus
one directional light), so the normals are visible in the image.

Conventions (one example, numpy):

- ``image`` [H, W, 3] uint8 RGB.
- ``label`` [H, W] int32 material class in ``0 .. NUM_CLASSES - 1`` (255 is never used:
  every pixel sees a surface).
- ``edges`` [H, W] float32, exactly 1 where the label map is discontinuous: pixel p is
  a boundary iff one of its 4-neighbours inside the image has another label (both sides
  of a boundary are marked), else 0. Surfaces of the same class that touch or occlude
  each other make no edge. Computed by ``label_edges``.
- ``depth`` [H, W] float32 metres along the optical axis (z-depth); 0 where missing.
- ``normals`` [H, W, 3] float32 unit vectors in camera coordinates, x right, y down,
  z towards the camera (a surface facing the camera is (0, 0, 1)); 0 where missing.
- ``normals_valid`` [H, W] bool: false on random elliptical holes (like missing sensor
  depth) and at grazing views (|cos| < 0.06); depth and normals are 0 there.
- ``id`` str ``"procedural/<split>/<seed>/<index>"``.

The camera has square pixels, its principal point at the image centre and a fixed
horizontal field of view (``focal_length``), so pixel (r, c) back-projects to
``depth * ((c + 0.5 - W / 2) / f, (r + 0.5 - H / 2) / f, 1)`` in x-right, y-down,
z-forward coordinates.

Examples are a pure function of (seed, split, index): the generator is
``np.random.Generator(PCG64(SeedSequence([seed, split_code, index])))``, so splits are
disjoint streams. The scene is drawn before anything that depends on the image size,
so one example rendered at two sizes shows the same scene.
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Sequence

import numpy as np

from pixelnet_jax.data.registry import DATASETS

NUM_CLASSES = 10
CLASS_NAMES = (
  "plaster",
  "granite",
  "red_stripes",
  "red_dots",
  "blue_checker",
  "blue_stripes",
  "grass",
  "green_checker",
  "wood",
  "yellow_dots",
)
# Display colours for label maps (not the material colours).
CLASS_COLORS = np.array(
  [
    [230, 230, 200],
    [110, 110, 130],
    [230, 40, 40],
    [150, 20, 60],
    [40, 90, 230],
    [20, 200, 230],
    [40, 160, 40],
    [170, 240, 60],
    [140, 80, 30],
    [250, 210, 0],
  ],
  dtype=np.uint8,
)

SPLITS = {"train": 0, "validation": 1, "val": 1, "test": 2}
MIN_SIZE, MAX_SIZE = 64, 224
FOV_DEGREES = 60.0  # horizontal field of view
GRAZING_COS = 0.06  # |cos(view, normal)| below this: normals/depth marked missing

ImageSize = int | tuple[int, int] | Sequence[int]


@dataclasses.dataclass(frozen=True)
class _Material:
  texture: str  # plain | speckle | stripes | checker | dots | rings
  color_a: tuple[float, float, float]  # HSV of texture value 0
  color_b: tuple[float, float, float]  # HSV of texture value 1
  freq: float  # texture cycles per metre
  radius: float = 0.3  # dots: radius in lattice cells


_MATERIALS = (
  # Pairs share a palette, so mostly texture tells them apart: plaster/granite,
  # red stripes/dots, blue checker/stripes, grass/green checker.
  _Material("plain", (0.10, 0.08, 0.86), (0.10, 0.10, 0.74), 0.8),
  _Material("speckle", (0.58, 0.12, 0.38), (0.10, 0.06, 0.95), 2.4),
  _Material("stripes", (0.00, 0.80, 0.80), (0.10, 0.15, 0.92), 2.2),
  _Material("dots", (0.00, 0.80, 0.80), (0.10, 0.15, 0.92), 1.8, 0.38),
  _Material("checker", (0.60, 0.70, 0.75), (0.58, 0.10, 0.95), 2.6),
  _Material("stripes", (0.62, 0.75, 0.55), (0.58, 0.10, 0.95), 1.6),
  _Material("speckle", (0.28, 0.75, 0.30), (0.26, 0.60, 0.75), 2.5),
  _Material("checker", (0.28, 0.75, 0.30), (0.26, 0.60, 0.75), 2.2),
  _Material("rings", (0.07, 0.70, 0.40), (0.08, 0.55, 0.72), 3.0),
  _Material("dots", (0.14, 0.80, 0.92), (0.05, 0.65, 0.30), 2.0, 0.3),
)
assert len(_MATERIALS) == NUM_CLASSES == len(CLASS_NAMES) == len(CLASS_COLORS)

_NOISE_CELLS = 16  # value-noise lattice period (cells per axis)


# ----------------------------------------------------------------------------- inputs


def check_image_size(image_size: ImageSize) -> tuple[int, int]:
  """Returns (H, W) from an int or a pair, each in [MIN_SIZE, MAX_SIZE]."""
  size = np.asarray(image_size).reshape(-1)
  if size.size == 1:
    size = np.repeat(size, 2)
  if size.size != 2 or not np.issubdtype(size.dtype, np.integer):
    raise ValueError(f"`image_size` must be an int or an (H, W) pair of ints, got {image_size!r}.")
  h, w = int(size[0]), int(size[1])
  if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
    raise ValueError(
      f"`image_size` must lie in [{MIN_SIZE}, {MAX_SIZE}] on both axes, got {(h, w)}; "
      "render inside that range and resize if another size is needed."
    )
  return h, w


def _split_code(split: str) -> int:
  if split not in SPLITS:
    raise ValueError(f"`split` must be one of {sorted(SPLITS)}, got {split!r}.")
  return SPLITS[split]


def _check_int(value, name: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"`{name}` must be an int, got {value!r}.")
  if value < minimum:
    raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
  return int(value)


def focal_length(image_size: ImageSize) -> float:
  """Focal length in pixels: the horizontal field of view is FOV_DEGREES."""
  return _focal(check_image_size(image_size)[1])


def _focal(width: int) -> float:
  return 0.5 * width / np.tan(np.deg2rad(FOV_DEGREES) / 2)


# ----------------------------------------------------------------------------- scene


def _rot_y(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  return q * np.sign(np.diag(r))


def _hsv_to_rgb(hsv) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(*hsv))


def _sample_surface_look(rng: np.random.Generator, cls: int) -> dict:
  """Per-surface jitter of a material: colours, scale, orientation, phase, noise."""
  mat = _MATERIALS[cls]
  dh = rng.uniform(-0.025, 0.025)
  ds, dv = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.1)

  def jitter(hsv):
    h, s, v = hsv
    return _hsv_to_rgb(((h + dh) % 1.0, np.clip(s * ds, 0, 1), np.clip(v * dv, 0, 1)))

  angle = rng.uniform(0, np.pi)
  direction = rng.normal(size=3)
  look = dict(
    cls=cls,
    color_a=jitter(mat.color_a),
    color_b=jitter(mat.color_b),
    freq=mat.freq * rng.uniform(0.8, 1.25),
    radius=mat.radius * rng.uniform(0.85, 1.15),
    dir2=np.array([np.cos(angle), np.sin(angle), 0.0]),
    dir3=direction / np.linalg.norm(direction),
    phase=rng.uniform(0, 1),
    offset=rng.uniform(-10, 10, size=3),
  )
  if mat.texture in ("plain", "speckle", "rings"):  # only these read noise
    look["noise"] = rng.uniform(0, 1, size=(_NOISE_CELLS,) * 3)
  if mat.texture == "rings":
    look["rotation"] = _random_rotation(rng)
  return look


def _sample_scene(rng: np.random.Generator) -> dict:
  """All random choices of one example that do not depend on the image size."""
  # World: X right, Y up, Z forward; the floor is Y = 0.
  room_lo = np.array([-rng.uniform(2.0, 4.0), 0.0, -rng.uniform(1.0, 2.0)])
  room_hi = np.array([rng.uniform(2.0, 4.0), rng.uniform(2.6, 3.4), rng.uniform(4.0, 7.5)])
  cam_x = rng.uniform(room_lo[0] + 0.8, room_hi[0] - 0.8)
  origin = np.array([cam_x, rng.uniform(1.1, 1.8), 0.0])
  yaw, pitch, roll = rng.uniform(-0.5, 0.5), rng.uniform(0.08, 0.45), rng.uniform(-0.08, 0.08)
  # camera (x right, y down, z forward) -> world
  cam_to_world = _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll) @ np.diag([1.0, -1.0, 1.0])

  # Room planes n . p = k with inward normals: floor, ceiling, walls -x, +x, -z, +z.
  planes = []
  for axis in range(3):
    for sign, bound in ((1.0, room_lo[axis]), (-1.0, room_hi[axis])):
      normal = np.zeros(3)
      normal[axis] = sign
      planes.append(dict(kind="plane", normal=normal, k=sign * bound))
  wall_cls = rng.integers(NUM_CLASSES)
  same_walls = rng.uniform() < 0.5
  for i, plane in enumerate(planes):
    is_wall = i in (0, 1, 4, 5)
    cls = wall_cls if (is_wall and same_walls) else rng.integers(NUM_CLASSES)
    plane["look"] = _sample_surface_look(rng, int(cls))

  objects = []
  half_fov = np.deg2rad(FOV_DEGREES) / 2
  for _ in range(rng.integers(3, 8)):
    kind = rng.choice(["sphere", "cylinder", "box"])
    size = rng.uniform(0.25, 0.7)
    dist = rng.uniform(1.8, max(2.0, room_hi[2] - 0.5))
    bearing = yaw + rng.uniform(-1.0, 1.0) * half_fov
    x = np.clip(origin[0] + dist * np.sin(bearing), room_lo[0] + size, room_hi[0] - size)
    z = min(origin[2] + dist * np.cos(bearing), room_hi[2] - size)
    floating = rng.uniform() < 0.25
    base = rng.uniform(0.5, 1.6) if floating else 0.0
    obj = dict(kind=kind, look=_sample_surface_look(rng, int(rng.integers(NUM_CLASSES))))
    if kind == "sphere":
      obj.update(center=np.array([x, base + size, z]), radius=size)
    elif kind == "cylinder":
      height = rng.uniform(0.5, 2.2)
      obj.update(
        center=np.array([x, 0.0, z]),
        radius=size * 0.8,
        y0=base,
        y1=min(base + height, room_hi[1] - 0.05),
        facing=np.arctan2(origin[0] - x, origin[2] - z),
      )
    else:
      half = np.array([size, rng.uniform(0.25, 1.0), size * rng.uniform(0.4, 1.2)])
      obj.update(
        center=np.array([x, base + half[1], z]), half=half, rotation=_rot_y(rng.uniform(0, np.pi))
      )
    objects.append(obj)

  elevation, azimuth = rng.uniform(0.5, 1.3), yaw + rng.uniform(-1.2, 1.2)
  light = np.array(
    [np.cos(elevation) * np.sin(azimuth), np.sin(elevation), -np.cos(elevation) * np.cos(azimuth)]
  )  # towards the light
  holes = [
    dict(
      center=rng.uniform(0, 1, size=2),
      radii=rng.uniform(0.03, 0.1, size=2),
      angle=rng.uniform(0, np.pi),
    )
    for _ in range(rng.integers(0, 4))
  ]
  return dict(
    origin=origin,
    cam_to_world=cam_to_world,
    surfaces=planes + objects,
    light=light,
    ambient=rng.uniform(0.3, 0.45),
    exposure=rng.uniform(0.9, 1.1),
    holes=holes,
  )


# ----------------------------------------------------------------------------- geometry
# intersect(surface, o [3], d [P, 3]) -> t [P] (inf on a miss); rays are p = o + t d.
# detail(surface, p [M, 3], d [M, 3]) -> normals [M, 3] world, tex [M, 3] metres, flat
# (tex's last coordinate is meaningless where the surface is flat).


def _safe_recip(x):
  return 1.0 / np.where(np.abs(x) < 1e-12, 1e-12, x)


def _intersect_plane(s, o, d):
  denom = d @ s["normal"]
  t = (s["k"] - o @ s["normal"]) * _safe_recip(denom)
  return np.where((denom < 0) & (t > 1e-6), t, np.inf)


def _detail_plane(s, p, d):
  normal = s["normal"]
  axis = int(np.argmax(np.abs(normal)))
  in_plane = [a for a in range(3) if a != axis]
  tex = np.stack([p[:, in_plane[0]], p[:, in_plane[1]], np.zeros(len(p))], axis=-1)
  return np.broadcast_to(normal, p.shape), tex, True


def _intersect_sphere(s, o, d):
  oc = o - s["center"]
  a = np.einsum("pi,pi->p", d, d)
  b = d @ oc
  c = oc @ oc - s["radius"] ** 2
  disc = b * b - a * c
  t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
  return np.where((disc > 0) & (t > 1e-6), t, np.inf)


def _detail_sphere(s, p, d):
  rel = p - s["center"]
  return rel / s["radius"], rel, False


def _intersect_cylinder(s, o, d):
  cx, cz, r = s["center"][0], s["center"][2], s["radius"]
  ox, oz = o[0] - cx, o[2] - cz
  a = d[:, 0] ** 2 + d[:, 2] ** 2
  b = d[:, 0] * ox + d[:, 2] * oz
  c = ox * ox + oz * oz - r * r
  disc = b * b - a * c
  t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) * _safe_recip(a)
  y = o[1] + t_side * d[:, 1]
  side = (disc > 0) & (t_side > 1e-6) & (y >= s["y0"]) & (y <= s["y1"])
  t = np.where(side, t_side, np.inf)
  inv_dy = _safe_recip(d[:, 1])
  for cap_y in (s["y0"], s["y1"]):
    t_cap = (cap_y - o[1]) * inv_dy
    px, pz = o[0] + t_cap * d[:, 0] - cx, o[2] + t_cap * d[:, 2] - cz
    hit = (t_cap > 1e-6) & (px * px + pz * pz <= r * r)
    t = np.minimum(t, np.where(hit, t_cap, np.inf))
  return t


def _detail_cylinder(s, p, d):
  r = s["radius"]
  rel = p - s["center"]
  radial = np.hypot(rel[:, 0], rel[:, 2])
  on_side = radial > r * (1 - 1e-6)
  cap_sign = np.where(rel[:, 1] > 0.5 * (s["y0"] + s["y1"]), 1.0, -1.0)
  normals = np.where(
    on_side[:, None],
    np.stack([rel[:, 0] / r, 0 * radial, rel[:, 2] / r], -1),
    np.stack([0 * radial, cap_sign, 0 * radial], -1),
  )
  # Unroll the side with its seam on the far side from the camera.
  angle = np.angle(np.exp(1j * (np.arctan2(rel[:, 0], rel[:, 2]) - s["facing"])))
  tex = np.where(
    on_side[:, None],
    np.stack([r * angle, rel[:, 1], 0 * radial], -1),
    np.stack([rel[:, 0], rel[:, 2], 0 * radial], -1),
  )
  return normals, tex, True


def _box_local(s, o, d):
  rot = s["rotation"]
  return (o - s["center"]) @ rot, d @ rot  # world -> box frame is rot.T


def _intersect_box(s, o, d):
  ol, dl = _box_local(s, o, d)
  inv = _safe_recip(dl)
  t1, t2 = (-s["half"] - ol) * inv, (s["half"] - ol) * inv
  t_near = np.minimum(t1, t2).max(axis=1)
  t_far = np.maximum(t1, t2).min(axis=1)
  return np.where((t_far >= t_near) & (t_near > 1e-6), t_near, np.inf)


def _detail_box(s, p, d):
  rot, half = s["rotation"], s["half"]
  local = (p - s["center"]) @ rot
  axis = np.argmax(np.abs(local) / half, axis=1)
  rows = np.arange(len(p))
  normal_local = np.zeros_like(local)
  normal_local[rows, axis] = np.sign(local[rows, axis])
  # Put the face's normal coordinate last so textures read the two in-face axes.
  order = np.array([[1, 2, 0], [0, 2, 1], [0, 1, 2]])[axis]
  tex = np.take_along_axis(local, order, axis=1)
  return normal_local @ rot.T, tex, True


_GEOMETRY = {
  "plane": (_intersect_plane, _detail_plane),
  "sphere": (_intersect_sphere, _detail_sphere),
  "cylinder": (_intersect_cylinder, _detail_cylinder),
  "box": (_intersect_box, _detail_box),
}


# ----------------------------------------------------------------------------- textures


def _value_noise(q, table):
  """Smooth periodic value noise in [0, 1]. q [M, 3] lattice units -> [M]."""
  n = table.shape[0]
  base = np.floor(q)
  f = q - base
  f = f * f * (3 - 2 * f)
  i = base.astype(np.int64) % n
  j = (i + 1) % n
  out = 0.0
  for cx in (0, 1):
    for cy in (0, 1):
      for cz in (0, 1):
        w = (
          (f[:, 0] if cx else 1 - f[:, 0])
          * (f[:, 1] if cy else 1 - f[:, 1])
          * (f[:, 2] if cz else 1 - f[:, 2])
        )
        out = (
          out + w * table[(j if cx else i)[:, 0], (j if cy else i)[:, 1], (j if cz else i)[:, 2]]
        )
  return out


def _fade(value, mean, cycles_per_pixel):
  """Pulls a texture towards its mean as it nears the pixel grid's Nyquist limit."""
  keep = np.clip((0.5 - cycles_per_pixel) / 0.25, 0.0, 1.0)
  return mean + keep * (value - mean)


def _texture(look, texture, tex, flat, footprint):
  """Texture value in [0, 1] per hit. tex [M, 3] metres; footprint [M] metres/pixel."""
  freq = look["freq"]
  q = tex * freq + look["offset"]
  if flat:
    q[:, 2] = 0.5
  cpp = freq * footprint
  if texture == "plain":
    return 0.5 + 0.5 * (_value_noise(q, look["noise"]) - 0.5)
  if texture == "speckle":
    coarse = _fade(_value_noise(q, look["noise"]), 0.5, cpp)
    fine = _fade(_value_noise(2.3 * q + 5.0, look["noise"]), 0.5, 2.3 * cpp)
    return np.clip(0.5 + 2.0 * (0.55 * coarse + 0.45 * fine - 0.5), 0, 1)
  if texture == "stripes":
    direction = look["dir2"] if flat else look["dir3"]
    s = np.sin(2 * np.pi * (q @ direction + look["phase"]))
    return _fade(0.5 + 0.5 * np.clip(2.5 * s, -1, 1), 0.5, cpp)
  if texture == "checker":
    s = np.sin(np.pi * q[:, 0]) * np.sin(np.pi * q[:, 1])
    if not flat:
      s = s * np.sin(np.pi * q[:, 2])
    return _fade(0.5 + 0.5 * np.clip(6.0 * s, -1, 1), 0.5, 0.5 * cpp)
  if texture == "dots":
    g = q - np.floor(q) - 0.5
    dims = 2 if flat else 3
    dist = np.linalg.norm(g[:, :dims], axis=1)
    r = look["radius"] if flat else look["radius"] * 1.3
    mean = np.pi * r * r if flat else 4 / 3 * np.pi * r**3
    return _fade(np.clip((r - dist) / 0.08 + 0.5, 0, 1), mean, cpp)
  if texture == "rings":
    # Wood: growth rings around an axis lying (nearly) in the surface, warped by noise.
    if flat:  # the axis lies in the surface along dir2, 2.5 rings below it
      across = q[:, 1] * look["dir2"][0] - q[:, 0] * look["dir2"][1]
      radial = np.hypot(across + 3.0, 2.5)
    else:
      qr = q @ look["rotation"]
      radial = np.hypot(qr[:, 1] + 3.0, qr[:, 2] + 2.0)
    radial = radial + 0.6 * _value_noise(0.3 * q, look["noise"])
    ring = radial - np.floor(radial)
    return _fade(np.clip(1.6 * ring - 0.3, 0, 1), 0.5, cpp)
  raise ValueError(f"unknown texture {texture!r}")


# ----------------------------------------------------------------------------- render


def label_edges(label: np.ndarray) -> np.ndarray:
  """Boundary map of a label map: 1 where a 4-neighbour in the image differs.

  label [H, W] int -> edges [H, W] float32 in {0, 1}.
  """
  diff_v = label[1:, :] != label[:-1, :]
  diff_h = label[:, 1:] != label[:, :-1]
  edges = np.zeros(label.shape, dtype=bool)
  edges[1:, :] |= diff_v
  edges[:-1, :] |= diff_v
  edges[:, 1:] |= diff_h
  edges[:, :-1] |= diff_h
  return edges.astype(np.float32)


def _render(scene: dict, height: int, width: int, rng: np.random.Generator) -> dict:
  """Ray-casts one scene at (height, width); `rng` only draws the sensor noise."""
  f = _focal(width)
  rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
  d_cam = np.stack(
    [(cols - 0.5 * width) / f, (rows - 0.5 * height) / f, np.ones_like(rows)], axis=-1
  ).reshape(-1, 3)
  to_world = scene["cam_to_world"]
  d = d_cam @ to_world.T  # z_cam = 1, so the ray parameter t is the z-depth
  o = scene["origin"]
  surfaces = scene["surfaces"]

  ts = np.stack([_GEOMETRY[s["kind"]][0](s, o, d) for s in surfaces])
  hit = np.argmin(ts, axis=0)
  depth = ts[hit, np.arange(len(d))]
  assert np.all(np.isfinite(depth)), "every ray hits the closed room"

  n_pix = len(d)
  normals_w = np.zeros((n_pix, 3))
  albedo = np.zeros((n_pix, 3))
  label = np.zeros(n_pix, dtype=np.int32)
  d_unit = d / np.linalg.norm(d, axis=1, keepdims=True)
  order = np.argsort(hit, kind="stable")  # pixels grouped by the surface they see
  counts = np.bincount(hit, minlength=len(surfaces))
  ends = np.cumsum(counts)
  for idx in np.nonzero(counts)[0]:
    s = surfaces[idx]
    m = order[ends[idx] - counts[idx] : ends[idx]]
    p = o + depth[m, None] * d[m]
    normal, tex, flat = _GEOMETRY[s["kind"]][1](s, p, d[m])
    normals_w[m] = normal
    look = s["look"]
    cos = np.abs(np.einsum("mi,mi->m", normal, d_unit[m]))
    footprint = depth[m] * np.linalg.norm(d[m], axis=1) / (f * np.maximum(cos, 0.15))
    v = _texture(
      look, _MATERIALS[look["cls"]].texture, np.array(tex, dtype=np.float64), flat, footprint
    )
    albedo[m] = look["color_a"] + v[:, None] * (look["color_b"] - look["color_a"])
    label[m] = look["cls"]

  shade = scene["ambient"] + (1 - scene["ambient"]) * np.maximum(normals_w @ scene["light"], 0)
  image = albedo * (scene["exposure"] * shade)[:, None] * 255.0

  # Missing measurements: grazing views and random elliptical holes.
  cos_view = -np.einsum("pi,pi->p", normals_w, d_unit)
  valid = cos_view > GRAZING_COS
  v_n, u_n = (rows.reshape(-1) / height), (cols.reshape(-1) / width)
  for hole in scene["holes"]:
    c, s_ = np.cos(hole["angle"]), np.sin(hole["angle"])
    du, dv = u_n - hole["center"][0], v_n - hole["center"][1]
    a, b = (c * du + s_ * dv) / hole["radii"][0], (-s_ * du + c * dv) / hole["radii"][1]
    valid &= a * a + b * b > 1.0

  # world -> camera (x right, y down, z forward), then flip z to point at the camera.
  normals = normals_w @ to_world * np.array([1.0, 1.0, -1.0])
  normals = np.where(valid[:, None], normals, 0.0)

  image = image + 2.0 * rng.standard_normal(image.shape, dtype=np.float32)  # drawn last
  label = label.reshape(height, width)
  return dict(
    image=np.clip(np.round(image), 0, 255).astype(np.uint8).reshape(height, width, 3),
    label=label,
    edges=label_edges(label),
    depth=np.where(valid, depth, 0.0).astype(np.float32).reshape(height, width),
    normals=normals.astype(np.float32).reshape(height, width, 3),
    normals_valid=valid.reshape(height, width),
  )


def generate(
  seed: int, index: int, image_size: ImageSize = 96, split: str = "train"
) -> dict[str, np.ndarray]:
  """One example, a pure function of (seed, split, index); see the module docstring."""
  seed = _check_int(seed, "seed", 0)
  index = _check_int(index, "index", 0)
  height, width = check_image_size(image_size)
  code = _split_code(split)
  rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, code, index])))
  example = _render(_sample_scene(rng), height, width, rng)
  example["id"] = f"procedural/{split}/{seed}/{index}"
  return example


class ProceduralDataset:
  """Random-access source of ``num_examples`` procedural examples (grain-compatible)."""

  def __init__(
    self, split: str = "train", image_size: ImageSize = 96, num_examples: int = 1000, seed: int = 0
  ):
    _split_code(split)
    self.split = split
    self.image_size = check_image_size(image_size)
    self.num_examples = _check_int(num_examples, "num_examples", 1)
    self.seed = _check_int(seed, "seed", 0)

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index) -> dict[str, np.ndarray]:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
      raise ValueError(f"`index` must be an int, got {index!r}.")
    if not -self.num_examples <= index < self.num_examples:
      raise _IndexOutOfRange(
        f"`index` {index} is out of range for a dataset of {self.num_examples} examples."
      )
    return generate(self.seed, int(index) % self.num_examples, self.image_size, self.split)

  def __repr__(self) -> str:
    return (
      f"ProceduralDataset(split={self.split!r}, image_size={self.image_size}, "
      f"num_examples={self.num_examples}, seed={self.seed})"
    )


@DATASETS.register(
  "procedural", defaults=dict(image_size=224, num_examples={"train": 10000, "val": 100}, seed=0)
)
def procedural_source(split: str, config) -> ProceduralDataset:
  """The registry's factory: ``image_size``, ``num_examples`` and ``seed`` may each be
  one value or a ``{split: value}`` mapping."""
  kwargs = {}
  for key in ("image_size", "num_examples", "seed"):
    value = config.get(key)
    if hasattr(value, "items"):  # a per-split {split: value} mapping or ConfigDict
      if split not in value:
        raise ValueError(
          f"config.dataset.{key} has no entry for split {split!r} (entries: {sorted(value)})."
        )
      value = value[split]
    if value is not None:
      kwargs[key] = value
  return ProceduralDataset(split=split, **kwargs)


class _IndexOutOfRange(IndexError, ValueError):
  """An IndexError (ends sequence iteration) that is also a ValueError (bad argument)."""


# ----------------------------------------------------------------------------- display


def colorize_labels(label: np.ndarray) -> np.ndarray:
  """label [H, W] int -> [H, W, 3] uint8 display colours (255 -> black)."""
  palette = np.concatenate([CLASS_COLORS, np.zeros((256 - NUM_CLASSES, 3), np.uint8)])
  return palette[np.asarray(label).astype(np.int64) % 256]


def render_panel(example: dict[str, np.ndarray], gap: int = 2) -> np.ndarray:
  """image | label | edges | normals side by side: [H, 4 W + 3 gap, 3] uint8."""
  normals_rgb = np.where(
    example["normals_valid"][..., None], np.round(127.5 * (example["normals"] + 1)), 0
  ).astype(np.uint8)
  edges_rgb = np.repeat((255 * example["edges"]).astype(np.uint8)[..., None], 3, axis=-1)
  tiles = [example["image"], colorize_labels(example["label"]), edges_rgb, normals_rgb]
  spacer = np.full((example["image"].shape[0], gap, 3), 255, np.uint8)
  parts = []
  for tile in tiles:
    parts += [tile, spacer]
  return np.concatenate(parts[:-1], axis=1)


def main(argv: Sequence[str] | None = None) -> None:
  """Writes example panels: python -m pixelnet_jax.data.procedural OUT_DIR [N] [SIZE]."""
  import os
  import sys

  from PIL import Image

  args = list(sys.argv[1:] if argv is None else argv)
  out_dir = args[0] if args else "docs/procedural"
  count = int(args[1]) if len(args) > 1 else 4
  size = int(args[2]) if len(args) > 2 else 128
  os.makedirs(out_dir, exist_ok=True)
  for i in range(count):
    panel = render_panel(generate(0, i, size, "train"))
    Image.fromarray(panel).save(os.path.join(out_dir, f"example_{i}.png"), optimize=True)


if __name__ == "__main__":
  main()
