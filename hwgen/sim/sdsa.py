"""Running the SDSA unit in simulation through its file-driven harness.

Three parts:

* :func:`sdsa_sim_run` (pytest / scripts side) generates the unit's Verilog for a config and
  returns a :class:`~hwgen.sim.runner.SimRun` for ``templates/sdsa_harness.sv``.
* Pure numpy helpers, usable without a simulator: :func:`pack_beats` (Q, K, V ``[T, C, N]`` ->
  input beats in the unit's order), :func:`unpack_outputs` (output beats -> A shaped like the
  golden model's) and :func:`cycle_model` (additions, beats and full-stream cycles the unit must
  report, docs/sdsa.md).
* :class:`SdsaHarness` (cocotb side) writes the stimulus file, lets the RTL run on its own and
  reads results and performance counters back.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.config import COUNTER_WIDTH
from hwgen.hexfile import unpack_fields
from hwgen.sim.harness import FileHarness
from hwgen.sim.runner import REPO_ROOT, TEMPLATES, SimRun, range_bits, unit_sim_run
from hwgen.units.sdsa import PERF_COUNTERS, SdsaConfig, input_fields

__all__ = ["sdsa_sim_run", "SdsaHarness", "SdsaResult", "pack_beats", "unpack_outputs", "cycle_model",
           "out_beats", "output_beat", "config_hash", "PIPELINE_CYCLES", "HARNESS_DEPTH", "TEMPLATES"]

HARNESS_DEPTH = 1 << 15     # most input beats and most output beats per harness run
PIPELINE_CYCLES = 2         # busy cycles beyond the issue cycles: stage 1 and the output register


def config_hash(cfg: SdsaConfig) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:16]


def sdsa_sim_run(cfg: SdsaConfig, *, name: str, test_module: str, test_dir: Path,
                 testcase: str | list[str] | None = None, plan: dict | None = None) -> SimRun:
    """The SDSA harness for ``cfg``; ``plan`` gets the config added."""
    from hwgen.units.sdsa import SdsaUnit

    params = {
        "LANES": cfg.out_lanes,     # values per output beat
        "ACC_WIDTH": cfg.acc_width,
        "IN_WIDTH": len(input_fields(cfg.variant)) * cfg.heads * cfg.head_dim,
        "TOKENS_WIDTH": range_bits(cfg.max_tokens + 1),
        "HEADS_WIDTH": range_bits(cfg.heads + 1),
        "HDIM_WIDTH": range_bits(cfg.head_dim + 1),
        "STEPS_WIDTH": range_bits(cfg.max_timesteps + 1),
        "COUNTER_WIDTH": COUNTER_WIDTH,
        "DEPTH": HARNESS_DEPTH,
        "OUT_DEPTH": HARNESS_DEPTH,
    }
    return unit_sim_run(SdsaUnit(cfg=cfg), top="sdsa_unit", harness="sdsa_harness.sv", name=f"sdsa-{name}",
                        rtl_dir=REPO_ROOT / "build" / "rtl" / f"sdsa-{name}-{config_hash(cfg)}", parameters=params,
                        test_module=test_module, test_dir=test_dir, testcase=testcase,
                        plan={**(plan or {}), "config": dataclasses.asdict(cfg)})


# ---- numpy side: beats in, beats out, cycle model ------------------------------------------

def _check_geometry(cfg: SdsaConfig, q: np.ndarray, heads: int, d: int) -> tuple[int, int, int]:
    T, C, N = q.shape
    if not (1 <= heads <= cfg.heads and 1 <= d <= cfg.head_dim and C == heads * d):
        raise ValueError(f"C={C} must be heads x head_dim with heads <= {cfg.heads}, head_dim <= "
                         f"{cfg.head_dim}; got heads={heads}, head_dim={d}")
    if not (1 <= N <= cfg.max_tokens and 1 <= T <= cfg.max_timesteps):
        raise ValueError(f"N={N}, T={T}: must be 1..{cfg.max_tokens} tokens, 1..{cfg.max_timesteps} timesteps")
    return T, C, N


def _field_bits(cfg: SdsaConfig, x: np.ndarray, heads: int, d: int, junk) -> np.ndarray:
    """``x[T, C, N]`` -> ``[T, N, heads_max * head_dim_max]`` bits in the input layout; positions
    outside the layer's heads and d hold random junk (the unit must ignore them) if ``junk``."""
    T, _, N = x.shape
    H, D = cfg.heads, cfg.head_dim
    out = np.zeros((T, N, H, D), dtype=np.uint8)
    if junk is not None:
        out[:] = junk.integers(0, 2, size=out.shape, dtype=np.uint8)
    out[:, :, :heads, :d] = np.asarray(x, dtype=np.uint8).reshape(T, heads, d, N).transpose(0, 3, 1, 2)
    return out.reshape(T, N, H * D)


