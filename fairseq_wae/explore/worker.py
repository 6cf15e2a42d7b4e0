"""The model's own thread: every request that runs the model waits in one bounded queue and is run by
one worker thread, in turn. The page and its files are answered by the server's event loop and never
wait behind the model; when the queue is full a request is refused at once (503) rather than held.

One thread, not a lock around a pool: torch's generator, which the sampling seeds, is global, and a
thread pool that the model's requests filled would starve every other route (45 queued one-second
requests held ``GET /`` for 5 s)."""
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Dict, Hashable, Optional

#: requests waiting for the model besides the one it runs: a page sends one at a time per section
MAX_WAITING = 16


class Busy(Exception):
    """The model's queue is full: the page shows the message and the user tries again."""


class ModelWorker:
    def __init__(self, waiting: int = MAX_WAITING):
        self._jobs: "queue.Queue" = queue.Queue(maxsize=waiting)
        self._in_flight: Dict[Hashable, Future] = {}
        self._lock = threading.RLock()  # a future done at once runs its callback inside submit's lock
        threading.Thread(target=self._work, name="explore-model", daemon=True).start()

    def submit(self, job: Callable[[], object], key: Optional[Hashable] = None) -> Future:
        """The future of ``job()``, run on the model's thread; a job of the same ``key`` already waiting or
        running is not queued again: its future is returned (identical requests answered once)."""
        with self._lock:
            if key is not None and key in self._in_flight:
                return self._in_flight[key]
            future: Future = Future()
            try:
                self._jobs.put_nowait((job, future))
            except queue.Full:
                raise Busy(f"the model is busy: {self._jobs.maxsize} requests are waiting for it; try again "
                           "in a moment") from None
            if key is not None:
                self._in_flight[key] = future
                future.add_done_callback(lambda _: self._forget(key))
            return future

    def _forget(self, key: Hashable):
        with self._lock:
            self._in_flight.pop(key, None)

    def _work(self):
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as e:  # noqa: BLE001  (the request's answer, the thread goes on)
                future.set_exception(e)
