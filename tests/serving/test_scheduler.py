"""The generator's queue without Ray: fair order across keys, bounds, deadlines, clients that
have gone, and a batch stopped at a denoising step boundary on the real tiny engine."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.errors import DeadlineExceeded, Invalid, Overloaded
from serving.generator import Engine, ImageJob, Rendered
from serving.scheduler import (
    FairQueue,
    Interrupted,
    Scheduler,
    Ticket,
    batch_limit,
    deadline_budget_s,
    fill_plan,
    refusal,
    retry_after_s,
    within,
)


def _job(client: str, seed: int, *, size: int = 32, deadline: float | None = None) -> ImageJob:
    return ImageJob("m/1", "acme banner", "", seed, size, size, 3, 2.0, client, deadline)


def _pixels(rendered: Rendered) -> np.ndarray:
    return rendered.pixels.astype(int)


def _take(queue: FairQueue[ImageJob], limit: int = 4) -> list[tuple[str, int]]:
    batch, _ = queue.take(limit, same=lambda j: j.batch_key(), dropped=lambda j: False)
    return [(j.client, j.seed) for j in batch]


def test_one_keys_flood_does_not_starve_another_keys_single_image():
    queue: FairQueue[ImageJob] = FairQueue()
    for seed in range(10):
        queue.push("flood", _job("flood", seed, size=128))
    queue.push("small", _job("small", 0))
    first = _take(queue)
    assert first == [("flood", 0), ("flood", 1), ("flood", 2), ("flood", 3)]
    assert _take(queue) == [("small", 0)]  # the very next batch, not after 10 flood images
    assert _take(queue) == [("flood", 4), ("flood", 5), ("flood", 6), ("flood", 7)]


def test_a_batch_holds_at_most_max_batch_size_native_images_worth_of_pixels():
    native = [ImageJob("m/1", "x", "", 0, side, side, 3, 2.0, native=32) for side in (32, 64, 128)]
    assert [batch_limit(job, 4) for job in native] == [4, 1, 1]
    assert batch_limit(ImageJob("m/1", "x", "", 0, 48, 32, 3, 2.0, native=32), 8) == 5
    assert batch_limit(_job("a", 0, size=128), 4) == 4  # native unknown: the plain limit
    queue: FairQueue[ImageJob] = FairQueue()
    for seed in range(3):
        queue.push("flood", ImageJob("m/1", "x", "", seed, 128, 128, 3, 2.0, "flood", None, 32))
    batch, _ = queue.take(
        lambda j: batch_limit(j, 4), same=lambda j: j.batch_key(), dropped=lambda j: False
    )
    assert [j.seed for j in batch] == [0]


def test_images_of_the_same_settings_batch_across_keys_in_turn_order():
    queue: FairQueue[ImageJob] = FairQueue()
    for seed in range(3):
        queue.push("a", _job("a", seed))
    queue.push("b", _job("b", 0))
    queue.push(None, _job("campaign", 0))
    assert _take(queue, 3) == [("a", 0), ("b", 0), ("a", 1)]
    # key b was served, so a (which still waits) goes first now; campaign work comes last
    assert _take(queue, 3) == [("a", 2), ("campaign", 0)]
    assert len(queue) == 0


def test_dropped_items_are_removed_and_returned_not_batched():
    queue: FairQueue[ImageJob] = FairQueue()
    for seed in range(3):
        queue.push("a", _job("a", seed))
    batch, gone = queue.take(4, same=lambda j: j.batch_key(), dropped=lambda j: j.seed != 1)
    assert [j.seed for j in batch] == [1]
    assert sorted(j.seed for j in gone) == [0, 2]
    assert queue.live() == 0


def test_refusal_names_the_bound_and_always_admits_a_key_with_nothing_waiting():
    bounds = {"max_queued": 32, "max_per_key": 8}
    assert refusal(waiting=0, waiting_of_key=0, images=8, **bounds) is None
    assert refusal(waiting=31, waiting_of_key=0, images=1, **bounds) is None
    per_key = refusal(waiting=4, waiting_of_key=4, images=5, **bounds)
    assert per_key is not None and "at most 8 waiting" in per_key
    full = refusal(waiting=30, waiting_of_key=0, images=4, **bounds)
    assert full is not None and "at most 32" in full
    assert refusal(waiting=0, waiting_of_key=0, images=40, **bounds) is None
    assert retry_after_s(0, 0.0) == 1
    assert retry_after_s(10, 0.5) == 5
    assert retry_after_s(10_000, 1.0) == 60


def test_the_deadline_header_is_bounded_and_named_in_errors():
    limits = {"default_s": 60.0, "max_s": 300.0}
    assert deadline_budget_s(None, **limits) == 60.0
    assert deadline_budget_s("1000", **limits) == 1.0
    assert deadline_budget_s(" 300000 ", **limits) == 300.0
    for bad in ("999", "300001", "abc", "-5", "1e3", "", "1" * 12):
        with pytest.raises(Invalid, match="X-Request-Deadline-Ms"):
            deadline_budget_s(bad, **limits)
    ticket = Ticket("app", 1.5, time.time())
    assert "1500 ms" in ticket.exceeded().message


class _Recorder:
    """A `draw` that keeps what it was asked to draw, optionally waiting on a gate."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.drawn: list[tuple[str, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.seconds = seconds  # how long each batch takes to draw

    def __call__(self, jobs: list[ImageJob], should_stop, between_steps) -> list[Rendered]:
        self.gate.wait(10)
        time.sleep(self.seconds)
        self.drawn.extend((j.client, j.seed) for j in jobs)
        return [Rendered(np.zeros((1, 1, 3), np.uint8), j.seed, len(jobs), 0.0) for j in jobs]


