"""The spool's files: order, fsync'd appends, deletion after replay, adoption of orphans."""

from __future__ import annotations

from gateway.audit.spool import Spool


def test_appends_are_read_back_in_order_across_segments(tmp_path) -> None:
    """Lines come back in the order appended, even when they span rotated segments."""
    spool = Spool(tmp_path, max_segment_bytes=64)
    for i in range(10):
        spool.append([f'{{"n": {i}}}'.encode()] * 3)
    segments = spool.claim()
    assert len(segments) > 1
    lines = [line for s in segments for line in spool.read(s)]
    assert lines == [f'{{"n": {i}}}'.encode() for i in range(10) for _ in range(3)]
    spool.close()


def test_done_deletes_the_segment_and_nothing_is_pending(tmp_path) -> None:
    """A replayed segment is deleted; the spool then has nothing pending."""
    spool = Spool(tmp_path)
    spool.append([b"{}"])
    assert spool.has_pending
    (segment,) = spool.claim()
    spool.done(segment)
    assert not spool.has_pending
    assert list(tmp_path.glob("audit-*.jsonl")) == []
    spool.close()


def test_a_live_owners_segment_is_not_adopted_a_dead_ones_is(tmp_path) -> None:
    """Another live process's segment is left alone; once its owner is gone it is adopted."""
    owner = Spool(tmp_path)
    owner.append([b'{"a": 1}'])
    other = Spool(tmp_path)
    assert other.claim() == []
    owner.close()  # the owner dies: its lock goes with it
    (adopted,) = other.claim()
    assert other.read(adopted) == [b'{"a": 1}']
    other.close()


def test_a_torn_last_line_is_skipped(tmp_path) -> None:
    """A line cut short by a crash mid-write is dropped; the lines before it are kept."""
    spool = Spool(tmp_path)
    spool.append([b'{"a": 1}'])
    spool.close()
    (path,) = tmp_path.glob("audit-*.jsonl")
    with path.open("ab") as f:
        f.write(b'{"a": 2')
    reader = Spool(tmp_path)
    (segment,) = reader.claim()
    assert reader.read(segment) == [b'{"a": 1}']
    reader.close()


def test_unwritable_directory_raises_and_leaves_nothing(tmp_path) -> None:
    """A spool directory that cannot exist makes append raise OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spool = Spool(blocker / "spool")
    try:
        spool.append([b"{}"])
    except OSError:
        pass
    else:
        raise AssertionError("append should have failed")
    assert not spool.has_pending
    assert spool.claim() == []
