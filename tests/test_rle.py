import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from utils import rle


def test_hand_computed_example():
    # 3 rows x 4 columns; column-major numbering: column 0 holds pixels 0,1,2; column 1 holds 3,4,5; ...
    mask = np.array(
        [[0, 1, 0, 0],
         [1, 1, 0, 1],
         [1, 0, 0, 1]],
        dtype=np.uint8,
    )
    # foreground pixels 1,2,3,4 then 10,11 -> runs (1, 4) and (10, 2); second start relative to 5 -> 5
    assert rle.encode(mask) == "1 4 5 2"
    assert np.array_equal(rle.decode("1 4 5 2", (3, 4)), mask)


def test_run_starting_at_pixel_zero_and_ending_at_the_last_pixel():
    mask = np.zeros((4, 5), np.uint8)
    mask[:2, 0] = 1  # pixels 0, 1
    mask[2:, 4] = 1  # pixels 18, 19: the last two
    assert rle.encode(mask) == "0 2 16 2"
    assert np.array_equal(rle.decode("0 2 16 2", (4, 5)), mask)


def test_full_and_empty_masks():
    assert rle.encode(np.ones((7, 3))) == "0 21"
    assert rle.decode("0 21", (7, 3)).all()
    assert rle.encode(np.zeros((7, 3))) == "-1"
    for empty in ("-1", " -1", ""):
        decoded = rle.decode(empty, (7, 3))
        assert decoded.dtype == np.uint8 and decoded.shape == (7, 3) and not decoded.any()


def test_union_of_several_rows():
    shape = (6, 6)
    first, second = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    first[1:3, 1:3], second[2:5, 2:5] = 1, 1
    union = rle.decode_union([rle.encode(first), rle.encode(second), "-1"], shape)
    assert np.array_equal(union, first | second)
    assert not rle.decode_union([], shape).any()


@pytest.mark.parametrize(
    "bad, message",
    [("1 2 3", "pairs"), ("1 x", "'x'"), ("1 -2", "'-2'"), ("4 0", "length 0"), ("1.5 2", "'1.5'"), ("18 3", "past")],
)
def test_malformed_strings_raise_and_quote_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        rle.decode(bad, (4, 5))


def test_non_string_is_rejected():
    with pytest.raises(ValueError, match="string"):
        rle.decode(None, (2, 2))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
                  elements=st.integers(0, 1)))
def test_round_trip_mask_to_string_to_mask(mask):
    encoded = rle.encode(mask)
    assert np.array_equal(rle.decode(encoded, mask.shape), mask)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 30)), max_size=10))
def test_round_trip_string_to_mask_to_string(pairs):
    # Canonical strings: every start after the first is >= 1 (a 0 would merge two runs into one).
    pairs = [(s if i == 0 else max(s, 1), n) for i, (s, n) in enumerate(pairs)]
    text = " ".join(f"{s} {n}" for s, n in pairs) or "-1"
    total = sum(s + n for s, n in pairs)
    shape = (max(total, 1), 1) if total < 50 else (total // 10 + 1, 10)
    assert rle.encode(rle.decode(text, shape)) == text


def test_matches_the_competitions_reference_loop():
    """The loop from the competition's mask_functions.py, transposed into rows x columns, agrees."""
    def reference(text, width, height):
        mask = np.zeros(width * height)
        array = np.asarray([int(x) for x in text.split()])
        position = 0
        for start, length in zip(array[0::2], array[1::2]):
            position += start
            mask[position:position + length] = 1
            position += length
        return mask.reshape(width, height).T

    rng = np.random.default_rng(0)
    mask = (rng.random((32, 48)) > 0.7).astype(np.uint8)
    assert np.array_equal(reference(rle.encode(mask), 48, 32), mask)
