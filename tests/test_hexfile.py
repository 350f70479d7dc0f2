"""Hex file packing round-trips, including two's complement and widths off byte boundaries."""
import numpy as np
import pytest

from hwgen.hexfile import (
    pack_bits,
    read_words,
    unpack_fields,
    write_lanes,
    write_values,
    write_words,
)


@pytest.mark.parametrize("lanes, width", [(1, 1), (3, 7), (4, 12), (16, 28), (2, 62)])
def test_round_trip(tmp_path, lanes, width):
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    vals = rng.integers(lo, hi, size=(50, lanes), endpoint=True)
    vals[0] = lo
    vals[1] = hi
    write_words(tmp_path / "x.hex", pack_bits(vals, width))
    back = unpack_fields(read_words(tmp_path / "x.hex", lanes * width), lanes, width, signed=True)
    assert np.array_equal(back, vals)


def test_layout_is_lane_zero_lsb(tmp_path):
    write_words(tmp_path / "x.hex", pack_bits(np.array([[1, -1, 2]]), 4))
    assert (tmp_path / "x.hex").read_text() == "2f1\n"


def test_write_values_matches_packed_words(tmp_path):
    vals = np.array([0, 1, -1, 127, -128, 5, -7])
    write_values(tmp_path / "a.hex", vals, 8)
    write_words(tmp_path / "b.hex", pack_bits(vals[:, None], 8))
    assert (tmp_path / "a.hex").read_text() == (tmp_path / "b.hex").read_text()
    assert (tmp_path / "a.hex").read_text().splitlines()[:5] == ["00", "01", "ff", "7f", "80"]


def test_write_lanes_in_chunks_matches_one_piece(tmp_path):
    vals = np.random.default_rng(1).integers(-100, 100, size=(37, 3))
    write_lanes(tmp_path / "a.hex", vals, 9, chunk=5)
    write_words(tmp_path / "b.hex", pack_bits(vals, 9))
    assert (tmp_path / "a.hex").read_text() == (tmp_path / "b.hex").read_text()
