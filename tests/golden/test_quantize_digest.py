"""The quantizer and the core compiler write the same bytes as before they were split into passes
and per-kind registries (issue #12).

Each case quantizes a model for a hardware configuration and hashes what ``hwgen quantize``
writes: ``program.json`` byte for byte but for the copy of the hardware configuration in its
header, and ``arrays.npz`` by content (every array's name, in order, dtype, shape and bytes: the
zip container itself holds timestamps). Where the
configuration describes a core, the compiled core image (instruction words, parameter and
tensor placement) is hashed too, or the refusal's message when the core cannot run it.

The stored digests were computed from the code of commit 99ac307 (one 254-line ``quantize()``,
``if kind == ...`` chains in the engine and the compiler), before any of it was changed:
``.venv/bin/python -m tests.golden.test_quantize_digest`` prints them. The core images' digests
were taken again when the instruction set changed on purpose (issue 14: the ``chain`` field and
the placement that keeps a chained CONV's inputs apart from its LIF's output), with
``program.json`` and ``arrays.npz`` unchanged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import Program, write_program_files
from golden.export import load_model
from golden.fold import fold_model
from golden.quantize import QuantizationError, calibrate, quantize
from hwgen.compiler import CoreFitError, compile_program

REPO = Path(__file__).resolve().parents[2]
SHAPE = [1, 32, 32]


def _digits_calibration(folded):
    from golden.digits import load_digits_split
    x_train, _, _, _ = load_digits_split(size=32)
    return calibrate(folded, [x_train[i:i + 64] for i in range(0, 256, 64)])


def _checkpoint(name: str, config: str, **options):
    """What `hwgen quantize checkpoints/NAME --hw configs/hw/CONFIG.yaml` quantizes."""
    def build():
        from golden.digits import PIXEL_LEVELS
        folded = fold_model(load_model(REPO / "checkpoints" / name))
        return folded, config, dict(input_scale=1.0 / PIXEL_LEVELS, calibration=_digits_calibration(folded),
                                    model_name=f"checkpoints/{name}", **options)
    return build


def _random(config: str, *, seed: int = 3, signed_input: bool = False, weight_bits: int = 8, **model_kwargs):
    """A random-init metaspikeformer_tiny (BN shifts raised so that most layers fire)."""
    def build():
        model = load_model(None, model_name="metaspikeformer_tiny", random_init=seed, **model_kwargs)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.bias.data.uniform_(0.3, 1.2)
        folded = fold_model(model)
        gen = torch.Generator().manual_seed(0)
        lo = -1.0 if signed_input else 0.0
        calib = calibrate(folded, [lo + torch.rand(2, *SHAPE, generator=gen) for _ in range(2)])
        options = dict(calibration=calib) if signed_input else dict(input_scale=1 / 16)
        return folded, config, dict(model_name="metaspikeformer_tiny", weight_bits=weight_bits, **options)
    return build


CASES = {
    "digits_sdsa3_t1": _checkpoint("digits_sdsa3_t1.pth", "digits"),
    "digits_sdsa3_t4": _checkpoint("digits_sdsa3_t4.pth", "digits"),
    "digits_sdsa1_t1": _checkpoint("digits_sdsa1_t1.pth", "digits_sdsa1"),
    "digits16_sdsa3_t1": _checkpoint("digits_sdsa3_t1.pth", "digits16"),
    "digits_sdsa3_t4_w4": _checkpoint("digits_sdsa3_t4.pth", "digits", weight_bits=4),
    "tiny_t4": _random("digits", T=4),
    "tiny_sdsa2_kd": _random("digits", T=2, sdsa_variant=2, kd=True),
    "tiny_sdsa4_signed": _random("digits", seed=5, T=2, sdsa_variant=4, signed_input=True),
    "tiny_w6_mse": _random("digits16", seed=7, T=1, weight_bits=6),
    "tiny_sdsa2_core": _random("digits@sdsa2", seed=11, T=2, sdsa_variant=2, num_heads=2),
    # refusals: the QuantizationError's text is hashed
    "tiny_t4_narrow": _random("digits@acc12", T=4),
    "tiny_t4_current14": _random("digits@cur14", T=4),
    "digits_sdsa3_t4_th6": _checkpoint("digits_sdsa3_t4.pth", "digits@th6"),
}


def _config(spec: str):
    """``NAME``: configs/hw/NAME.yaml; ``NAME@sdsaV`` with an SDSA-V unit, ``NAME@accW`` with
    W-bit accumulators and biases, ``NAME@thW`` with W-bit thresholds, ``NAME@curW`` with W-bit
    LIF currents."""
    name, _, change = spec.partition("@")
    hw = load_config(REPO / "configs" / "hw" / f"{name}.yaml")
    if change.startswith("sdsa"):
        hw = dataclasses.replace(hw, sdsa=dataclasses.replace(hw.sdsa, variant=int(change[4:])))
    elif change.startswith("acc"):
        w = int(change[3:])
        hw = dataclasses.replace(hw, accumulator=dataclasses.replace(hw.accumulator, accumulator_width=w, bias_width=w))
    elif change.startswith("cur"):
        hw = dataclasses.replace(hw, lif=dataclasses.replace(hw.lif, current_width=int(change[3:])))
    elif change.startswith("th"):
        hw = dataclasses.replace(hw, lif=dataclasses.replace(hw.lif, threshold_width=int(change[2:])))
    return hw


def array_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def program_digest(program: Program, hw) -> dict[str, str]:
    """sha256 of ``program.json`` and of ``arrays.npz``'s contents, as written to disk.

    The header's ``hw`` and ``hw_hash`` are the configuration's own ``to_dict()`` and ``hash``
    (contract/config.py, which changes with the hardware's schema): they are checked equal to
    them and left out of the digest, which covers every other byte of the file."""
    with tempfile.TemporaryDirectory() as tmp:
        write_program_files(program, Path(tmp))
        text = (Path(tmp) / "program.json").read_text()
        with np.load(Path(tmp) / "arrays.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(text)
    assert json.dumps(doc, indent=1) + "\n" == text       # so re-serialising keeps every byte
    assert doc["header"].pop("hw") == hw.to_dict() and doc["header"].pop("hw_hash") == hw.hash
    rest = json.dumps(doc, indent=1) + "\n"
    return {"program.json": hashlib.sha256(rest.encode()).hexdigest(), "arrays.npz": array_digest(arrays)}


def image_digest(program: Program, hw) -> str:
    """sha256 of the compiled core image (or of the compiler's refusal)."""
    try:
        image = compile_program(program, hw)
    except CoreFitError as e:
        return "refused: " + hashlib.sha256(str(e).encode()).hexdigest()
    regions = {name: [r.memory, r.base, r.timesteps, r.positions, r.words, r.channels, list(r.shape),
                      None if r.index is None else r.index.tolist()] for name, r in image.regions.items()}
    doc = dict(words=[hex(w) for w in image.instruction_words()],
               loads=[[int(t), a, hex(w)] for t, a, w in image.static_loads()],
               regions=regions, outputs=image.outputs, preloaded=image.preloaded, peak=image.peak,
               layers=[layer.name for layer in image.layers])
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def case_digest(case: str) -> dict[str, str]:
    folded, config, options = CASES[case]()
    hw = _config(config)
    try:
        program = quantize(folded, hw, input_shape=SHAPE, **options)
    except QuantizationError as e:
        return {"refused": hashlib.sha256(str(e).encode()).hexdigest()}
    out = program_digest(program, hw)
    if hw.core is not None:
        out["core image"] = image_digest(program, hw)
    return out


# computed from commit 99ac307, before the quantizer, the engine or the compiler were changed
EXPECTED: dict[str, dict[str, str]] = {
    'digits16_sdsa3_t1': {
        'program.json': 'e9a021e06fb762331e77904e23f7a3976ca721165c39a9346f0447f75e73ea0c',
        'arrays.npz': '3abb8417f361416c22d9ecd3760bc549747b80265f84e6ee515945c397d8b761',
        'core image': 'dd399e7fb9554e65efc1b3cfb98f83b4cd645a55a10082b85d72d70ff107ae8e',
    },
    'digits_sdsa1_t1': {
        'program.json': 'edac863c2915f38405d70452f9f3cee06eb3b64dcf452f2dfe06f32cace958af',
        'arrays.npz': 'bd101623362b901fca4071ed9e2a71d07dc9e08137eb428c2bd6da7350876386',
        'core image': 'b8f3e76c9fc6bff241d5fdfc317c04cbd4bd063bd8043ac4f68b73ed3928b4f5',
    },
    'digits_sdsa3_t1': {
        'program.json': 'e9a021e06fb762331e77904e23f7a3976ca721165c39a9346f0447f75e73ea0c',
        'arrays.npz': '3abb8417f361416c22d9ecd3760bc549747b80265f84e6ee515945c397d8b761',
        'core image': 'cdf6b2256a03b38f931c114c449fab8ad0456476e01143b2b02845ee9dca99b7',
    },
    'digits_sdsa3_t4': {
        'program.json': 'db966c77844cb095b15932da461d251681498d73710e0ac1c32610289ba6c1e0',
        'arrays.npz': '4267a5731bb94660b4f5dd366d03c95b422f3d4d2e0fe672f7636c8ad6a0e487',
        'core image': '81ecf8c59af61c8ba2de32dae5e36907f57b9195723f362e20c2dfa9609a3260',
    },
    'digits_sdsa3_t4_th6': {
        'program.json': '55468b3b193c62013d3063a4d830485377b877538f60f6410d1162ff6d8285d4',
        'arrays.npz': 'df774461bf09d77f89c0972f9de53e35a120535b4c1084fb0030953df9ec88ee',
        'core image': '6a4f22ca5ef55258b3fa18c0cd2a9c426ccfcff40cde62ff0eda4f4b88b70ba8',
    },
    'digits_sdsa3_t4_w4': {
        'program.json': '1329f62786026e56f964975b2a9d3d00ba2dfdab91781af9a6d2cd30995173e2',
        'arrays.npz': 'f21af3c6c8f23856ccce972f2b25d2ea7ca20be1eca86ab80e326be5c2bea68d',
        'core image': 'f4cd1c22415a521e1c2035121be63d937e0766a6f63ef586ed230633f14bae16',
    },
    'tiny_sdsa2_core': {
        'program.json': 'de164a217791fc2dffa92829f8a40a7fad9ba65508e6747d04dbc87934a6a790',
        'arrays.npz': '1bbf3e2fa196152a2341849b20c68bfa3f0287e18ce6b0ca43b5bc959cc03acb',
        'core image': '6bbd30fe3290a92cc3f47aa67822997caa84f89a6b808d3fe94217920bf9c5ec',
    },
    'tiny_sdsa2_kd': {
        'program.json': 'e1fdcea4dc19ad32c5ce778faec0993e4ddcff3f63615d4a3046899ed7a292ab',
        'arrays.npz': '98257e009d8e24b6396102ecf9d38966d48fed2e943915b08d0c39cdf9e8cc7e',
        'core image': 'refused: 26920a1487d56484eadc5332505874fcad833873f325c88eb57fbe772a9fc1ac',
    },
    'tiny_sdsa4_signed': {
        'program.json': 'a10c49fbfefb1a788cf354cb5d48df9753bbfc2c28bab2adafa07b067cf29fd5',
        'arrays.npz': '012e260a865696cbe444db055ce9363413ce1eb96307b54dd5f2eab22347c7a7',
        'core image': 'refused: f80c34dae0c08de05f7b2e18816fac612d48121a275f07be99ea7b69f4878c53',
    },
    'tiny_t4': {
        'program.json': '2d9e630a9e863fe5d62597e84fcb1afbbcc1a93458e4098d2066f9c37fe5bf23',
        'arrays.npz': '80025618dae4c3e16067cd1d73e38fa26f96a0661d6e18884f8d77c33d6a378e',
        'core image': 'refused: 4a366f18a2c3c2854fa5966b92072e15b21d7891cdc8a3c2fd2f291f16e5a330',
    },
    'tiny_t4_current14': {
        'refused': '4a976cc5e9dd6cbde0314e20cd246171e257040fab6da6477af4183e70d89baf',
    },
    'tiny_t4_narrow': {
        'refused': '5e131070f3afc7cab896e65e05ea1b08b26213c3114bc6a8f7c22e1d7692630e',
    },
    'tiny_w6_mse': {
        'program.json': '9c1e57b2fbc6df172e4b4d31f987e95c4fc320e6b2d6608280bae6f480ed1b5d',
        'arrays.npz': 'b56e4a9b2d88199fa75058f9be86aca13cc1bc10809ad6d0124da2f3a5187b57',
        'core image': 'refused: 32ba800f8fd94481d2083e9e67ed5544b991fede641a805d3b1e98d434930603',
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_program_bytes_unchanged(case):
    assert case_digest(case) == EXPECTED[case]


if __name__ == "__main__":
    torch.set_num_threads(1)
    for case in sorted(CASES):
        print(f"    {case!r}: {case_digest(case)!r},")