def test_expired_and_abandoned_images_are_not_drawn_and_bounds_refuse_with_retry_after():
    draw = _Recorder()
    queue = Scheduler(draw, max_batch_size=4, max_queued=8, max_queued_per_key=4)

    async def scenario() -> None:
        draw.gate.clear()  # the first batch holds the drawing thread
        first = asyncio.create_task(queue.submit([_job("busy", 0)]))
        await asyncio.sleep(0.2)
        late = asyncio.create_task(queue.submit([_job("late", 1, deadline=time.time() + 0.1)]))
        left = asyncio.create_task(queue.submit([_job("left", 2, size=64)]))
        flood = asyncio.create_task(queue.submit([_job("flood", s, size=48) for s in range(4)]))
        await asyncio.sleep(0.2)
        with pytest.raises(Overloaded, match="at most 4 waiting") as refused:
            await queue.submit([_job("flood", 9, size=48)])
        assert refused.value.retry_after_s >= 1
        left.cancel()  # its client disconnected
        await asyncio.sleep(0.2)
        draw.gate.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await late
        assert len(await flood) == 4

    asyncio.run(scenario())
    assert ("late", 1) not in draw.drawn and ("left", 2) not in draw.drawn
    stats = queue.stats()
    assert stats["dropped_expired"] == 1 and stats["dropped_gone"] == 1
    assert stats["rejected"] == 1 and stats["drawn"] == 5 and stats["waiting"] == 0


def test_each_image_carries_back_how_long_it_waited_in_the_queue():
    draw = _Recorder()
    queue = Scheduler(draw, max_batch_size=1)

    async def scenario() -> tuple[list[Rendered], list[Rendered]]:
        draw.gate.clear()  # the first image holds the drawing thread
        first = asyncio.create_task(queue.submit([_job("a", 0)]))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(queue.submit([_job("b", 1)]))
        await asyncio.sleep(0.2)
        draw.gate.set()
        return await first, await waiting

    first, waiting = asyncio.run(scenario())
    assert 0.0 <= first[0].queued_s < waiting[0].queued_s
    assert waiting[0].queued_s >= 0.2  # queued before the held batch was let go


