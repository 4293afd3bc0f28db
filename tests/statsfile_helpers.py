"""What the stats file tests share: re-encode a file with edits, and run the tool under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tui_quantreport.engine import statsfile

ROOT = Path(__file__).resolve().parents[1]


def rewrite(data, edit_header=None, edit_meta=None, edit_tensors=None):
    """Re-encode a good file with an edited header / metadata / tensors (checksum recomputed unless told)."""
    from safetensors.torch import load, save

    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + size])["__metadata__"]
    tensors = load(data)
    header = json.loads(meta["header"])
    if edit_header:
        edit_header(header)
    if edit_tensors:
        edit_tensors(tensors)
    text = json.dumps(header)
    meta = {"format": meta["format"], "header": text, "sha256": statsfile._digest(text, tensors)}
    if edit_meta:
        edit_meta(meta)
    return save(tensors, metadata=meta)


def torchrun(*args, env=None, timeout=180):
    """``python -m torch.distributed.run`` with 2 local ranks running ``tui_quantreport ARGS``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "tui_quantreport",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
