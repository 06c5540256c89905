"""The Colab notebook runs top to bottom, headless on CPU, from the repository root."""

import json
import os
import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "notebooks" / "pixelnet_colab.ipynb"
STEPS = 3


def _kernel_for_this_python(tmp_path, monkeypatch) -> str:
  """A kernel spec running this interpreter (the venv's), found through JUPYTER_PATH.

  Named uniquely, so a system-wide "python3" spec pointing at another Python is not used.
  """
  name = "pixelnet-test-venv"
  spec_dir = tmp_path / "jupyter" / "kernels" / name
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(
    json.dumps(
      {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pixelnet_jax test venv",
        "language": "python",
      }
    )
  )
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  return name


def test_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
  source = "\n".join(cell.source for cell in nb.cells)
  assert "%cd" not in source and "/content/runs" not in source


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebook_runs_headless_on_cpu(tmp_path, monkeypatch):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  workdir = tmp_path / "run"
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user's machine (conftest asks for 8)
  env.update(
    JAX_PLATFORMS="cpu",
    MPLBACKEND="module://matplotlib_inline.backend_inline",
    PIXELNET_NOTEBOOK_STEPS=str(STEPS),
    PIXELNET_NOTEBOOK_VAL_EXAMPLES="2",
    PIXELNET_NOTEBOOK_WORKDIR=str(workdir),
  )
  client = NotebookClient(
    nb,
    timeout=300,
    kernel_name=_kernel_for_this_python(tmp_path, monkeypatch),
    resources={"metadata": {"path": str(REPO)}},
  )
  client.execute(env=env)

  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "Not on Colab" in text  # the install cell installed nothing here
  assert "devices: [CpuDevice(id=0)]" in text
  assert f"'step': {STEPS}" in text
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 3  # at least one run picture, the loss curve, the sampling demo
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert max(r["step"] for r in rows) == STEPS
  assert os.listdir(workdir / "pictures")
