"""The integer engine's fast paths against a plain int64 reference, with ``==`` on every tensor.

The engine (golden.intsim, golden.lif) computes in the fastest exact type: float32 sums, oneDNN's
u8 x s8 -> s32 convolution for spike maps, bool spikes, int32 membranes where the currents prove
it, the encoding conv once for all T. The reference below is docs/arithmetic.md written out in
int64 and nothing else (convolutions as sums over kernel taps, the LIF exactly as the spec's
four lines, the image repeated over T), independent of the engine's code. Programs: quantized
random Meta-SpikeFormers (SDSA-1 to 4, T = 1, 2, 4, the distillation head, signed pixels, 4-bit
weights), the bundled T = 4 digits model on real digits, and hand-built programs that push
each layer past the fast types (sums above 2**24, 12-bit weights, currents that need int64
membranes, groups, stride, border correction, a membrane shortcut from the encoding conv).
"""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contract.compare import first_mismatch
from contract.config import LifConfig, load_config
from contract.program import INPUT, KINDS, Layer, Program
from golden import intsim
from golden.export import load_model
from golden.fold import fold_model
from golden.intsim import IntegerEngine
from golden.lif import lif_integer, lif_run
from golden.quantize import calibrate, quantize

REPO = Path(__file__).resolve().parents[2]
SHAPE = [1, 32, 32]
I64 = torch.int64