def pack_beats(cfg: SdsaConfig, q, k, v, *, heads: int, head_dim: int, junk_seed: int | None = None) -> np.ndarray:
    """Input beats of one run as a bit matrix ``[beats, payload bits]`` (LSB first).

    ``q, k, v`` are ``[T, C, N]`` spikes (``k`` unused by SDSA-2, ``v`` by SDSA-1/2; may be
    None). SDSA-3/4: per timestep N beats for the K^T V pass then N for the A pass; SDSA-1/2:
    N beats. With ``junk_seed`` every bit the unit must ignore (padding, and the fields the pass
    does not read) is random instead of zero.
    """
    q = np.asarray(q)
    T, C, N = _check_geometry(cfg, q, heads, head_dim)
    junk = np.random.default_rng(junk_seed) if junk_seed is not None else None
    width = cfg.heads * cfg.head_dim

    def bits(x):
        return _field_bits(cfg, x, heads, head_dim, junk)

    def ignored():
        if junk is None:
            return np.zeros((T, N, width), dtype=np.uint8)
        return junk.integers(0, 2, size=(T, N, width), dtype=np.uint8)

    if cfg.attention_matrix:
        kv_pass = np.concatenate([ignored(), bits(k), bits(v)], axis=2)
        a_pass = np.concatenate([bits(q), ignored(), ignored()], axis=2)
        beats = np.concatenate([kv_pass, a_pass], axis=1)          # [T, 2N, 3W]
    elif cfg.variant == 1:
        beats = np.concatenate([bits(q), bits(k)], axis=2)
    else:
        beats = bits(q)
    return beats.reshape(-1, beats.shape[2])


