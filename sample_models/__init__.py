"""Bundled sample models for tui-quantreport.

Each sample is a module of this package that follows the model-file contract:

- ``DESCRIPTION``: one line saying what the model is and which detector(s) it
  exercises;
- ``build_model()``: a deterministic ``torch.nn.Module`` in eval mode (float,
  or prepared by ``torch.ao``);
- ``calibration_batches()``: a deterministic list of batches, each a Tensor
  (``model(batch)``), a tuple (``model(*batch)``) or a dict of keyword
  arguments (``model(**batch)``).

``SAMPLES`` lists the sample module names in display order; the first one is
the default. This file does not import torch: listing the samples is cheap.
"""

SAMPLES = (
    "showcase",
    "convnet_per_tensor",
    "drifting_mlp",
    "outlier_channels",
    "unbalanced_equalization",
    "tiny_transformer",
    "untraceable",
    "large_generated",
    "pt2e_prepared",
    "trained_lm",
)

DEFAULT_SAMPLE = SAMPLES[0]
