"""Print the parameter counts of the Meta-SpikeFormer models.

Counts ``model.parameters()`` (not buffers), as the reference training script does. Targets from
the reference code: 15M 15.11M, 31M 31.33M, 55M 55.35M, 55M with distillation head 55.99M.
Models are built on the ``meta`` device: no memory is allocated, so this runs in a second.

Then the 31M under every switch of the paper's Table 5 (:data:`golden.model.ABLATIONS`), beside
the paper's column (:func:`tools.table5.print_parameters`, also ``python -m tools.table5 --params``).

Usage: ``python tools/param_counts.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from golden.model import create_model  # noqa: E402

MODELS = (
    ("15M", "metaspikeformer_15m", {}),
    ("31M", "metaspikeformer_31m", {}),
    ("55M", "metaspikeformer_55m", {}),
    ("55M+kd", "metaspikeformer_55m", {"kd": True}),
)


def count_parameters(name: str, **kwargs) -> int:
    """Number of parameters of registered model ``name`` built with ``kwargs``."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    from tools.table5 import print_parameters

    for label, name, kwargs in MODELS:
        n = count_parameters(name, **kwargs)
        print(f"{label}: {n / 1e6:.2f}M ({n:,} parameters)")
    print_parameters()


if __name__ == "__main__":
    main()
