"""golden.calibrate: a random-weight model made to fire like a trained one."""
import torch

from golden.calibrate import calibrate_firing_rates
from golden.export import load_model
from golden.fold import LIFStep, fold_model


def test_every_lif_reading_a_conv_fires_inside_the_band():
    model = load_model(None, model_name="metaspikeformer_tiny", random_init=5, T=2)
    folded = fold_model(model)
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    before = {k: float(v.mean()) for k, v in folded.trace(images).items()
              if isinstance(folded._by_name.get(k), LIFStep)}
    reached = calibrate_firing_rates(folded, images, low=0.15, high=0.3, seed=2)
    after = folded.trace(images)
    steps = {s.name: s for s in folded}
    for name, rate in reached.items():
        assert abs(float(after[name].mean()) - rate) < 1e-6          # what it reports is what the model does
    driven = [s.name for s in folded if isinstance(s, LIFStep) and type(steps.get(s.src)).__name__ == "ConvStep"]
    assert driven and all(0.15 - 0.02 <= reached[n] <= 0.3 + 0.02 for n in driven), {n: reached[n] for n in driven}
    assert any(not 0.1 <= r <= 0.35 for r in before.values())         # it had something to fix