# ------------------------------------------------------------------ the int64 reference
def ref_conv(x, w, b, stride, padding, groups):
    """``b[o] + sum_{i,ky,kx} w[o,i,ky,kx] x[i, y*s+ky-p, x*s+kx-p]`` on int64 ``[N, C, H, W]``."""
    n, _, h, wd = x.shape
    o, cg, k, _ = w.shape
    xp = F.pad(x, (padding,) * 4)
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    og = o // groups
    y = torch.zeros(n, o, ho, wo, dtype=I64)
    for g in range(groups):
        xg, wg = xp[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for ky in range(k):
            for kx in range(k):
                tap = xg[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
                y[:, g * og:(g + 1) * og] += torch.einsum("nchw,oc->nohw", tap, wg[:, :, ky, kx])
    return y + b[:, None, None]


def ref_lif(x, th, cfg: LifConfig):
    """docs/arithmetic.md, "LIF", literally: int64, one timestep after the other."""
    f, k = cfg.frac_bits, cfg.leak_shift
    v = torch.zeros(x.shape[1:], dtype=I64)
    spikes, membranes = [], []
    for xt in x:
        h = v + (((xt << f) - v) >> k)
        s = h >= (th << f)
        v = torch.where(s, torch.zeros_like(h), h) if cfg.reset == "hard" else torch.where(s, h - (th << f), h)
        spikes.append(s.to(I64))
        membranes.append(h)
    return torch.stack(spikes), torch.stack(membranes)


def reference_run(program: Program, hw, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tensor of the program on int64 pixels ``[B, C, H, W]``: spikes int8, the rest int64."""
    T = program.T
    arr = {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in program.arrays.items()}
    env = {INPUT: pixels.to(I64).unsqueeze(0).repeat(T, 1, 1, 1, 1)}
    for layer in program.layers:
        a, xs = layer.attrs, [env[n].to(I64) for n in layer.inputs]
        p = {role: arr[key] for role, key in layer.arrays.items()}
        if layer.kind == "conv":
            x = xs[0]
            y = torch.stack([ref_conv(xt, p["weight"], p["bias"], a["stride"], a["padding"], a["groups"]) for xt in x])
            if "border" in p:
                y = y + p["border"]
            if a["residual"] is not None:
                y = y + xs[1]
            out = y
        elif layer.kind == "lif":
            x = xs[0] << a["input_shift"]
            th = p["threshold"].reshape(-1, *([1] * (x.dim() - 3)))
            out, env[f"{layer.name}.membrane"] = ref_lif(x, th, hw.lif)
        elif layer.kind == "sdsa":
            q, k, v = (xs[0], None, xs[1]) if a["variant"] == 2 else xs
            t, b, c, h, w = q.shape
            if a["variant"] in (3, 4):     # per head: Q (K^T V), [N, d] x [d, d]
                q, k, v = (s.reshape(t, b, a["heads"], a["head_dim"], h * w).transpose(-1, -2) for s in (q, k, v))
                out = (q @ (k.transpose(-1, -2) @ v)).transpose(-1, -2).reshape(t, b, c, h, w)
            else:
                out = (q * k if a["variant"] == 1 else q).flatten(3).sum(3).reshape(t, b, c, 1, 1)
        elif layer.kind == "mask":
            out = xs[1] * xs[0]
        elif layer.kind == "token_sum":
            out = xs[0].flatten(3).sum(3)
        elif layer.kind == "linear":
            out = xs[0] @ p["weight"].T + p["bias"]
        elif layer.kind == "readout":
            out = sum(h.sum(0) for h in xs)
        else:
            raise AssertionError(f"no reference for kind {layer.kind}")
        env[layer.name] = out.to(torch.int8 if KINDS[layer.kind].output == "spikes" else I64)
    return env


def assert_same(got: dict, want: dict, what: str):
    """Same names, and per tensor the same dtype and the same integers (the first mismatch named)."""
    assert sorted(got) == sorted(want), f"{what}: tensors differ: {sorted(set(got) ^ set(want))}"
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, f"{what}: {name} is {g.dtype}, the reference {w.dtype}"
        found = first_mismatch(w.numpy(), g.numpy(), [f"axis{i}" for i in range(w.dim())])
        assert found is None, f"{what}: {name} at {found[0]}: reference {found[1]}, engine {found[2]}"


# ------------------------------------------------------------------ programs
def _random_program(seed, T, hw="digits", signed=False, weight_bits=8, **kw):
    model = load_model(None, model_name="metaspikeformer_tiny", random_init=seed, T=T, **kw)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.bias.data.uniform_(0.3, 1.2)      # most layers fire
    folded = fold_model(model)
    gen = torch.Generator().manual_seed(seed)
    if signed:
        calib = calibrate(folded, [-1 + 2 * torch.rand(2, *SHAPE, generator=gen) for _ in range(2)])
        options = dict(calibration=calib)
    else:
        options = dict(input_scale=1 / 16)
    cfg = load_config(REPO / "configs" / "hw" / f"{hw}.yaml")
    return quantize(folded, cfg, input_shape=SHAPE, weight_bits=weight_bits, **options), cfg


RANDOM = {
    "sdsa3_t4": dict(seed=3, T=4),
    "sdsa1_t1": dict(seed=4, T=1, sdsa_variant=1),
    "sdsa2_t2_kd": dict(seed=5, T=2, sdsa_variant=2, kd=True),
    "sdsa4_t2_signed": dict(seed=6, T=2, sdsa_variant=4, signed=True),
    "sdsa3_t2_w4": dict(seed=7, T=2, hw="digits16", weight_bits=4),
}


def _pixels(program, n, seed):
    inp = program.header["input"]
    lo, hi = (-(1 << (inp["bits"] - 1)), (1 << (inp["bits"] - 1)) - 1) if inp["signed"] else (0, (1 << inp["bits"]) - 1)
    hi = min(hi, 16) if not inp["signed"] else hi      # the digits' levels, so that layers fire
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, (n, *inp["shape"]), generator=gen)


@pytest.fixture(scope="module", params=sorted(RANDOM))
def random_case(request):
    program, hw = _random_program(**RANDOM[request.param])
    return request.param, program, hw, _pixels(program, 3, seed=len(request.param))


def test_fast_engine_equals_int64_reference_on_random_programs(random_case):
    name, program, hw, px = random_case
    got = IntegerEngine(program, hw).run(px)
    assert_same(got, reference_run(program, hw, px), name)
    fired = [got[layer.name].float().mean().item() for layer in program.layers if layer.kind == "lif"]
    assert np.mean([r > 0 for r in fired]) > 0.5, f"{name}: too few layers fire to test anything: {fired}"


def test_run_layer_on_int64_inputs_equals_reference(random_case):
    """Layer by layer from the reference's own int64 tensors (what replay and the RTL tests do)."""
    name, program, hw, px = random_case
    want = reference_run(program, hw, px)
    engine = IntegerEngine(program, hw)
    for layer in program.layers:
        out = engine.run_layer(layer, *(want[n] for n in layer.inputs))
        got = dict(zip([layer.name, f"{layer.name}.membrane"], out)) if layer.kind == "lif" else {layer.name: out}
        assert_same(got, {k: want[k] for k in got}, f"{name} {layer.name}")


def test_digits_model_on_real_digits_equals_reference():
    from golden.digits import PIXEL_LEVELS, load_digits_split
    _, _, x_test, _ = load_digits_split(size=32)
    hw = load_config(REPO / "configs/hw/digits.yaml")
    program = quantize(fold_model(load_model(REPO / "checkpoints/digits_sdsa3_t4.pth")), hw,
                       input_scale=1 / PIXEL_LEVELS, input_shape=SHAPE)
    engine = IntegerEngine(program, hw)
    px = engine.encode(x_test[:8])
    assert_same(engine.run(px), reference_run(program, hw, px), "digits_sdsa3_t4")


def test_observe_streams_every_layer_as_run_keeps_it(random_case):
    name, program, hw, px = random_case
    engine = IntegerEngine(program, hw)
    kept = engine.run(px)
    seen, order = {}, []

    def observe(layer, out):
        order.append(layer.name)
        if layer.kind == "lif":
            seen[layer.name], seen[f"{layer.name}.membrane"] = out
        else:
            seen[layer.name] = out

    streamed = engine.run(px, keep=False, observe=observe)
    assert order == [layer.name for layer in program.layers], "each layer once, in program order"
    assert_same(seen, {k: v for k, v in kept.items() if k != INPUT}, f"{name} observed")
    assert sorted(streamed) == sorted([INPUT, program.output])
    assert torch.equal(streamed[program.output], kept[program.output])


# ------------------------------------------------------------------ hand-built edge programs
def _edge_program(T, ws, hw, px, seed):
    """enc (pixels, 3x3, border rows) -> lif0 -> c1 (groups 2) -> lif1 (input shift 1) -> c2 (1x1,
    membrane shortcut from enc, the same at every timestep) -> lif2 -> c3 (stride 2) -> lif3, with
    weights and biases in ``[-ws, ws)``. Each conv's ``bound`` is what the quantizer would prove
    (sum of |weights| times the input range, plus |bias|, border and shortcut), and each LIF's
    thresholds are the median of its currents (per channel, from the reference), so that about
    half of the neurons fire."""
    gen = torch.Generator().manual_seed(seed)
    program = Program(header={"T": T}, layers=[], arrays={})
    bounds = {}

    def ints(*shape):
        return torch.randint(-ws, ws, shape, generator=gen).numpy().astype(np.int64)

    def add(layer, arrays):
        program.arrays.update({f"{layer.name}.{role}": a for role, a in arrays.items()})
        layer.arrays = {role: f"{layer.name}.{role}" for role in arrays}
        program.layers.append(layer)

    def conv(name, src, w, *, stride=1, groups=1, residual=None, border=None):
        pixels = src == INPUT
        arrays = {"weight": w, "bias": ints(len(w))} | ({"border": border} if border is not None else {})
        top = np.abs(w).reshape(len(w), -1).sum(1) * (255 if pixels else 1) + np.abs(arrays["bias"])
        if border is not None:
            top = top + np.abs(border).reshape(len(w), -1).max(1)
        if residual is not None:
            top = top + bounds[residual]
        bounds[name] = int(top.max())
        add(Layer(name, "conv", [src] + ([residual] if residual else []), [], attrs=dict(
            stride=stride, padding=w.shape[-1] // 2, groups=groups, residual=residual,
            input="pixels" if pixels else "spikes", bound=[-bounds[name], bounds[name]])), arrays)

    def lif(name, src, shift=0):
        x = reference_run(program, hw, px)[src] << shift
        median = x.movedim(2, 0).reshape(x.shape[2], -1).median(dim=1).values
        th = (median >> hw.lif.leak_shift).clamp(0, (1 << hw.lif.threshold_width) - 1)
        add(Layer(name, "lif", [src], [], attrs=dict(input_shift=shift)), {"threshold": th.numpy()})

    conv("enc", INPUT, ints(8, 3, 3, 3), border=ints(8, 6, 6) * (np.arange(6) % 5 == 0)[None, :, None])
    lif("lif0", "enc")
    conv("c1", "lif0", ints(8, 4, 3, 3), groups=2)
    lif("lif1", "c1", shift=1)
    conv("c2", "lif1", ints(8, 8, 1, 1), residual="enc")
    lif("lif2", "c2")
    conv("c3", "lif2", ints(8, 8, 3, 3), stride=2)
    lif("lif3", "c3")
    return program, bounds


EDGES = {
    # sums far below 2**24: float32 convs, int8 spike convs, int32 membranes
    "narrow": 100,
    # 12-bit weights: no int8 conv; every sum still below 2**24
    "wide_weights": 2000,
    # pixel sums above 2**24 (float64 convs) and currents whose membranes need int64
    "beyond_float32": 30000,
}


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("edge", sorted(EDGES))
def test_fast_engine_equals_reference_past_the_fast_types(edge, T):
    base = load_config(REPO / "configs/hw/metaspikeformer.yaml")
    hw = dataclasses.replace(base, lif=dataclasses.replace(base.lif, current_width=32, membrane_width=38,
                                                           threshold_width=31))
    px = torch.randint(0, 256, (2, 3, 6, 6), generator=torch.Generator().manual_seed(10 + T))
    program, bounds = _edge_program(T, EDGES[edge], hw, px, seed=T)
    got = IntegerEngine(program, hw).run(px)
    assert_same(got, reference_run(program, hw, px), f"{edge} T={T}")
    rates = [got[f"lif{i}"].float().mean().item() for i in range(4)]
    assert all(0 < r < 1 for r in rates), f"{edge}: every LIF should fire somewhere and not everywhere: {rates}"
    if edge == "beyond_float32":
        m = int(got["enc"].abs().max()) << hw.lif.frac_bits       # lif0's M: int64 when 2^k M >= 2^31
        assert bounds["enc"] >= 2 ** 24 and m << hw.lif.leak_shift >= 2 ** 31, "past float32 and int32"


def test_a_wrong_int8_convolution_is_caught_on_first_use(monkeypatch):
    """The engine checks oneDNN's int8 conv against the float conv the first time a layer (and
    input shape) runs; a kernel that is off by one somewhere (as a 7-bit-weight kernel of a CPU
    without VNNI would be) is refused and the float path gives the reference integers."""
    if not intsim._HAS_ONEDNN_INT8:
        pytest.skip("this torch build has no oneDNN int8 convolution (the float path is the only one)")
    program, hw = _random_program(**RANDOM["sdsa3_t4"])
    px = _pixels(program, 2, seed=1)
    real = intsim._int8_conv

    def off_by_one(*args):
        y = real(*args).clone()
        y[len(y) // 2, 0, 0, 0] += 1
        return y

    monkeypatch.setattr(intsim, "_int8_conv", off_by_one)
    engine = IntegerEngine(program, hw)
    assert_same(engine.run(px), reference_run(program, hw, px), "wrong int8 kernel")
    refused = [k for k, v in engine._cache.items() if k[0] == "int8" and v is False]
    spike_convs = [layer for layer in program.layers if layer.kind == "conv" and layer.attrs["input"] == "spikes"]
    assert len(refused) == len(spike_convs), "every spike conv falls back to the float path"


# ------------------------------------------------------------------ the LIF alone
def _cfg(reset, k, f, width):
    return LifConfig(lanes=1, neurons=1 << 20, channels=1 << 10, current_width=width, membrane_width=width + f,
                     frac_bits=f, threshold_width=16, leak_shift=k, reset=reset, max_timesteps=16)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "expanded", "float32"])
@pytest.mark.parametrize("reset,k,f,width,shift", [
    ("hard", 1, 6, 24, 0), ("hard", 1, 6, 24, 2), ("subtract", 1, 6, 20, 0), ("hard", 0, 3, 16, 0),
    ("subtract", 2, 4, 20, 1), ("hard", 3, 0, 12, 0), ("hard", 1, 6, 32, 0), ("subtract", 2, 8, 30, 0)])
def test_lif_run_equals_the_spec(reset, k, f, width, shift, layout):
    cfg = _cfg(reset, k, f, width)
    gen = torch.Generator().manual_seed(k * 100 + f * 10 + width + shift)
    T, lim = 5, (1 << (width - 1 - shift)) - 1
    if layout == "float32":
        lim = min(lim, (1 << 23) - 1)       # integers a float32 conv can hand over exactly
    th = torch.randint(0, min(1 << 16, lim + 1), (4, 1, 1), generator=gen)
    x = torch.randint(-lim, lim + 1, (T, 3, 4, 5, 5), generator=gen)
    near = (th[None, None] * torch.randint(-2, 5, x.shape, generator=gen)) << k >> shift   # around the threshold
    x = torch.where(torch.rand(x.shape, generator=gen) < 0.7, near.clamp(-lim, lim), x)
    if layout == "channels_last":
        x = x.reshape(T * 3, 4, 5, 5).contiguous(memory_format=torch.channels_last).reshape(x.shape)
    elif layout == "expanded":
        x = x[:1].expand(T, *x.shape[1:])
    elif layout == "float32":
        x = x.float()
    spikes, membranes = lif_run(x, th, cfg, input_shift=shift)
    want_s, want_h = ref_lif(x.to(I64) << shift, th, cfg)
    assert torch.equal(spikes.to(I64), want_s) and spikes.dtype == torch.bool
    assert torch.equal(membranes.to(I64), want_h)
    assert 0.05 < want_s.double().mean() < 0.95, "both outcomes must be common"
    # int32 exactly where the proof allows it (2^k M < 2^31, M the largest |X << F|)
    m = int((x.to(I64) << shift).abs().max()) << f
    assert membranes.dtype == (torch.int32 if (m << k) < 2 ** 31 else torch.int64)
    # the public function: the same integers in int64
    s64, h64 = lif_integer(x.to(I64) << shift, th, cfg)
    assert s64.dtype == h64.dtype == I64 and torch.equal(s64, want_s) and torch.equal(h64, want_h)