def test_a_batch_waits_for_as_many_images_as_the_last_one_served_and_a_lone_one_never_waits():
    plan = [fill_plan(n, 2.0, max_batch_size=4, batch_wait_s=1.0) for n in (0, 1, 3, 9)]
    assert plan == [(1, 0.5), (1, 0.5), (3, 0.5), (4, 0.5)]  # a quarter of the last batch
    assert fill_plan(3, 8.0, max_batch_size=4, batch_wait_s=1.0) == (3, 1.0)  # the cap
    draw = _Recorder(seconds=1.0)
    queue = Scheduler(draw, max_batch_size=4, batch_wait_s=0.5)

    async def scenario() -> tuple[float, float, list[Rendered]]:
        started = time.perf_counter()
        await queue.submit([_job("a", 0)])  # idle, a load of one before: drawn at once
        lone = time.perf_counter() - started
        await queue.submit([_job("a", s) for s in (1, 2, 3)])  # a batch of three, 1 s
        started = time.perf_counter()
        first = asyncio.create_task(queue.submit([_job("a", 4)]))
        await asyncio.sleep(0.1)  # a second image comes while the first waits for company
        second = asyncio.create_task(queue.submit([_job("b", 5)]))
        together = [*(await first), *(await second)]
        return lone, time.perf_counter() - started, together

    lone, waited, together = asyncio.run(scenario())
    assert lone < 1.2  # drawing only: no batch wait for a request that came alone
    assert draw.drawn == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 5)]
    assert [r.batch_size for r in together] == [2, 2]  # they waited for each other
    assert waited >= 1.2  # a quarter of the last batch's second waiting for a third, then 1 s


def test_within_answers_at_the_deadline_and_cancels_the_work():
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded, match="deadline of 1000 ms"):
            await within(slow(), Ticket("app", 1.0, time.time() + 0.2))
        assert cancelled.is_set()

    asyncio.run(scenario())


def test_a_batch_stops_at_a_step_boundary_when_its_caller_has_gone(registry_env):
    engine = Engine()
    model = f"{registry_env.name}/1"
    handle = engine.load_adapter(model)
    asked: list[int] = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) >= 2

    job = ImageJob(model, "acme banner", "", 1, 32, 32, 5, 2.0)
    with pytest.raises(Interrupted):
        engine.render([job], should_stop=stop_after_two)
    assert len(asked) == 2  # asked once per step, and no step after the answer was yes
    assert len(engine.render([job], should_stop=lambda: False)) == 1  # the pipeline is reusable

    # Through the queue: the caller gives up while its 150-step batch draws.
    steps: list[int] = []

    def draw(jobs, should_stop, between_steps):
        def counting() -> bool:
            steps.append(1)
            return should_stop()

        return engine.render(jobs, should_stop=counting, between_steps=between_steps)

    queue = Scheduler(draw)

    async def scenario() -> None:
        long = ImageJob(model, "acme banner", "", 2, 32, 32, 150, 2.0, "app")
        task = asyncio.create_task(queue.submit([long]))
        while not steps:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 30
        while queue.stats()["interrupted"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert queue.stats()["interrupted"] == 1
    assert len(steps) < 150
    assert handle.model_id == model


def test_a_long_batch_yields_at_a_step_to_another_keys_image_and_its_pixels_do_not_change(
    registry_env,
):
    engine = Engine()
    v1, v2 = f"{registry_env.name}/1", f"{registry_env.name}/2"
    handles = [engine.load_adapter(v1), engine.load_adapter(v2)]
    long = ImageJob(v1, "acme banner", "", 5, 32, 32, 60, 2.0, "flood")
    small = ImageJob(v2, "acme poster", "", 6, 32, 32, 3, 2.0, "small")
    alone = {job.client: engine.render([job])[0] for job in (long, small)}
    queue = Scheduler(lambda j, s, b: engine.render(j, should_stop=s, between_steps=b))

    async def scenario() -> tuple[bool, list[Rendered], list[Rendered]]:
        flood = asyncio.create_task(queue.submit([long]))
        while queue.stats()["drawing_live"] == 0:
            await asyncio.sleep(0.005)
        drawn_small = await queue.submit([small])
        return flood.done(), await flood, drawn_small

    flood_done_first, drawn_long, drawn_small = asyncio.run(scenario())
    assert not flood_done_first  # the single image did not wait for the 60-step batch
    assert queue.stats()["drawn_aside"] == 1
    assert _pixels(drawn_small[0]).tolist() == _pixels(alone["small"]).tolist()
    assert _pixels(drawn_long[0]).tolist() == _pixels(alone["flood"]).tolist()
    assert len(handles) == 2
