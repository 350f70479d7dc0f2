"""The event-camera model on the core: spike frames in, every layer at every timestep bit-exact.

The checkpoint trained on the simulated event camera (tools/train_events.py, checkpoints/README.md)
is quantized with its encoding conv as a spike conv; the compiler places each image's frames in
the spike memory, one frame per timestep, and the core runs the encoding conv as any other spike
conv. Two held-out recordings are simulated (every memory and register without a reset value
random), each layer's output compared with the golden engine, the counters with the cycle model;
the encoding conv's additions against a count made here (input spikes times the kernel taps that
land on the output, times the output channels), and its MACs are zero.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contract.config import load_config
from golden.export import load_model
from golden.fold import fold_model
from golden.images import Preprocessing, open_images
from golden.intsim import IntegerEngine
from golden.quantize import quantize
from hwgen.compiler import compile_program
from hwgen.sim.core import run_core
from hwgen.sim.simulate import MismatchError, check_image, layer_table

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "events_sdsa3_t2.pth"
ENC = "downsample1_1.encode_conv"


@pytest.fixture(scope="module")
def events_run(tmp_path_factory):
    hw = load_config(REPO / "configs" / "hw" / "digits.yaml")
    model = load_model(CHECKPOINT)
    program = quantize(fold_model(model), hw, input_shape=[2, 32, 32], model_name=CHECKPOINT.name,
                       spike_frames=True)
    frames, _ = open_images("events:test", Preprocessing.event_frames(32, model.T)).select(0, 2).load()
    image = compile_program(program, hw)
    golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(frames).items()}
    results = run_core(image, frames.numpy().astype(np.int64), work=tmp_path_factory.mktemp("events"),
                       random_init=20261202)
    return image, results, golden, frames.numpy()


def test_event_frames_every_layer_and_timestep_exact(events_run):
    image, results, golden, frames = events_run
    assert len(results) == 2 and image.program.T == frames.shape[1] >= 2
    for b, result in enumerate(results):
        check_image(image, result, golden, b)            # every layer, every timestep, and the cycle model
    rows = layer_table(image, results, [[None] * len(image.layers)] * len(results))
    enc = image.layers[0]
    assert rows[0]["name"] == ENC and rows[0]["macs"] == 0 and sum(r["macs"] for r in rows) == 0
    a = enc.attrs
    for b, result in enumerate(results):
        x = torch.from_numpy(frames[b]).double()         # [T, 2, H, W]
        taps = F.conv2d(x, torch.ones(1, 2, a["kernel"], a["kernel"], dtype=torch.float64), stride=a["stride"],
                        padding=a["padding"])
        assert result.layers[0].additions == int(taps.sum()) * a["out_channels"]
        assert result.layers[0].events == int(frames[b].sum())


def test_a_wrong_frame_value_is_located(events_run):
    image, results, golden, _ = events_run
    bad = {k: v.copy() for k, v in golden.items()}
    bad[ENC][1, 1, 3, 4, 5] += 1                            # timestep 1 of image 1
    with pytest.raises(MismatchError, match=rf"image 1, layer {ENC} \(conv\): first mismatch at "
                                            r"timestep=1, channel=3, y=4, x=5"):
        check_image(image, results[1], bad, 1)
