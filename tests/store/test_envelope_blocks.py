"""Merging per-interval limits into controls, and carrying published controls across republications."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gridshare.envelopes.blocks import BLOCK_DTYPE, Block, carry_forward, from_blocks, merge_blocks, to_blocks
from gridshare.server.shared.control_status import ACTIVE, SUPERSEDED, derive_states
from gridshare.store.envelope_blocks import GrossLimits, decode_blocks, decode_envelope, encode_blocks
from gridshare.store.queries.envelopes import EnvelopeControl


def test_equal_neighbours_merge_and_changes_split() -> None:
    starts = 1000 + 300 * np.arange(6)
    blocks = to_blocks(merge_blocks(starts, 300, np.array([5, 5, 5, 3, 3, 5.0]) * 1000, np.full(6, 7000.0)))
    assert [(b.start_s, b.duration_s, b.export_limit_w) for b in blocks] == [
        (1000, 900, 5000.0),
        (1900, 600, 3000.0),
        (2500, 300, 5000.0),
    ]


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)), min_size=1, max_size=60))
def test_blocks_cover_the_horizon_and_never_exceed_an_interval(limits: list[tuple[float, float]]) -> None:
    n = len(limits)
    starts = 10_000 + 300 * np.arange(n)
    exp = np.array([e for e, _ in limits])
    imp = np.array([i for _, i in limits])
    blocks = to_blocks(merge_blocks(starts, 300, exp, imp))
    assert blocks[0].start_s == starts[0]
    assert sum(b.duration_s for b in blocks) == 300 * n
    for b in blocks:
        covered = (starts >= b.start_s) & (starts < b.start_s + b.duration_s)
        assert b.export_limit_w <= exp[covered].min() and b.import_limit_w <= imp[covered].min()
    for a, b in itertools.pairwise(blocks):
        assert a.start_s + a.duration_s == b.start_s
        assert (a.export_limit_w, a.import_limit_w) != (b.export_limit_w, b.import_limit_w)


def _run(previous: np.ndarray, now_s: int, values: list[tuple[float, float]], created_s: int) -> np.ndarray:
    start = now_s - now_s % 300
    starts = start + 300 * np.arange(len(values))
    exp = np.array([v[0] for v in values], dtype=float)
    imp = np.array([v[1] for v in values], dtype=float)
    return carry_forward(previous, starts, 300, exp, imp, now_s=now_s, created_s=created_s)[0]


NONE = np.zeros(0, dtype=BLOCK_DTYPE)


def test_unchanged_envelope_is_republished_as_the_same_events() -> None:
    first = _run(NONE, 3000, [(5000, 1000)] * 4 + [(2000, 1000)] * 4, created_s=3000)
    again = _run(first, 3100, [(5000, 1000)] * 4 + [(2000, 1000)] * 4, created_s=3100)
    assert to_blocks(again) == to_blocks(first)  # same starts, durations, limits and creation times


def test_running_block_continues_backwards_when_limits_hold() -> None:
    first = to_blocks(_run(NONE, 3000, [(5000, 1000)] * 4, created_s=3000))
    later = to_blocks(_run(from_blocks(first), 3700, [(5000, 1000)] * 2, created_s=3700))
    assert later[0].start_s == first[0].start_s and later[0].export_limit_w == 5000


def test_changed_running_block_is_superseded_not_dropped() -> None:
    first = to_blocks(_run(NONE, 3000, [(5000, 1000)] * 6, created_s=3000))
    later = to_blocks(_run(from_blocks(first), 3700, [(1000, 1000)] * 6, created_s=3700))
    assert first[0] in later  # the device's running control is still listed ...
    controls = [_as_control(b, i) for i, b in enumerate(later)]
    states = {
        (s.control.start_s, s.control.export_limit_w): s.status for s in derive_states(controls, now_s=3700)
    }
    assert states[(first[0].start_s, 5000)] == SUPERSEDED  # ... and marked superseded by the newer block
    assert states[(3600, 1000)] == ACTIVE


def test_one_changed_interval_keeps_every_other_event() -> None:
    values = [(5000, 1000)] * 4 + [(2000, 1000)] * 4 + [(4000, 1000)] * 4
    first = to_blocks(_run(NONE, 3000, values, created_s=3000))
    values[5] = (1000, 1000)  # the middle block splits in three
    later = to_blocks(_run(from_blocks(first), 3000, values, created_s=3100))
    assert first[0] in later and first[2] in later
    assert first[1] not in later
    assert [b.created_s for b in later if b not in first] == [3100, 3100, 3100]


def _as_control(b: Block, i: int) -> EnvelopeControl:
    return EnvelopeControl(
        id=str(i),
        mrid=f"{i:032X}",
        program_id=1,
        site_id=1,
        creation_s=b.created_s,
        start_s=b.start_s,
        duration_s=b.duration_s,
        export_limit_w=b.export_limit_w,
        import_limit_w=b.import_limit_w,
    )


def test_block_codec_round_trips_exactly() -> None:
    blocks = [Block(1795392000, 300, 12_345_678.0, 0.0, 1795391999), Block(1795392300, 86100, 1e9, 3.5, 7)]
    assert to_blocks(decode_blocks(encode_blocks(from_blocks(blocks)))) == blocks


def test_gross_limits_ride_with_the_blocks_and_older_blobs_still_decode() -> None:
    blocks = [Block(1795392000, 300, 5000.0, 2000.0, 1795391999), Block(1795392300, 600, 0.0, 0.0, 7)]
    arr = from_blocks(blocks)
    with_gross = encode_blocks(arr, GrossLimits(6600.0, 7000.0))
    got, gross = decode_envelope(with_gross)
    assert to_blocks(got) == blocks and gross == GrossLimits(6600.0, 7000.0)
    # a blob written before gross limits existed: the raw blocks, read as before, no gross limits
    old = arr.tobytes()
    got, gross = decode_envelope(old)
    assert to_blocks(got) == blocks and gross is None
    assert to_blocks(decode_blocks(with_gross)) == to_blocks(decode_blocks(old)) == blocks
    # an empty envelope either way
    assert len(decode_blocks(b"")) == 0
    assert decode_envelope(encode_blocks(arr[:0], GrossLimits(1.0, 2.0)))[1] == GrossLimits(1.0, 2.0)
