"""Binned spike counts: construction, validation messages, selection, splitting."""

import numpy as np
import pytest
import quantities as pq
import torch

from spikeglm.counts import SpikeCounts
from spikeglm.recording import Recording


def random_array(shape=(6, 20, 3), seed=0, high=4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=shape)


def test_from_array_3d():
    array = random_array()
    counts = SpikeCounts.from_array(array, bin_size="5 ms")
    assert (counts.n_trials, counts.n_bins, counts.n_units) == (6, 20, 3)
    assert len(counts) == 6
    np.testing.assert_array_equal(counts.counts, array)
    assert counts.unit_ids.tolist() == ["0", "1", "2"]
    assert counts.bin_size.dimensionality.string == "ms" and float(counts.bin_size) == 5.0
    assert float(counts.trial_duration.rescale(pq.ms)) == pytest.approx(100.0)
    assert float(counts.duration.rescale(pq.s)) == pytest.approx(0.6)
    assert counts.metadata == {}


@pytest.mark.parametrize(
    ("bin_size", "text", "width"), [("5 ms", "5.0 ms", 0.005), ("0.9 ms", "0.9 ms", 0.0009)]
)
def test_bin_size_keeps_its_unit_and_bin_seconds_is_in_seconds(bin_size, text, width):
    counts = SpikeCounts.from_array(random_array(), bin_size=bin_size)
    assert str(counts.bin_size) == text  # model files store this string
    assert counts.bin_seconds == pytest.approx(width, rel=1e-15)
    assert counts.select_trials([0]).bin_seconds == counts.bin_seconds


def test_from_array_2d_is_one_trial():
    array = random_array(shape=(20, 3))
    counts = SpikeCounts.from_array(array, bin_size="1 ms", unit_ids=["a", "b", "c"])
    assert counts.counts.shape == (1, 20, 3)
    np.testing.assert_array_equal(counts.counts[0], array)
    assert counts.unit_ids.tolist() == ["a", "b", "c"]


def test_from_tensor():
    tensor = torch.tensor(random_array(), dtype=torch.float32, requires_grad=True)
    counts = SpikeCounts.from_array(tensor)
    np.testing.assert_array_equal(counts.counts, random_array())
    round_trip = counts.to_tensor()
    assert round_trip.dtype == torch.float32
    torch.testing.assert_close(round_trip, tensor.detach())
    assert counts.to_tensor(torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    ("largest", "dtype"),
    [(0, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16), (65536, np.uint32)],
)
def test_dtype_compaction(largest, dtype):
    array = np.zeros((2, 3, 2), dtype=np.float64)
    array[1, 2, 1] = largest
    counts = SpikeCounts.from_array(array)
    assert counts.counts.dtype == dtype
    assert counts.counts.max() == largest


