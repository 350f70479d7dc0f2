"""Every Table 5 variant (golden.model.ABLATIONS) through the core: quantized for the variant's
core (tools/table5.py: configs/hw/digits.yaml with what the variant needs) and run on two digits
test images by `hwgen sim`, every layer at every timestep and the logits compared with the
integer engine (the first mismatch raises, naming image, layer, timestep, channel and position).

The digits model's dimensions (golden.digits.DIGITS_MODEL_DEFAULTS), random weights with firing rates calibrated to 10-40% (golden.calibrate), so no training is
needed and every layer carries spikes. Slow (a core build per distinct configuration, five in
all, and two images per variant; 3 min with the builds cached, 20 min on 2 cores loaded by other jobs):
``.venv/bin/pytest -n 0 -m slow rtl_tests/test_table5_variants.py``.
The trained variants run the same path in ``python -m tools.table5`` (docs/table5.md).
"""
from __future__ import annotations

import pytest

from golden.model import ABLATIONS

IMAGES = 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(ABLATIONS))
def test_variant_runs_exact_on_the_core(variant, tmp_path):
    from golden.digits import DIGITS_MODEL_DEFAULTS
    from hwgen.flow import quantize_checkpoint, simulate_program
    from tools.table5 import hardware

    hw = hardware(variant)
    digits = {k: DIGITS_MODEL_DEFAULTS[k] for k in ("embed_dim", "depths", "num_heads", "mlp_ratio", "T")}
    program = quantize_checkpoint(None, hw, tmp_path / "program", model="metaspikeformer_tiny",
                                  model_args={**digits, **ABLATIONS[variant]}, random_init=1, target_rates=(0.1, 0.4),
                                  calib=8, samples=0, log=lambda s: None)
    run = simulate_program(program, hw, out=tmp_path / "run", images="digits:test", count=IMAGES,
                           log=lambda s: None)
    assert [i["exact"] for i in run["images"]] == [True] * IMAGES
    assert len(run["layers"]) >= 40, f"{variant}: only {len(run['layers'])} instructions"
