"""Time-ordered ids: version 7, and strictly increasing within one process."""

from __future__ import annotations

from gateway.infra.ids import uuid7


def test_ids_from_the_clock_strictly_increase() -> None:
    """Many ids within one millisecond still sort in the order they were made."""
    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}


def test_explicit_time_orders_by_time() -> None:
    """An id made for a later millisecond sorts after one for an earlier millisecond."""
    assert uuid7(1_700_000_000.000) < uuid7(1_700_000_000.002)