def test_counts_are_read_only():
    counts = SpikeCounts.from_array(random_array())
    with pytest.raises(ValueError, match="read-only"):
        counts.counts[0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        counts.unit_ids[0] = "x"


def test_non_string_unit_ids_become_strings():
    counts = SpikeCounts.from_array(random_array(shape=(4, 2)), unit_ids=[7, 12])
    assert counts.unit_ids.tolist() == ["7", "12"]


def with_value(value, where=(0, 12, 2), shape=(2, 20, 3)) -> np.ndarray:
    array = np.zeros(shape)
    array[where] = value
    return array


@pytest.mark.parametrize(
    ("array", "unit_ids", "message"),
    [
        (
            with_value(-1.0) + with_value(-2.0, where=(1, 3, 0)) + with_value(-1, where=(1, 5, 0)),
            ["n0", "n1", "n2"],
            "counts: 3 negative value(s), first at trial 0, bin 12, unit 'n2' (value -1.0)",
        ),
        (
            with_value(-3, where=(1, 4, 1)).astype(np.int16),
            None,
            "counts: 1 negative value(s), first at trial 1, bin 4, unit '1' (value -3)",
        ),
        (
            with_value(0.5),
            None,
            "counts: 1 non-integer value(s), first at trial 0, bin 12, unit '2' (value 0.5)",
        ),
        (with_value(np.nan), None, "counts: 1 NaN or infinite value(s), first at trial 0, bin 12, unit '2'"),
        (
            with_value(np.inf, where=(1, 0, 0)),
            None,
            "counts: 1 NaN or infinite value(s), first at trial 1, bin 0",
        ),
        (
            np.zeros((2, 3, 4, 5)),
            None,
            "counts: expected a 3-D (trials, bins, units) or 2-D (bins, units) array",
        ),
        (np.zeros(5), None, "got shape (5,)"),
        (np.zeros((2, 5, 0)), None, "counts: no units (shape (2, 5, 0))"),
        (np.zeros((2, 0, 3)), None, "counts: no bins (shape (2, 0, 3))"),
        (np.zeros((0, 5, 3)), None, "counts: no trials (shape (0, 5, 3))"),
        (np.zeros((5, 3)), ["a", "b", "a"], "unit_ids: duplicate id(s) 'a'"),
        (np.zeros((5, 3)), ["a", "b"], "unit_ids: 2 id(s) given for 3 unit(s)"),
        (np.zeros((5, 3)), "abc", "unit_ids: expected one id per unit, got the single string 'abc'"),
        (np.array([["1", "2"]]), None, "counts: expected real numbers; got dtype <U1"),
        (np.full((2, 2), 1e12), None, "counts: the largest value 1000000000000.0 exceeds 4294967295"),
    ],
)
def test_validation_messages(array, unit_ids, message):
    with pytest.raises(ValueError) as error:
        SpikeCounts.from_array(array, unit_ids=unit_ids)
    assert message in str(error.value)


def test_constructor_wants_three_dimensions():
    with pytest.raises(
        ValueError, match=r"counts: expected 3 dimensions \(trials, bins, units\); got shape \(5, 3\)"
    ):
        SpikeCounts(np.zeros((5, 3)), bin_size="5 ms")


def test_bin_size_is_checked():
    with pytest.raises(ValueError, match="bin_size: give a unit"):
        SpikeCounts.from_array(np.zeros((5, 3)), bin_size=5)


def test_bool_counts_are_accepted():
    counts = SpikeCounts.from_array(np.eye(3, dtype=bool))
    assert counts.counts.dtype == np.uint8
    np.testing.assert_array_equal(counts.counts[0], np.eye(3))


def test_select_trials():
    array = random_array()
    counts = SpikeCounts.from_array(array, metadata={"session": "s1"})
    np.testing.assert_array_equal(counts[2].counts, array[2:3])
    np.testing.assert_array_equal(counts[-1].counts, array[-1:])
    np.testing.assert_array_equal(counts[1:4].counts, array[1:4])
    np.testing.assert_array_equal(counts.select_trials([4, 0]).counts, array[[4, 0]])
    mask = np.array([True, False, True, False, False, True])
    np.testing.assert_array_equal(counts[mask].counts, array[mask])
    assert counts[0].metadata == {"session": "s1"}
    with pytest.raises(ValueError, match="no trials"):
        counts[[]]
    with pytest.raises(IndexError):
        counts[6]


def test_select_units():
    array = random_array()
    counts = SpikeCounts.from_array(array, unit_ids=["a", "b", "c"])
    picked = counts.select_units(["c", "a"])
    assert picked.unit_ids.tolist() == ["c", "a"]
    np.testing.assert_array_equal(picked.counts, array[:, :, [2, 0]])
    assert counts.select_units("b").unit_ids.tolist() == ["b"]
    with pytest.raises(ValueError, match="select_units: unknown unit id\\(s\\) 'z'; known: 'a', 'b', 'c'"):
        counts.select_units(["a", "z"])


def test_split_sizes_disjoint_and_complete():
    array = np.arange(60)[:, None, None] * np.ones((1, 4, 2), dtype=int)  # trial k holds the value k
    counts = SpikeCounts.from_array(array)
    train, test = counts.split(test=1 / 3, seed=0)
    assert (train.n_trials, test.n_trials) == (40, 20)
    train_ids, test_ids = train.counts[:, 0, 0].tolist(), test.counts[:, 0, 0].tolist()
    assert set(train_ids).isdisjoint(test_ids)
    assert sorted(train_ids + test_ids) == list(range(60))
    assert train_ids == sorted(train_ids) and test_ids == sorted(test_ids)
    assert test_ids != list(range(40, 60)), "shuffled"


def test_split_is_reproducible():
    counts = SpikeCounts.from_array(np.arange(30)[:, None, None] * np.ones((1, 2, 1), dtype=int))
    first = counts.split(seed=3)[1].counts[:, 0, 0]
    again = counts.split(seed=3)[1].counts[:, 0, 0]
    other = counts.split(seed=4)[1].counts[:, 0, 0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_split_without_shuffle_takes_the_last_trials():
    counts = SpikeCounts.from_array(np.arange(10)[:, None, None] * np.ones((1, 2, 1), dtype=int))
    train, test = counts.split(test=0.3, shuffle=False)
    assert train.counts[:, 0, 0].tolist() == list(range(7))
    assert test.counts[:, 0, 0].tolist() == [7, 8, 9]


@pytest.mark.parametrize(
    ("n_trials", "fraction", "message"),
    [
        (2, 0.1, "split: test=0.1 of 2 trial(s) leaves the test part empty"),
        (2, 0.9, "split: test=0.9 of 2 trial(s) leaves the training part empty"),
        (1, 0.1, "split: test=0.1 of 3 bins leaves the test part empty"),
        (5, 0.0, "split: test must be between 0 and 1; got 0.0"),
        (5, 1.0, "split: test must be between 0 and 1; got 1.0"),
    ],
)
def test_split_errors(n_trials, fraction, message):
    counts = SpikeCounts.from_array(np.zeros((n_trials, 3, 2)))
    with pytest.raises(ValueError) as error:
        counts.split(test=fraction)
    assert message in str(error.value)


def test_one_continuous_trial_is_split_in_time_with_its_clock():
    values = np.arange(1000)[None, :, None] % 3 * np.ones((1, 1, 2), dtype=int)
    counts = SpikeCounts.from_array(values, bin_size="5 ms", metadata={"trial_starts_s": [12.0]})
    train, test = counts.split(test=0.2)
    assert (train.n_trials, train.n_bins, test.n_trials, test.n_bins) == (1, 800, 1, 200)
    np.testing.assert_array_equal(np.concatenate([train.counts, test.counts], axis=1), counts.counts)
    assert train.metadata["trial_starts_s"] == [12.0]
    assert test.metadata["trial_starts_s"] == pytest.approx([16.0])  # 800 bins of 5 ms later
    by_train = counts.split(train=0.75)
    assert (by_train[0].n_bins, by_train[1].n_bins) == (750, 250)
    assert counts.metadata["trial_starts_s"] == [12.0]  # the original is left as it was


def test_split_by_the_training_share_matches_the_test_share():
    counts = SpikeCounts.from_array(np.arange(10)[:, None, None] * np.ones((1, 2, 1), dtype=int))
    by_train, by_test = counts.split(train=0.8, seed=5), counts.split(test=0.2, seed=5)
    assert (by_train[0].n_trials, by_train[1].n_trials) == (8, 2)
    for a, b in zip(by_train, by_test, strict=True):
        np.testing.assert_array_equal(a.counts, b.counts)
    with pytest.raises(
        ValueError, match=r"split: train=0\.05 of 10 trial\(s\) leaves the training part empty"
    ):
        counts.split(train=0.05)
    with pytest.raises(ValueError, match="one part only; got train, test"):
        counts.split(train=0.8, test=0.2)


def test_split_refuses_a_share_not_named():
    counts = SpikeCounts.from_array(np.arange(10)[:, None, None] * np.ones((1, 2, 1), dtype=int))
    with pytest.raises(TypeError, match="positional"):
        counts.split(0.3)  # a bare share could be either part's
    with pytest.raises(TypeError, match="test_fraction"):
        counts.split(test_fraction=0.3)


def test_selected_trials_keep_their_start_times():
    recording = Recording.from_counts(SpikeCounts.from_array(np.ones((4, 10, 1), dtype=int), bin_size="1 ms"))
    counts = recording.bin("1 ms", trial_length="10 ms")
    assert counts.metadata["trial_starts_s"] == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert counts.select_trials([3, 1]).metadata["trial_starts_s"] == pytest.approx([0.03, 0.01])


def test_concatenate():
    a, b = random_array(seed=1), random_array(shape=(2, 20, 3), seed=2)
    first = SpikeCounts.from_array(a, bin_size="5 ms", unit_ids=["x", "y", "z"])
    second = SpikeCounts.from_array(b, bin_size="0.005 s", unit_ids=["x", "y", "z"])
    joined = SpikeCounts.concatenate([first, second])
    np.testing.assert_array_equal(joined.counts, np.concatenate([a, b]))
    assert joined.unit_ids.tolist() == ["x", "y", "z"]
    assert joined.bin_size.dimensionality.string == "ms"
    train, test = joined.split(seed=0)
    assert SpikeCounts.concatenate([train, test]).n_trials == joined.n_trials


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            SpikeCounts.from_array(np.zeros((2, 20, 3)), unit_ids=["x", "z", "y"]),
            "part 1 has units ['x', 'z', 'y']",
        ),
        (
            SpikeCounts.from_array(np.zeros((2, 10, 3)), unit_ids=["x", "y", "z"]),
            "part 1 has 10 bins per trial",
        ),
        (
            SpikeCounts.from_array(np.zeros((2, 20, 3)), bin_size="1 ms", unit_ids=["x", "y", "z"]),
            "part 1 has bin_size 1 ms, part 0 has 5 ms",
        ),
    ],
)
def test_concatenate_errors(other, message):
    first = SpikeCounts.from_array(np.zeros((2, 20, 3)), unit_ids=["x", "y", "z"])
    with pytest.raises(ValueError) as error:
        SpikeCounts.concatenate([first, other])
    assert message in str(error.value)
    with pytest.raises(ValueError, match="concatenate: no SpikeCounts given"):
        SpikeCounts.concatenate([])


def test_repr():
    assert repr(SpikeCounts.from_array(np.zeros((3, 100, 5)))) == (
        "SpikeCounts(3 trials x 100 bins x 5 units, bin_size=5 ms)"
    )
    assert repr(SpikeCounts.from_array(np.zeros((10, 2)), bin_size="0.5 s")) == (
        "SpikeCounts(1 trial x 10 bins x 2 units, bin_size=0.5 s)"
    )
