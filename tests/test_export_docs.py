"""The worked example of docs/export.md runs: record, train, export, and a host script that
does not import genki_signals runs the one model file with plain onnxruntime and predicts what
the Python pipeline predicts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "export.md"
ROOT = DOC.parent.parent


def scripts() -> dict[str, str]:
    blocks = re.findall(r"```python\n# (\w+\.py)\n(.*?)```", DOC.read_text(), re.DOTALL)
    return {name: code for name, code in blocks}


def run(cwd: Path, code: str, block_project: bool = False) -> str:
    if block_project:  # any import of the project fails
        code = "import sys\nsys.modules['genki_signals'] = None\n" + code
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=False, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.mark.process
def test_worked_example_runs_from_recording_to_host(tmp_path):
    code = scripts()
    assert list(code) == ["record.py", "train.py", "host.py"]
    assert "genki" not in code["host.py"].replace('"genki.state"', "")
    run(tmp_path, code["record.py"])
    assert (tmp_path / "session.mcap").stat().st_size > 0
    out = run(tmp_path, code["train.py"] + "\nnp.save('python_predicted.npy', pipe.predict(rec))\n")
    train_acc = float(re.search(r"training accuracy ([\d.]+)", out).group(1))
    assert train_acc > 0.8, out
    host = run(tmp_path, code["host.py"] + "\nnp.save('predicted.npy', predicted)\n",
               block_project=True)
    host_acc = float(re.search(r"host accuracy ([\d.]+)", host).group(1))
    # the same predictions as the Python pipeline (features + classifier in Python)
    py = np.load(tmp_path / "python_predicted.npy")
    onnx_pred = np.load(tmp_path / "predicted.npy")
    assert onnx_pred.shape == py.shape
    assert np.mean(onnx_pred == py) > 0.995, np.flatnonzero(onnx_pred != py)
    assert abs(host_acc - train_acc) < 0.01
