"""The event-camera simulator (golden.events): seeded, its events worked out by hand on small
scenes, and its framing.

The expected event counts are computed here from the DVS model's definition (docs/events.md):
a pixel whose intensity goes from ``a`` to ``b`` emits ``floor(|log(floor + b) - log(floor + a)| / C)``
events of the sign of the change, with ``floor = 0.2`` and ``C = 0.3`` (the defaults; no
threshold mismatch here).
"""
import math

import numpy as np
import pytest

from golden.events import (
    EVENT_DTYPE,
    EventCamera,
    event_frames,
    frame_statistics,
    load_event_split,
    render,
    simulate_counts,
    simulate_events,
    to_frames,
)

CAMERA = EventCamera(threshold_sigma=0.0, substeps=2, frame_us=1000)


def crossings(a: float, b: float, floor: float = 0.2, c: float = 0.3) -> int:
    return math.floor(abs(math.log(floor + b) - math.log(floor + a)) / c + 1e-12)


def bar_scene():
    """One bright column (x = 3) on a dark 6 x 8 image."""
    img = np.zeros((1, 6, 8))
    img[0, :, 3] = 1.0
    return img


def test_a_bar_moved_right_by_one_pixel_fires_on_ahead_and_off_behind():
    # T = 1, two samples: rest, then the scene half a pixel right, then a whole pixel right
    path = np.array([[[0.0, 0.0], [0.0, 0.5], [0.0, 1.0]]])
    on, off = simulate_counts(bar_scene(), 1, CAMERA, np.random.default_rng(0), trajectory=path)
    assert on.shape == off.shape == (1, 2, 6, 8)
    half, whole = crossings(0.0, 0.5), crossings(0.0, 1.0)      # 4 and 5 events
    assert (half, whole) == (4, 5)
    # sample 1 (half a pixel): column 4 lit to 0.5 (ON), column 3 dimmed to 0.5 (OFF)
    assert (on[0, 0, :, 4] == half).all() and (off[0, 0, :, 3] == crossings(1.0, 0.5)).all()
    # sample 2: column 4 from 0.5 to 1 (the reference is at log(0.2) + 4 C, not at log(0.7))
    ref = math.log(0.2) + half * 0.3
    expect_on = math.floor((math.log(1.2) - ref) / 0.3 + 1e-12)
    assert (on[0, 1, :, 4] == expect_on).all()
    assert half + expect_on == whole                             # no event is lost over the two steps
    # nothing anywhere else, no OFF where the scene brightened and no ON where it darkened
    mask = np.zeros((6, 8), bool)
    mask[:, 4] = True
    assert on[0][:, ~mask].sum() == 0
    mask[:] = False
    mask[:, 3] = True
    assert off[0][:, ~mask].sum() == 0


def test_no_motion_no_events_and_render_is_exact_at_whole_shifts():
    still = np.zeros((1, 5, 2))
    on, off = simulate_counts(bar_scene(), 2, CAMERA, np.random.default_rng(0), trajectory=still)
    assert on.sum() == 0 and off.sum() == 0
    img = np.random.default_rng(1).random((2, 5, 7))
    moved = render(img, np.array([[1.0, 2.0], [-2.0, 0.0]]))
    assert np.array_equal(moved[0, 1:, 2:], img[0, :-1, :-2]) and (moved[0, 0] == 0).all()
    assert np.array_equal(moved[1, :-2], img[1, 2:]) and (moved[1, -2:] == 0).all()


def test_events_are_in_tonic_layout_and_framed_by_window_and_polarity():
    assert EVENT_DTYPE.names == ("x", "y", "t", "p")
    ev = np.zeros(5, dtype=EVENT_DTYPE)
    # (x, y, t, p): the window boundary t = 1000 us belongs to frame 0, t = 1001 to frame 1
    for i, e in enumerate([(1, 2, 1000, 1), (1, 2, 1000, 1), (1, 2, 1001, 0), (0, 0, 2000, 0), (3, 1, 1, 1)]):
        ev[i] = e
    frames = to_frames(ev, 2, (3, 4), CAMERA)
    want = np.zeros((2, 2, 3, 4), np.uint8)
    want[0, 1, 2, 1] = 1      # two ON events in one cell: binary
    want[1, 0, 2, 1] = 1
    want[1, 0, 0, 0] = 1
    want[0, 1, 1, 3] = 1
    assert np.array_equal(frames, want)
    late = ev.copy()
    late[0]["t"] = 2001
    with pytest.raises(ValueError, match="outside 2 frames"):
        to_frames(late, 2, (3, 4), CAMERA)


def test_streams_frame_to_the_direct_frames_and_the_split_is_seeded():
    img = np.random.default_rng(2).random((3, 8, 8))
    cam = EventCamera(substeps=4, frame_us=400)
    streams = simulate_events(img, 2, cam, np.random.default_rng(7))
    assert all(np.all(np.diff(s["t"]) >= 0) for s in streams)
    framed = np.stack([to_frames(s, 2, (8, 8), cam) for s in streams])
    assert np.array_equal(framed, event_frames(img, 2, cam, np.random.default_rng(7)))
    assert not np.array_equal(framed, event_frames(img, 2, cam, np.random.default_rng(8)))
    stats = frame_statistics(img, 2, cam, np.random.default_rng(7))
    assert stats["events_per_recording"] == sum(len(s) for s in streams) / 3
    a = load_event_split(1, parts=("test",))["test"]
    b = load_event_split(1, parts=("test",))["test"]
    c = load_event_split(1, seed=1, parts=("test",))["test"]
    assert a[0].shape == (450, 1, 2, 32, 32) and a[0].dtype == np.uint8 and set(np.unique(a[0])) == {0, 1}
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])