def _blocks_per_timestep(cfg: SdsaConfig, *, N: int, heads: int, head_dim: int) -> int:
    """Lane blocks of A in one timestep's output."""
    return (N if cfg.attention_matrix else 1) * heads * -(-head_dim // cfg.lanes)


def unpack_outputs(cfg: SdsaConfig, values: np.ndarray, *, T: int, N: int, heads: int,
                   head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Output values ``[beats, out_blocks * lanes]`` -> (A, padding).

    A is ``[T, C, N]`` (SDSA-3/4) or ``[T, C]`` (SDSA-1/2), like the golden model's; the
    padding (lanes with ``b*lanes + l >= d``, and the zero blocks that fill a timestep's last
    beat) is returned flat, all zero in a correct unit.
    """
    L, d = cfg.lanes, head_dim
    nb = -(-d // L)
    per_t = _blocks_per_timestep(cfg, N=N, heads=heads, head_dim=head_dim)
    blocks = values.reshape(T, -1, L)
    tail = blocks[:, per_t:].reshape(-1)
    if cfg.attention_matrix:
        rows = blocks[:, :per_t].reshape(T, N, heads, nb * L)
        att = rows[..., :d].transpose(0, 2, 3, 1).reshape(T, heads * d, N)
    else:
        rows = blocks[:, :per_t].reshape(T, heads, nb * L)
        att = rows[..., :d].reshape(T, heads * d)
    return att, np.concatenate([rows[..., d:].reshape(-1), tail])


def out_beats(cfg: SdsaConfig, *, T: int, N: int, heads: int, head_dim: int) -> int:
    return T * -(-_blocks_per_timestep(cfg, N=N, heads=heads, head_dim=head_dim) // cfg.out_blocks)


def output_beat(cfg: SdsaConfig, *, t: int, n: int, h: int, j: int, N: int, heads: int, head_dim: int) -> int:
    """Index of the output beat that carries ``A[h*d + j(, n)]`` of timestep ``t``."""
    nb = -(-head_dim // cfg.lanes)
    per_t = _blocks_per_timestep(cfg, N=N, heads=heads, head_dim=head_dim)
    block = ((n * heads + h) * nb if cfg.attention_matrix else h * nb) + j // cfg.lanes
    return t * -(-per_t // cfg.out_blocks) + block // cfg.out_blocks


def cycle_model(cfg: SdsaConfig, q, k, *, heads: int, head_dim: int) -> dict:
    """What the unit must report for spikes ``q, k`` ``[T, C, N]`` (docs/sdsa.md, "Cycles"):
    ``additions``, ``in_beats``, ``out_beats``, and ``cycles`` with the input always valid and
    the output always ready. Also ``dense_cycles``: the same layer scanned densely (every
    channel of every token, spike or not) on the same lanes; and ``io_bound``: a lower bound for
    any unit with this interface (one input beat, ``lanes`` additions and one output beat of
    ``out_blocks * lanes`` values per cycle, A only after the last K^T V addition of the
    timestep), per timestep ``max(N, ceil(adds_KV / L)) + max(out beats, ceil(adds_A / L))``
    (SDSA-1/2: ``max(N, ceil(adds / L)) + out beats``)."""
    q = np.asarray(q, dtype=np.int64)
    T, C, N = _check_geometry(cfg, q, heads, head_dim)
    L, P, d = cfg.lanes, cfg.out_blocks, head_dim
    nb = -(-d // L)
    if cfg.attention_matrix:
        k = np.asarray(k, dtype=np.int64).reshape(T, heads, d, N)
        qh = q.reshape(T, heads, d, N)
        touched = k.any(axis=3, keepdims=True)                   # K^T V row not all zero
        k_per_token = k.sum(axis=(1, 2))                         # [T, N]
        q_live = (qh * touched).sum(axis=2)                      # [T, heads, N]
        adds_kv, adds_a = d * k.sum(axis=(1, 2, 3)), d * q_live.sum(axis=(1, 2))   # per timestep
        additions = int(adds_kv.sum() + adds_a.sum())
        # A head with no live Q spike costs one zero operation per output beat its blocks touch.
        first = (np.arange(N)[:, None] * heads + np.arange(heads)[None, :]) * nb      # [N, heads]
        zero_ops = (first + nb - 1) // P - first // P + 1
        a_cycles = np.where(q_live > 0, nb * q_live, zero_ops.T[None])
        cycles = int(np.maximum(1, k_per_token * nb).sum() + a_cycles.sum())
        in_beats = 2 * N * T
        dense = T * 2 * N * heads * d * nb
        beats_t = -(-N * heads * nb // P)
        io_bound = int((np.maximum(N, -(-adds_kv // L)) + np.maximum(beats_t, -(-adds_a // L))).sum())
    else:
        s = q if cfg.variant == 2 else q * np.asarray(k, dtype=np.int64)
        s = s.reshape(T, heads, d, N)
        pad = np.zeros((T, heads, nb * L - d, N), dtype=np.int64)
        blocks = np.concatenate([s, pad], axis=2).reshape(T, heads, nb, L, N).any(axis=3)  # [T, h, nb, N]
        lanes_real = np.minimum(L, d - L * np.arange(nb))
        adds = (blocks * lanes_real[None, None, :, None]).sum(axis=(1, 2, 3))           # per timestep
        additions = int(adds.sum())
        cycles = int(np.maximum(1, blocks.sum(axis=(1, 2))).sum()) + T * heads * nb
        in_beats = N * T
        dense = T * (N + 1) * heads * nb
        io_bound = int((np.maximum(N, -(-adds // L)) + -(-heads * nb // P)).sum())
    return {
        "additions": additions,
        "in_beats": in_beats,
        "out_beats": out_beats(cfg, T=T, N=N, heads=heads, head_dim=head_dim),
        "cycles": cycles + PIPELINE_CYCLES,
        "dense_cycles": dense + PIPELINE_CYCLES,
        "io_bound": io_bound,
    }


# ---- cocotb side ----------------------------------------------------------------------------

@dataclass
class SdsaResult:
    att: np.ndarray          # [T, C, N] (SDSA-3/4) or [T, C] (SDSA-1/2), int64
    padding: np.ndarray      # values of the padding lanes (must be 0)
    stamps: np.ndarray       # [out beats] harness cycle at which each output beat was taken
    cycles: int              # harness: go .. done
    perf: dict               # the unit's counters, by name (PERF_COUNTERS)


class SdsaHarness(FileHarness):
    """cocotb-side driver of ``sdsa_harness``: one :meth:`run` per image (T timesteps)."""

    def __init__(self, dut, cfg: SdsaConfig | None = None, workdir: Path | None = None):
        super().__init__(dut, workdir)
        self.cfg = cfg or SdsaConfig.from_dict(self.plan["config"], "test plan")

    async def run(self, q, k, v, *, heads: int, head_dim: int, seed: int = 1, in_idle: int = 0,
                  out_stall: int = 0, junk_seed: int | None = None,
                  timeout_cycles: int | None = None) -> SdsaResult:
        """Run one image: spikes ``q, k, v`` ``[T, C, N]``, ``C = heads * head_dim``.
        ``in_idle`` / ``out_stall`` are probabilities in 1/256 of an idle input cycle / a
        stalled output cycle; ``junk_seed`` fills every ignored input bit with random bits."""
        cfg, dut = self.cfg, self.dut
        q = np.asarray(q)
        T, C, N = q.shape
        beats = pack_beats(cfg, q, k, v, heads=heads, head_dim=head_dim, junk_seed=junk_seed)
        n_out = out_beats(cfg, T=T, N=N, heads=heads, head_dim=head_dim)
        if len(beats) > HARNESS_DEPTH or n_out > HARNESS_DEPTH:
            raise ValueError(f"{len(beats)} input / {n_out} output beats exceed the harness depth {HARNESS_DEPTH}")
        lanes, aw = cfg.out_lanes, cfg.acc_width
        work = -(-head_dim // cfg.lanes) * q.size * 2 + len(beats) + n_out
        status, bits = await self.exchange(
            inputs={"sdsa_stim.hex": beats},
            ports=dict(tokens=N, heads=heads, head_dim=head_dim, timesteps=T, in_total=len(beats),
                       seed=seed & 0xFFFFFFFF, in_idle=in_idle, out_stall=out_stall),
            status=("outputs", "inputs", "cycles", *(f"perf_{name}" for name in PERF_COUNTERS)),
            result="sdsa_res.hex", result_bits=lanes * aw + 32, limit_cycles=timeout_cycles or (work * 64 + 1000),
            progress=lambda: f"{int(dut.inputs.value)} of {len(beats)} beats in, {int(dut.outputs.value)} of {n_out} out")
        got_out, got_in = status["outputs"], status["inputs"]
        if got_out != n_out or got_in != len(beats):
            raise AssertionError(f"unit took {got_in} beats (expected {len(beats)}) and emitted {got_out} "
                                 f"(expected {n_out})")
        perf = {name: status[f"perf_{name}"] for name in PERF_COUNTERS}
        cycles = status["cycles"]
        values = unpack_fields(bits, lanes, aw, signed=False)
        stamps = unpack_fields(bits, 1, 32, signed=False, offset=lanes * aw).reshape(-1)
        att, padding = unpack_outputs(cfg, values, T=T, N=N, heads=heads, head_dim=head_dim)
        return SdsaResult(att=att, padding=padding, stamps=stamps, cycles=cycles, perf=perf)
