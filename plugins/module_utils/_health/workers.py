# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The worker threads that run rounds and queries (health_gate's poller, rollback_watch), and the commands they
run, so that a shutdown (the deadline, a SIGTERM) ends them."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from concurrent.futures import Future

# The command each worker thread is running, so that a pool's shutdown (the deadline, SIGTERM) can end them.
_RUNNING = {}
_RUNNING_LOCK = threading.Lock()


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass  # it ended on its own


class WorkerPool:
    """Daemon worker threads for rounds and queries, started as work arrives (at most `max_workers`).

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so a round stuck on an endpoint that
    never answers, or a long command, would hold the module past its deadline or a SIGTERM. Daemon threads do not
    hold the exit, and `shutdown()` kills the commands they run.
    """

    def __init__(self, max_workers, name="health_gate"):
        self._max = max(1, max_workers)
        self._name = name
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = []
        self._idle = 0
        self._closed = False

    def submit(self, fn, *args):
        future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._queue.put((future, fn, args))
            if self._queue.qsize() > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name="%s_%d" % (self._name, len(self._threads)),
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self):
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # pylint: disable=broad-except  # handed to whoever waits on the future
                future.set_exception(err)

    def shutdown(self):
        """Cancel the work not started, stop the threads once idle, and kill the commands still running."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for unused in threads:
            self._queue.put(None)
        with _RUNNING_LOCK:
            procs = [proc for thread, proc in _RUNNING.items() if thread in threads]
        for proc in procs:
            kill_group(proc)


@contextlib.contextmanager
def killed_on_shutdown(proc):
    """Within the block, the shutdown of the pool whose thread runs it kills `proc`'s process group."""
    me = threading.current_thread()
    with _RUNNING_LOCK:
        _RUNNING[me] = proc
    try:
        yield proc
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(me, None)
