"""Single flight: one computation per key for every concurrent caller, whatever each caller does."""

from __future__ import annotations

import asyncio

from gateway.infra.singleflight import SingleFlight


class Work:
    """A computation the test finishes by hand, counting how often it was started."""

    def __init__(self) -> None:
        self.started = 0
        self.outcome: asyncio.Future[str] | None = None

    async def __call__(self) -> str:
        self.started += 1
        self.outcome = asyncio.get_running_loop().create_future()
        return await self.outcome


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _flying(callers: int) -> tuple[SingleFlight[str], Work, list[asyncio.Task[str]]]:
    """A single flight with `callers` callers of one key, its work started and waiting."""
    flight: SingleFlight[str] = SingleFlight()
    work = Work()
    tasks = [asyncio.create_task(flight.run("k", work)) for _ in range(callers)]
    await _settle()
    return flight, work, tasks


async def test_concurrent_callers_share_one_run_and_the_key_frees_after() -> None:
    flight, work, callers = await _flying(4)
    assert work.started == 1
    assert flight.running("k")
    assert work.outcome is not None
    work.outcome.set_result("token")
    assert await asyncio.gather(*callers) == ["token"] * 4
    assert not flight.running("k")
    # A later caller starts a new run.
    later = asyncio.create_task(flight.run("k", work))
    await _settle()
    assert work.started == 2
    work.outcome.set_result("second")
    assert await later == "second"


async def test_a_joined_caller_hanging_up_leaves_the_others_their_result() -> None:
    _, work, (leader, joined, other) = await _flying(3)
    joined.cancel()
    await _settle()
    assert joined.cancelled()
    assert work.outcome is not None
    assert not work.outcome.cancelled()
    work.outcome.set_result("token")
    assert await leader == "token"
    assert await other == "token"
    assert work.started == 1


async def test_when_the_running_caller_is_cancelled_a_waiting_one_runs_the_work() -> None:
    """The work runs in the first caller's task: cancelled with it, it is run again by the
    first caller still waiting, and the others join that run."""
    flight: SingleFlight[str] = SingleFlight()
    work = Work()
    leader = asyncio.create_task(flight.run("k", work))
    await _settle()
    waiting = [asyncio.create_task(flight.run("k", work)) for _ in range(2)]
    await _settle()
    first_run = work.outcome
    leader.cancel()
    await _settle()
    assert leader.cancelled()
    assert first_run is not None
    assert first_run.cancelled()
    assert work.started == 2
    assert flight.running("k")
    assert work.outcome is not None
    work.outcome.set_result("token")
    assert await asyncio.gather(*waiting) == ["token", "token"]
    assert not flight.running("k")


async def test_every_caller_gets_the_works_error() -> None:
    flight, work, callers = await _flying(3)
    error = LookupError("no dashboard")
    assert work.outcome is not None
    work.outcome.set_exception(error)
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert results == [error] * 3  # the same object: callers read attributes set on it
    assert not flight.running("k")


async def test_cancel_all_ends_every_wait_and_nobody_runs_it_again() -> None:
    """At shutdown the running caller and every waiting one are cancelled; none starts over."""
    flight, work, callers = await _flying(3)
    await flight.cancel_all()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    await _settle()
    assert work.started == 1
    assert not flight.running("k")
