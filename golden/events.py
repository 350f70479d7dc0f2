"""Event-camera input: the digits seen by a simulated event camera that moves (a seeded simulator).

The paper also evaluates event-camera data (HAR-DVS), where the network's input is already spikes.
No event data set can be downloaded here, so this module makes one from the bundled digits
(:mod:`golden.digits`) the way N-MNIST was recorded: an event camera looks at a still image and
the camera moves (N-MNIST: three saccades along a triangle), so every edge of the image sweeps
over pixels and changes their brightness.

**The scene.** Digit ``p`` (levels 0..16, nearest-upsampled to ``size``, the digits model's input)
is the intensity ``I = p / 16`` in ``[0, 1]``, piecewise constant over the pixel squares, zero
outside the image.

**The motion** (:meth:`EventCamera.trajectory`): the camera travels a closed triangle, N-MNIST's
three saccades, from and back to its rest position: vertices ``0, a * u(phi), a * u(phi + 120 deg)``
(``u`` the unit vector), with per recording a random rotation ``phi`` (uniform) and side scale
``a = amplitude * s``, ``s`` uniform in ``[1 - jitter, 1 + jitter]``. The path is sampled at
``T * substeps + 1`` equally spaced points by arc length; point ``k`` is at time
``k * frame_us / substeps`` (microseconds). A shift ``(dy, dx)`` moves the scene by that many
pixels on the sensor.

**The pixels** (:func:`render`): a sensor pixel integrates the light over its square, so the
intensity it sees at a sub-pixel shift is the area-weighted mean of the (up to) four image pixels
under it: bilinear interpolation of ``I``, which is exact for a piecewise-constant image.

**The events** (the standard DVS model, as in ESIM / v2e): each pixel keeps a reference
log-intensity ``L_ref``, set to ``L = log(floor + I)`` at time 0 (``floor``: the sensor's dark
level, which keeps the log finite). At each later sample ``k``, while ``L - L_ref >= C`` the pixel
emits an ON event and raises ``L_ref`` by ``C``; while ``L - L_ref <= -C`` an OFF event, lowering
it by ``C``. ``C`` is the contrast threshold, the same for ON and OFF (so a pixel's events at one
sample are ``floor(|L - L_ref| / C)`` of the sign of the change); with ``threshold_sigma > 0``
each pixel gets its own ``C`` (``C * (1 + sigma * N(0, 1))``, clipped to ``[C/2, 2C]``, drawn once
per recording: fixed-pattern mismatch). There is no background noise: without motion there are no
events at all. An event is ``(x, y, t, p)`` with ``p = 1`` ON and ``p = 0`` OFF, stored as a
structured array in tonic's layout (:data:`EVENT_DTYPE`, fields ``x, y, t, p``), so
``tonic.transforms`` can take the streams as they are.

**The frames** (:func:`to_frames`): the recording is cut into ``T`` equal time windows (frame
``t`` holds the events of samples ``t * substeps + 1 .. (t + 1) * substeps``) and each becomes
two polarity channels (channel 0 OFF, channel 1 ON: tonic's ``ToFrame`` channel order),
**binary**: a pixel is 1 in a channel when at least one event of that polarity fell into the
window. Binary, not counts, because a 0/1 input keeps the encoding layer spike-driven: every input
spike adds one weight column (an addition, counted as such), where a count would be a
multi-bit input (bit planes, or a multiply). What clipping discards is small and measured:
:func:`frame_statistics` reports the share of (pixel, window, polarity) cells with more than
one event (docs/events.md gives the figure for the default camera).

The frames are ``uint8`` ``[N, T, 2, size, size]`` (batch first, like a data-set file); the model
and the integer engine take them time first, ``[T, B, 2, H, W]``.

**The split** (:func:`load_event_split`) is the digits' own (:func:`golden.digits.load_digits_split`,
fixed and stratified), each recording's motion and threshold mismatch drawn from
``numpy.random.default_rng([seed, part])`` (part 0 training, 1 test) in split order: the same
arguments give the same frames run after run (numpy's generators are reproducible across
platforms; ``log`` and ``sin`` come from numpy's own kernels, which another numpy build or CPU may
round differently in the last bit, moving an event only where a change lies within that bit of a
threshold crossing).
Training draws a new motion every epoch (another ``seed``); the test split keeps ``seed`` 0.

Why not tonic: tonic 1.7 installs beside torch 2.13.0 without moving it, but brings about twenty
packages (librosa, numba, llvmlite, h5py, soundfile ...) for what is here fifteen lines of numpy;
the event streams use its array layout, so it can be used on them directly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["EVENT_DTYPE", "EventCamera", "render", "simulate_counts", "simulate_events", "to_frames",
           "event_frames", "frame_statistics", "load_event_split", "POLARITIES"]

#: one event, tonic's layout for DVS cameras (``tonic.io.make_structured_array``): column, row,
#: time in microseconds, polarity (1 ON, 0 OFF)
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
#: frame channel c holds the events of polarity c
POLARITIES = ("off", "on")


@dataclass(frozen=True)
class EventCamera:
    """The simulated camera and its motion (see the module docstring).

    Attributes:
        contrast: log-intensity contrast threshold ``C`` (ON and OFF alike).
        floor: dark level added before the log: ``L = log(floor + I)``, ``I`` in ``[0, 1]``.
        threshold_sigma: per-pixel threshold mismatch (relative standard deviation; 0: none).
        amplitude: side of the motion triangle in pixels of the ``size`` grid.
        jitter: the side is scaled by a uniform factor in ``[1 - jitter, 1 + jitter]`` per recording.
        substeps: camera positions per frame window (the time resolution of the events).
        frame_us: duration of one frame window in microseconds (the timestamps' unit).
    """

    contrast: float = 0.3
    floor: float = 0.2
    threshold_sigma: float = 0.05
    amplitude: float = 3.0
    jitter: float = 0.25
    substeps: int = 8
    frame_us: int = 10_000

    def __post_init__(self):
        if not self.contrast > 0:
            raise ValueError(f"contrast must be positive, not {self.contrast}")
        if not self.floor > 0:
            raise ValueError(f"floor must be positive (log(floor + I) at I = 0), not {self.floor}")
        if self.threshold_sigma < 0 or not 0 <= self.jitter < 1:
            raise ValueError(f"threshold_sigma must be >= 0 and jitter in [0, 1), not {self.threshold_sigma}, "
                             f"{self.jitter}")
        if self.substeps < 1 or self.frame_us < self.substeps or self.frame_us % self.substeps:
            raise ValueError(f"substeps must be >= 1 and divide frame_us, not {self.substeps} and {self.frame_us}")

    def as_dict(self) -> dict:
        return asdict(self)

    def trajectory(self, n: int, T: int, rng: np.random.Generator) -> np.ndarray:
        """``[n, T * substeps + 1, 2]`` shifts ``(dy, dx)`` in pixels: for each of ``n``
        recordings a closed triangle (0 -> v1 -> v2 -> 0), rotated and scaled at random, sampled
        equally by arc length (sample 0 and the last are the rest position)."""
        phi = rng.uniform(0.0, 2 * math.pi, n)
        side = self.amplitude * rng.uniform(1 - self.jitter, 1 + self.jitter, n)
        v1 = side[:, None] * np.stack([np.sin(phi), np.cos(phi)], 1)
        v2 = side[:, None] * np.stack([np.sin(phi + 2 * math.pi / 3), np.cos(phi + 2 * math.pi / 3)], 1)
        vertices = np.stack([np.zeros_like(v1), v1, v2, np.zeros_like(v1)], 1)     # [n, 4, 2]: equilateral
        s = np.linspace(0.0, 3.0, T * self.substeps + 1)                             # arc length in sides
        seg = np.minimum(s.astype(np.int64), 2)
        frac = (s - seg)[None, :, None]
        return vertices[:, seg] * (1 - frac) + vertices[:, seg + 1] * frac

    def thresholds(self, n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """``[n, H, W]`` contrast threshold of every pixel of ``n`` recordings."""
        if self.threshold_sigma == 0:
            return np.full((n, *shape), self.contrast)
        c = self.contrast * (1 + self.threshold_sigma * rng.standard_normal((n, *shape)))
        return np.clip(c, self.contrast / 2, 2 * self.contrast)


def render(intensity: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """What the sensor sees of ``intensity`` ``[n, H, W]`` moved by ``shift`` ``[n, 2]`` = ``(dy, dx)``
    pixels: pixel ``(y, x)`` integrates the scene over its square, i.e. the bilinear interpolation
    of the image's pixel values at ``(y - dy, x - dx)``, zero outside it (float64 ``[n, H, W]``).

    With ``dy = iy + fy`` (``iy`` whole, ``0 <= fy < 1``) the moved image row ``y - iy`` covers
    ``1 - fy`` of sensor row ``y`` and row ``y - iy - 1`` covers ``fy`` of it; the same along x.
    Computed as two one-dimensional interpolations of whole rows (gathers, no per-pixel indexing)."""
    n, h, w = intensity.shape
    shift = np.asarray(shift, dtype=np.float64)
    m = int(np.ceil(np.abs(shift).max())) + 1 if shift.size else 1
    padded = np.pad(np.asarray(intensity, dtype=np.float64), ((0, 0), (m, m), (m, m)))
    b = np.arange(n)[:, None]

    def along_rows(img: np.ndarray, d: np.ndarray, size: int) -> np.ndarray:
        i = np.floor(d).astype(np.int64)
        f = (d - i)[:, None, None]
        rows = np.arange(size)[None, :] - i[:, None] + m          # [n, size]: padded row of y - i
        return (1 - f) * img[b, rows] + f * img[b, rows - 1]

    ys = along_rows(padded, shift[:, 0], h)                          # [n, H, W + 2m]
    xs = along_rows(np.ascontiguousarray(ys.transpose(0, 2, 1)), shift[:, 1], w)   # [n, W, H]
    return np.ascontiguousarray(xs.transpose(0, 2, 1))


def _samples(intensity: np.ndarray, T: int, camera: EventCamera, rng: np.random.Generator,
             trajectory: np.ndarray | None):
    """Yield ``(k, on, off)`` for the camera positions ``k = 1 .. T * substeps``: the ON and OFF
    events of every pixel at that sample (float64 ``[n, H, W]`` holding integers)."""
    n, h, w = intensity.shape
    K = T * camera.substeps
    path = camera.trajectory(n, T, rng) if trajectory is None else np.asarray(trajectory, dtype=np.float64)
    if path.shape != (n, K + 1, 2):
        raise ValueError(f"trajectory must be [{n}, {K + 1}, 2], not {list(path.shape)}")
    c = camera.thresholds(n, (h, w), rng)
    ref = np.log(camera.floor + render(intensity, path[:, 0]))
    for k in range(1, K + 1):
        d = np.log(camera.floor + render(intensity, path[:, k])) - ref
        up = np.floor(np.maximum(d, 0.0) / c)           # crossings of the reference by C, either way
        down = np.floor(np.maximum(-d, 0.0) / c)
        ref = ref + (up - down) * c
        yield k, up, down


def simulate_counts(intensity: np.ndarray, T: int, camera: EventCamera, rng: np.random.Generator,
                    trajectory: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ON and OFF event counts per sample: ``(on, off)``, each int32 ``[n, T * substeps, H, W]``
    (sample ``k`` of the array is camera position ``k + 1``; position 0 sets the references).

    ``intensity``: ``[n, H, W]`` in ``[0, 1]``. ``trajectory``: ``[n, T * substeps + 1, 2]``
    shifts, default :meth:`EventCamera.trajectory` drawn from ``rng``; the per-pixel thresholds
    are drawn after it."""
    n, h, w = intensity.shape
    on = np.zeros((n, T * camera.substeps, h, w), dtype=np.int32)
    off = np.zeros_like(on)
    for k, up, down in _samples(intensity, T, camera, rng, trajectory):
        on[:, k - 1], off[:, k - 1] = up, down
    return on, off


def simulate_events(intensity: np.ndarray, T: int, camera: EventCamera, rng: np.random.Generator,
                    trajectory: np.ndarray | None = None) -> list[np.ndarray]:
    """One event stream per image (:data:`EVENT_DTYPE`, sorted by time, then row, column,
    polarity); the events of one sample share its timestamp ``k * frame_us / substeps``."""
    on, off = simulate_counts(intensity, T, camera, rng, trajectory)
    dt = camera.frame_us // camera.substeps
    streams = []
    for i in range(len(intensity)):
        parts = []
        for polarity, counts in ((0, off[i]), (1, on[i])):
            k, y, x = np.nonzero(counts)
            reps = counts[k, y, x]
            ev = np.zeros(int(reps.sum()), dtype=EVENT_DTYPE)
            ev["x"], ev["y"] = np.repeat(x, reps), np.repeat(y, reps)
            ev["t"], ev["p"] = np.repeat((k + 1) * dt, reps), polarity
            parts.append(ev)
        ev = np.concatenate(parts)
        streams.append(ev[np.lexsort((ev["p"], ev["x"], ev["y"], ev["t"]))])
    return streams


def to_frames(events: np.ndarray, T: int, size: tuple[int, int], camera: EventCamera) -> np.ndarray:
    """One stream -> binary frames ``uint8 [T, 2, H, W]``: frame ``t`` holds the events with
    ``t * frame_us < time <= (t + 1) * frame_us`` (every timestamp is a sample ``k >= 1``), channel
    = polarity (0 OFF, 1 ON), 1 where at least one event fell."""
    frames = np.zeros((T, 2, *size), dtype=np.uint8)
    t = (events["t"] - 1) // camera.frame_us
    if events.size and not (0 <= t.min() and t.max() < T):
        raise ValueError(f"event times {int(events['t'].min())}..{int(events['t'].max())} us fall outside "
                         f"{T} frames of {camera.frame_us} us")
    frames[t, events["p"].astype(np.int64), events["y"], events["x"]] = 1
    return frames


def event_frames(intensity: np.ndarray, T: int, camera: EventCamera, rng: np.random.Generator,
                 trajectory: np.ndarray | None = None) -> np.ndarray:
    """The binary frames ``uint8 [n, T, 2, H, W]`` of ``intensity`` ``[n, H, W]``, straight from the
    samples (equal to :func:`to_frames` of :func:`simulate_events`, without the event lists)."""
    n, h, w = intensity.shape
    frames = np.zeros((n, T, 2, h, w), dtype=np.uint8)
    for k, up, down in _samples(intensity, T, camera, rng, trajectory):
        t = (k - 1) // camera.substeps
        frames[:, t, 0] |= down > 0
        frames[:, t, 1] |= up > 0
    return frames


def frame_statistics(intensity: np.ndarray, T: int, camera: EventCamera, rng: np.random.Generator) -> dict:
    """Events per recording, the share of ON events, the firing rate of the binary frames and the
    share of non-zero (pixel, window, polarity) cells that held more than one event (what binary
    frames clip)."""
    n, h, w = intensity.shape
    cells = np.zeros((n, T, 2, h, w))
    for k, up, down in _samples(intensity, T, camera, rng, None):
        t = (k - 1) // camera.substeps
        cells[:, t, 0] += down
        cells[:, t, 1] += up
    nonzero = cells > 0
    return {"events_per_recording": float(cells.sum() / n),
            "on_share": float(cells[:, :, 1].sum() / max(1.0, cells.sum())),
            "frame_rate": float(nonzero.mean()),
            "clipped_share": float((cells > 1).sum() / max(1, nonzero.sum()))}


def load_event_split(T: int, *, size: int = 32, seed: int = 0, split_seed: int = 0, test_fraction: float = 0.25,
                     camera: EventCamera | None = None, parts: tuple[str, ...] = ("train", "test")
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digits split (:func:`golden.digits.load_digits_split` with ``split_seed`` and
    ``test_fraction``) as event frames: ``{part: (frames uint8 [N, T, 2, size, size], labels
    int64 [N])}`` for the requested ``parts``; part ``train`` draws its motions from
    ``default_rng([seed, 0])``, ``test`` from ``default_rng([seed, 1])``."""
    from golden.digits import PIXEL_LEVELS, load_digits_split

    camera = camera or EventCamera()
    x_train, y_train, x_test, y_test = load_digits_split(size=size, seed=split_seed, test_fraction=test_fraction)
    data = {"train": (x_train, y_train), "test": (x_test, y_test)}
    out = {}
    for part in parts:
        if part not in data:
            raise ValueError(f"part must be 'train' or 'test', not {part!r}")
        x, y = data[part]
        levels = np.rint(x[:, 0].numpy() * PIXEL_LEVELS)          # the pixel integers 0..16, exact
        rng = np.random.default_rng([seed, ("train", "test").index(part)])
        out[part] = (event_frames(levels / PIXEL_LEVELS, T, camera, rng), y.numpy().astype(np.int64))
    return out
