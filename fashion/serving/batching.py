"""The server's bounded request queue and its batching model worker.

A request is *admitted* when it arrives (before its upload is read) and stays in the
queue while it uploads, decodes and waits for the model; the queue holds at most
``max_queue`` requests, so an arrival beyond that is refused at once (503) and memory
is bounded by max_queue uploads plus one batch. A request still in the queue
``timeout`` seconds after it arrived is dropped (504); one the model has started on is
finished.

One worker task takes up to ``max_batch`` queued images at a time: when fewer are
waiting it waits until the oldest has been queued ``batch_wait`` seconds for more to come,
then hands the batch to ``run_batch`` (the predictor's detect_batch) in a dedicated
thread, so the event loop keeps answering (/healthz, /metrics, uploads) meanwhile.
All queue state is touched on the event loop only.
"""
import asyncio
import collections
import concurrent.futures
import math
import time


class Overloaded(Exception):
    """The queue is full: the request is refused at once (503 with Retry-After)."""

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class TimedOut(Exception):
    """The request waited in the queue past its deadline (504)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Ticket:
    """One admitted request: its deadline and, once decoded, its image and future."""
    __slots__ = ("deadline", "queued", "image", "future", "state")

    def __init__(self, deadline):
        self.deadline = deadline
        self.queued = self.image = self.future = None
        self.state = "admitted"          # -> "queued" -> "running" | "left"


class BatchQueue:
    """Admission, deadlines and batching in front of ``run_batch(images) -> results``.

    Args:
        run_batch: a thread-safe function taking a list of images and returning one
            result per image (Predictor.detect_batch).
        max_queue: most requests admitted and not yet in the model.
        max_batch: most images per run_batch call (1: no batching).
        batch_wait: seconds the oldest queued image waits for a batch to fill.
        timeout: seconds from arrival after which a request still queued gets 504.
        metrics: a ServeMetrics (queue length, batch sizes, model time) or None.
    """

    def __init__(self, run_batch, max_queue, max_batch=1, batch_wait=0.0, timeout=30.0,
                 metrics=None):
        self.run_batch = run_batch
        self.max_queue, self.max_batch = int(max_queue), int(max_batch)
        self.batch_wait, self.timeout = float(batch_wait), float(timeout)
        self.metrics = metrics
        self.admitted = 0                # requests in the queue (uploading to waiting)
        self.running = 0                 # images in the model now
        self._waiting = collections.deque()
        self._wakeup = None
        self._task = None
        self._executor = None
        self._batch_seconds = None       # moving average of one model call, for Retry-After

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        """Starts the worker on the running event loop (the app's startup)."""
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="fashion-model")
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self):
        """Stops the worker (the app's shutdown, after in-flight requests finished)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for ticket in self._waiting:
            if not ticket.future.done():
                ticket.future.set_exception(Overloaded(
                    "The server is shutting down; retry on another instance.", 1))
        self._waiting.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ requests
    def admit(self):
        """A Ticket for a new request, or Overloaded at once when the queue is full."""
        if self.admitted >= self.max_queue:
            raise Overloaded(f"The server's queue is full ({self.max_queue} requests "
                             f"waiting); retry after {self.retry_after()} s.",
                             self.retry_after())
        now = asyncio.get_running_loop().time()
        self.admitted += 1
        self._gauge()
        return Ticket(now + self.timeout)

    def release(self, ticket):
        """Takes the ticket out of the queue if it is still there (done, failed,
        timed out or cancelled); idempotent."""
        if ticket.state in ("admitted", "queued"):
            if ticket.state == "queued":
                try:
                    self._waiting.remove(ticket)
                except ValueError:
                    pass
            self.admitted -= 1
            ticket.state = "left"
            self._gauge()

    async def run(self, ticket, image):
        """The model's result for the ticket's image, or TimedOut (504) when the
        deadline passes while it is still queued."""
        loop = asyncio.get_running_loop()
        if loop.time() >= ticket.deadline:
            self.release(ticket)
            raise self.timed_out()
        ticket.image, ticket.future, ticket.queued = image, loop.create_future(), loop.time()
        ticket.state = "queued"
        self._waiting.append(ticket)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(ticket.future),
                                          ticket.deadline - loop.time())
        except TimeoutError:
            if ticket.state == "running":            # the model has it: finish it
                return await ticket.future
            raise self.timed_out() from None
        finally:
            self.release(ticket)
            if not ticket.future.done():      # the client left: nobody reads the outcome
                ticket.future.add_done_callback(_consume)

    def retry_after(self):
        """Seconds until the queue has likely drained by a batch (at least 1)."""
        per_batch = self._batch_seconds or 1.0
        return max(1, math.ceil(per_batch * (self.admitted / self.max_batch + 1)))

    def timed_out(self):
        """The 504 error of a request that waited past its deadline."""
        return TimedOut(f"The request waited more than {self.timeout:g} s in the "
                        "server's queue; retry later or raise --request-timeout.")

    def _gauge(self):
        if self.metrics is not None:
            self.metrics.queue_length.set(self.admitted)
            self.metrics.in_model.set(self.running)

    # ------------------------------------------------------------------ worker
    async def _work(self):
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            oldest = self._waiting[0].queued
            while len(self._waiting) < self.max_batch:
                left = oldest + self.batch_wait - loop.time()
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except TimeoutError:
                    break
            batch = self._take(loop.time())
            if batch:
                await self._run_batch(loop, batch)

    def _take(self, now):
        """Up to max_batch queued tickets, oldest first; expired ones get 504."""
        batch = []
        while self._waiting and len(batch) < self.max_batch:
            ticket = self._waiting.popleft()
            if now >= ticket.deadline:
                self.admitted -= 1
                ticket.state = "left"
                ticket.future.set_exception(self.timed_out())
                continue
            ticket.state = "running"
            self.admitted -= 1
            batch.append(ticket)
        self.running = len(batch)
        self._gauge()
        return batch

    async def _run_batch(self, loop, batch):
        started = time.perf_counter()
        try:
            outcomes = await loop.run_in_executor(self._executor, self._call,
                                                  [t.image for t in batch])
        except Exception as e:  # noqa: BLE001 - the executor itself failed
            outcomes = [e] * len(batch)
        seconds = time.perf_counter() - started
        self._batch_seconds = seconds if self._batch_seconds is None else \
            0.8 * self._batch_seconds + 0.2 * seconds
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))
            self.metrics.model_seconds.observe(seconds)
        for ticket, outcome in zip(batch, outcomes):
            ticket.image = None
            if ticket.future.done():
                continue
            if isinstance(outcome, Exception):
                ticket.future.set_exception(outcome)
            else:
                ticket.future.set_result(outcome)
        self.running = 0
        self._gauge()

    def _call(self, images):
        """run_batch(images); when a batch fails, each image alone, so only the image
        that fails gets the error. Returns results or exceptions, one per image."""
        try:
            return list(self.run_batch(images))
        except Exception as e:  # noqa: BLE001 - handed to the request that sent it
            if len(images) == 1:
                return [e]
        outcomes = []
        for image in images:
            try:
                outcomes.append(self.run_batch([image])[0])
            except Exception as e:  # noqa: BLE001
                outcomes.append(e)
        return outcomes


def _consume(future):
    """Marks a future's exception as read (its request is gone)."""
    if not future.cancelled():
        future.exception()
