"""The generator's queue: bounded, fair across API keys, and aware of deadlines and of clients
that have gone.

One ordinary request once held the only replica for minutes while other keys' small requests
timed out (issue 12). Ray Serve's `@serve.batch` queue is first in, first out and unbounded, and
a handle's `max_queued_requests` counts calls waiting at each caller, not images waiting in the
replica, so each replica keeps its own queue, worked by one thread:

- **Bounded.** A live request is refused (`Overloaded`: 503 with Retry-After) when the live
  images waiting in this replica would pass `max_queued`, or when its key already has
  `max_queued_per_key` waiting, so one key's flood cannot fill the queue for everyone. A key
  with nothing waiting is always admitted (a request of 8 images is never refused for ever).
- **Fair.** Live images are taken round-robin across keys, one image per key per turn
  (`FairQueue`); a batch is the first image in that order plus the following images with the
  same model and settings. And a batch in progress yields at every denoising step: when a live
  image of a key not in it waits, that key's batch is drawn right then, on a second pipeline
  over the same modules (`Engine.render(between_steps=)`), and the paused batch carries on
  unchanged after it. So a key with one image waits for one step of another key's batch, not
  for all of it, however large the flood. Weighting the turns by cost (weighted fair queuing)
  would add nothing to that bound; per-key caps alone would not do either (within its cap a
  flood would still go first in a FIFO). So: round-robin per image, preemption at step
  boundaries, and the per-key cap on what waits.
- **Deadlines and cancellation.** An image whose deadline passed, or whose caller has gone (the
  HTTP client disconnected and Ray cancelled the call, or the ingress gave up at the
  deadline), is dropped when its turn comes instead of being drawn; a batch in progress stops
  at the next denoising step when every image in it is gone (`Engine.render(should_stop=)`).
- **Batching without a toll on lone requests.** A new batch waits for as many images as the
  last batch served (`fill_plan`), for at most a quarter of that batch's drawing time: its
  clients come back as they read their answers, but one request at a time starts at once (a
  fixed 50 ms wait for a full batch cost every lone request 10 % of a 32 px image, and at 16
  clients it started batches before the clients were back).
- **Campaign work** (`background`) has no deadline and no bound (a campaign worker claims a
  few items at a time); it is drawn only while no live image waits, and it batches with live
  images of the same settings.

A thread rather than an asyncio task works the queue, so the same object serves a Ray replica
and the in-process `LocalRenderer` whatever event loop calls it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from serving.errors import DeadlineExceeded, Invalid, Overloaded

if TYPE_CHECKING:
    from serving.generator import ImageJob, Rendered

T = TypeVar("T")
DEADLINE_HEADER = "X-Request-Deadline-Ms"
MIN_DEADLINE_S = 1.0


class Interrupted(RuntimeError):
    """A batch stopped at a step boundary because every image in it was gone."""


# ---------------------------------------------------------------------------------------------
# Pure parts: the order of the queue, deadlines, Retry-After


class FairQueue(Generic[T]):
    """Live items round-robin across keys, then background items first in, first out.

    Not thread-safe: `Scheduler` holds its lock around every call.
    """

    def __init__(self) -> None:
        self._live: OrderedDict[str, deque[T]] = OrderedDict()
        self._background: deque[T] = deque()

    def push(self, key: str | None, item: T) -> None:
        """Queue `item` under `key`; `None`: background work."""
        if key is None:
            self._background.append(item)
        else:
            self._live.setdefault(key, deque()).append(item)

    def live(self, key: str | None = None) -> int:
        """Live items waiting (of `key`, or of every key)."""
        if key is not None:
            return len(self._live.get(key, ()))
        return sum(len(q) for q in self._live.values())

    def live_besides(self, keys: Collection[str]) -> bool:
        """Whether a live item of a key not in `keys` waits."""
        return any(key not in keys for key in self._live)

    def __len__(self) -> int:
        return self.live() + len(self._background)

    def _in_order(self) -> Iterator[tuple[str | None, T]]:
        """Every item in serving order: the first of each key in turn, then the second, ..."""
        depth = max((len(q) for q in self._live.values()), default=0)
        for rank in range(depth):
            for key, q in self._live.items():
                if rank < len(q):
                    yield key, q[rank]
        for item in self._background:
            yield None, item

    def take(
        self,
        limit: int | Callable[[T], int],
        *,
        same: Callable[[T], Hashable],
        dropped: Callable[[T], bool],
        besides: Collection[str] | None = None,
    ) -> tuple[list[T], list[T]]:
        """One batch and the items dropped on the way: the first item in serving order that is
        not `dropped`, then the following ones with the same `same(item)`, up to `limit` (or
        `limit(first item)`).
        Keys served move to the end of the turn order. With `besides`: live items of other
        keys only (what may be drawn while those keys' batch is paused)."""
        batch: list[tuple[str | None, T]] = []
        gone: list[tuple[str | None, T]] = []
        most = 0
        for key, item in self._in_order():
            if besides is not None and (key is None or key in besides):
                continue
            if dropped(item):
                gone.append((key, item))
            elif not batch:
                batch.append((key, item))
                most = limit if isinstance(limit, int) else limit(item)
            elif len(batch) < most and same(item) == same(batch[0][1]):
                batch.append((key, item))
        for key, item in (*gone, *batch):
            self._remove(key, item)
        for key, _ in batch:
            if key is not None and key in self._live:
                self._live.move_to_end(key)
        return [item for _, item in batch], [item for _, item in gone]

    def _remove(self, key: str | None, item: T) -> None:
        if key is None:
            self._background.remove(item)
            return
        q = self._live[key]
        q.remove(item)
        if not q:
            del self._live[key]


def batch_limit(job: ImageJob, max_batch_size: int) -> int:
    """How many images like `job` one batch holds: `max_batch_size` native-size images' worth
    of pixels, at least one. A step of any batch then takes about as long as a step of a full
    batch at the native size, which bounds how long a waiting key's image waits for the next
    step boundary (a flood of images 4x native per side batches one at a time; batching such
    images buys almost nothing on a saturated device anyway)."""
    if job.native <= 0:
        return max_batch_size
    return max(1, min(max_batch_size, max_batch_size * job.native**2 // (job.width * job.height)))


# A new batch waits for company at most this share of the last batch's drawing time: what
# waiting can cost stays small beside what a fuller batch saves.
FILL_WAIT_SHARE = 0.25


def fill_plan(
    last_load: int, last_batch_s: float, *, max_batch_size: int, batch_wait_s: float
) -> tuple[int, float]:
    """How many images a new batch waits for before it starts, and for how long at most.

    `last_load` is how many images the last batch drew plus those that queued while it drew:
    the traffic it served, most of which comes back as its clients read their answers. The
    batch waits for that many (at most a full batch), for at most `batch_wait_s` and
    `FILL_WAIT_SHARE` of the last batch's drawing time. One request at a time has a load of
    one and starts at once, instead of paying the wait every time."""
    target = max(1, min(last_load, max_batch_size))
    return target, min(batch_wait_s, FILL_WAIT_SHARE * max(last_batch_s, 0.0))


def refusal(
    *, waiting: int, waiting_of_key: int, images: int, max_queued: int, max_per_key: int
) -> str | None:
    """Why a live request of `images` images is refused, or None to admit it. A key with
    nothing waiting is admitted while the replica has room for its first image."""
    if waiting_of_key and waiting_of_key + images > max_per_key:
        return (
            f"this key already has {waiting_of_key} images waiting in the generator; "
            f"one key may have at most {max_per_key} waiting"
        )
    if waiting and waiting + images > max_queued:
        return f"the generator has {waiting} images waiting; its queue holds at most {max_queued}"
    return None


def retry_after_s(waiting: int, seconds_per_image: float) -> int:
    """Whole seconds until the images waiting are likely drawn: between 1 and 60."""
    return max(1, min(60, math.ceil(waiting * max(seconds_per_image, 0.0))))


def deadline_budget_s(header: str | None, *, default_s: float, max_s: float) -> float:
    """Seconds a live request may take: the `X-Request-Deadline-Ms` header, within
    [1 s, `max_s`], else `default_s`. A malformed or out-of-range header is `Invalid`."""
    if header is None:
        return default_s
    text = header.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise Invalid(f"{DEADLINE_HEADER}: give a whole number of milliseconds, got {header!r}")
    budget = int(text) / 1000
    if not MIN_DEADLINE_S <= budget <= max_s:
        raise Invalid(
            f"{DEADLINE_HEADER} {text}: give between {MIN_DEADLINE_S * 1000:.0f} and "
            f"{max_s * 1000:.0f} ms (this server's limit)"
        )
    return budget


@dataclass(frozen=True)
class Ticket:
    """What the ingress knows of a live request when it queues work: whose it is and until
    when it may run."""

    client: str  # the API key's name: the unit of fairness
    budget_s: float
    deadline: float  # time.time() at which the work is dropped

    @classmethod
    def start(cls, client: str, budget_s: float) -> Ticket:
        return cls(client, budget_s, time.time() + budget_s)

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the request's deadline of {self.budget_s * 1000:.0f} ms passed before its images "
            f"were drawn, and the work was dropped; send {DEADLINE_HEADER} with a larger value "
            "or ask for fewer or smaller images"
        )


async def within(work: Awaitable[T], ticket: Ticket) -> T:
    """`work`'s result, or `DeadlineExceeded` naming the deadline once it passes (the work is
    cancelled, so the generator drops it)."""
    try:
        return await asyncio.wait_for(work, max(ticket.deadline - time.time(), 0.0))
    except (TimeoutError, DeadlineExceeded):
        raise ticket.exceeded() from None


def admission_error(err: BaseException) -> Overloaded | DeadlineExceeded | None:
    """The queue's own refusal inside an error a Ray call re-raised, if it is one."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (Overloaded, DeadlineExceeded)):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return None


# ---------------------------------------------------------------------------------------------
# The queue's thread


@dataclass(eq=False)
class _Entry:
    job: ImageJob
    background: bool
    future: Future[Rendered] = field(default_factory=Future)
    gone: bool = False  # its caller was cancelled: nobody waits for this image
    queued_at: float = field(default_factory=time.perf_counter)

    def dropped(self, now: float) -> bool:
        return self.gone or self.future.cancelled() or self.expired(now)

    def expired(self, now: float) -> bool:
        return not self.background and self.job.deadline is not None and now >= self.job.deadline


Draw = Callable[["list[ImageJob]", Callable[[], bool], Callable[[], bool] | None], "list[Rendered]"]


class Scheduler:
    """One replica's queue of images and the thread that draws them in batches with `draw`:
    `draw(jobs, should_stop, between_steps)` as `Engine.render` takes them (jobs share a batch
    key; `Interrupted` when stopped; `between_steps` may draw another batch in between)."""

    def __init__(
        self,
        draw: Draw,
        *,
        max_batch_size: int = 4,
        batch_wait_s: float = 0.0,
        max_queued: int = 32,
        max_queued_per_key: int = 8,
    ) -> None:
        self._draw = draw
        self._max_batch = max_batch_size
        self._batch_wait_s = batch_wait_s
        self._max_queued = max_queued
        self._max_per_key = max_queued_per_key
        self._queue: FairQueue[_Entry] = FairQueue()
        self._cond = threading.Condition()
        self._drawing_live = 0
        # The last batch the queue's thread drew: its images plus those queued meanwhile,
        # and its seconds (`fill_plan`).
        self._last_load = 1
        self._last_batch_s = 0.0
        self._seconds_per_image = 0.0
        self._counts = dict.fromkeys(
            ("drawn", "drawn_aside", "dropped_gone", "dropped_expired", "interrupted", "rejected"),
            0,
        )
        self._thread: threading.Thread | None = None

    async def submit(self, jobs: list[ImageJob], *, background: bool = False) -> list[Rendered]:
        """Queue `jobs` and wait for their images (in order). Live jobs are refused with
        `Overloaded` past the bounds; cancelling the caller marks its images gone."""
        if not jobs:
            return []
        entries = [_Entry(job, background) for job in jobs]
        with self._cond:
            if not background:
                self._admit(jobs)
            for entry in entries:
                self._queue.push(None if background else entry.job.client, entry)
            self._start()
            self._cond.notify_all()
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(e.future) for e in entries)))
        except BaseException:
            for entry in entries:
                entry.gone = True
            raise

    def _admit(self, jobs: list[ImageJob]) -> None:
        why = refusal(
            waiting=self._queue.live(),
            waiting_of_key=self._queue.live(jobs[0].client),
            images=len(jobs),
            max_queued=self._max_queued,
            max_per_key=self._max_per_key,
        )
        if why is not None:
            self._counts["rejected"] += 1
            after = retry_after_s(self._queue.live() + self._drawing_live, self._seconds_per_image)
            raise Overloaded(f"{why}; try again in {after} s", retry_after_s=after)

    def _limit(self, entry: _Entry) -> int:
        return batch_limit(entry.job, self._max_batch)

    def live_pending(self) -> int:
        """Live images waiting or being drawn (campaign clips wait for none)."""
        with self._cond:
            return self._queue.live() + self._drawing_live

    def stats(self) -> dict[str, int]:
        """Counters since start, and what waits now (for /readyz, tests and the benchmark)."""
        with self._cond:
            return {
                **self._counts,
                "waiting": len(self._queue),
                "drawing_live": self._drawing_live,
            }

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="generator-queue", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch:
                self._draw_batch(batch)

    def _next_batch(self) -> list[_Entry]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._queue) > 0)
            target, wait_s = fill_plan(
                self._last_load,
                self._last_batch_s,
                max_batch_size=self._max_batch,
                batch_wait_s=self._batch_wait_s,
            )
            if wait_s > 0 and len(self._queue) < target:
                self._cond.wait_for(lambda: len(self._queue) >= target, timeout=wait_s)
            now = time.time()
            batch, dropped = self._queue.take(
                self._limit, same=lambda e: e.job.batch_key(), dropped=lambda e: e.dropped(now)
            )
            self._drawing_live += sum(not e.background for e in batch)
        for entry in dropped:
            self._drop(entry, now)
        return batch

    def _drop(self, entry: _Entry, now: float) -> None:
        expired = entry.expired(now) and not entry.gone
        self._counts["dropped_expired" if expired else "dropped_gone"] += 1
        if expired:
            _settle(entry, error=DeadlineExceeded("the deadline passed before drawing"))
        else:
            _settle(entry, error=Interrupted("the caller has gone"))

    def _between_steps(self, running: list[_Entry]) -> bool:
        """At a step boundary of `running`: while a live image of another key waits, draw its
        batch now, so one key's long batch (or a campaign's) holds other keys up for one
        denoising step, not for all of its steps. Whether a batch was drawn."""
        keys = {e.job.client for e in running if not e.background}
        now = time.time()
        with self._cond:
            if not self._queue.live_besides(keys):
                return False
            batch, dropped = self._queue.take(
                self._limit,
                same=lambda e: e.job.batch_key(),
                dropped=lambda e: e.dropped(now),
                besides=keys,
            )
            self._drawing_live += len(batch)
        for entry in dropped:
            self._drop(entry, now)
        if batch:
            self._counts["drawn_aside"] += 1
            self._draw_batch(batch, aside=True)
        return bool(batch)

    def _draw_batch(self, batch: list[_Entry], *, aside: bool = False) -> None:
        started = time.perf_counter()

        def should_stop() -> bool:
            now = time.time()
            return all(e.dropped(now) for e in batch)

        def between_steps() -> bool:
            return self._between_steps(batch)

        try:
            rendered = self._draw(
                [e.job for e in batch], should_stop, None if aside else between_steps
            )
        except Interrupted as err:
            self._counts["interrupted"] += 1
            for entry in batch:
                _settle(entry, error=err)
        except Exception as err:  # noqa: BLE001 (each caller gets the failure)
            for entry in batch:
                _settle(entry, error=err)
        else:
            if not aside:
                with self._cond:
                    self._last_load = len(batch) + len(self._queue)
                    self._last_batch_s = time.perf_counter() - started
            per_image = (time.perf_counter() - started) / len(batch)
            # a moving average: Retry-After follows the recent pace of drawing
            last = self._seconds_per_image or per_image
            self._seconds_per_image = 0.8 * last + 0.2 * per_image
            self._counts["drawn"] += len(batch)
            for entry, result in zip(batch, rendered, strict=True):
                # how long it waited travels back with the image (Server-Timing's `queue`)
                _settle(entry, result=replace(result, queued_s=started - entry.queued_at))
        finally:
            with self._cond:
                self._drawing_live -= sum(not e.background for e in batch)


def _settle(
    entry: _Entry, *, result: Rendered | None = None, error: BaseException | None = None
) -> None:
    """Hand the outcome to the caller unless it cancelled its future."""
    if not entry.future.set_running_or_notify_cancel():
        return
    if error is not None:
        entry.future.set_exception(error)
    else:
        entry.future.set_result(result)  # type: ignore[arg-type]
