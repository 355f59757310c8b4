"""Batching of model calls across conversations that run at the same time.

The graphs call the models one conversation at a time (one prompt, one context). Replay and
simulation run many threads of conversation at once, each in its own worker thread; a `CallBatcher`
wraps the batched methods of the loaded models (`LLM.generate`, `CRS.generate_features`,
`CRS.user_vectors`, which take lists) so that calls made while other workers are busy wait, and
once every running worker is waiting on a model call, the calls of one kind are merged into one
batched call and each caller gets its own slice of the result.

    batcher = CallBatcher()
    batch_models(batcher, crs_models=[crs], llm_models=[llm])   # or batcher.wrap(obj, "method", ...)
    results = run_concurrently(jobs, workers=16, batcher=batcher)
    batcher.restore()

Merged calls give the same outputs as separate ones (greedy decoding, left padding with an attention
mask): only their speed differs. When a merged call fails, its requests are run one by one, so only
the caller whose input fails gets the error. A waiting call is flushed after `max_wait_s` even when
some worker is busy elsewhere, so nothing can wait forever.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Request:
    key: Hashable
    items: list
    kwargs: dict
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class _Method:
    call: Callable  # the original bound method: call(items, **kwargs)
    split: Callable[[Any, list[int]], list[Any]]  # result of a merged call -> one result per request
    max_batch: int


def split_list(result: Sequence, sizes: list[int]) -> list[list]:
    out, start = [], 0
    for n in sizes:
        out.append(list(result[start:start + n]))
        start += n
    return out


def split_pair(result: tuple, sizes: list[int]) -> list[tuple]:
    """For methods returning (array of rows, list of rows), e.g. CRS.user_vectors."""
    first, second = result
    out, start = [], 0
    for n in sizes:
        out.append((first[start:start + n], list(second[start:start + n])))
        start += n
    return out


@dataclass
class CallBatcher:
    max_wait_s: float = 0.5
    active: int = 0
    calls: int = 0  # merged calls made
    requests: int = 0  # calls the callers made
    _methods: dict = field(default_factory=dict)
    _pending: list = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _running: bool = False
    _wrapped: list = field(default_factory=list)  # (object, method name, what its instance held before)
    _jobs_left: int = 0
    _workers: int = 1

    def wrap(self, obj: Any, name: str, key: Callable[[Sequence, dict], Hashable] | None = None,
             split: Callable[[Any, list[int]], list[Any]] = split_list, max_batch: int = 32) -> None:
        """Replace obj.name(items, **kwargs) by a batched version; calls with the same key (and the
        same keyword arguments) may be merged."""
        original = getattr(obj, name)
        self._wrapped.append((obj, name, obj.__dict__.get(name)))
        method_id = (id(obj), name)
        self._methods[method_id] = _Method(original, split, max_batch)

        def batched(items, *args, **kwargs):
            if args:  # positional extras are not merged: call through
                return original(items, *args, **kwargs)
            if isinstance(items, str):
                items = [items]
            extra = key(items, kwargs) if key is not None else None
            group = (method_id, extra, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
            return self._submit(_Request(group, list(items), kwargs))

        setattr(obj, name, batched)

    def restore(self) -> None:
        """Give the wrapped objects their own methods back."""
        for obj, name, before in reversed(self._wrapped):
            if before is None:
                obj.__dict__.pop(name, None)
            else:
                setattr(obj, name, before)
        self._wrapped.clear()
        self._methods.clear()

    # ------------------------------------------------------------------------------------ workers
    def start_jobs(self, jobs: int, workers: int) -> None:
        """`jobs` jobs are about to run on `workers` threads: until fewer are left, that many
        callers are expected (a thread about to start its job counts, so the first calls wait for it)."""
        with self._cond:
            self._jobs_left, self._workers = jobs, workers
            self.active = min(jobs, workers)

    def job_done(self) -> None:
        with self._cond:
            self._jobs_left -= 1
            self.active = min(self._jobs_left, self._workers)
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------ calls
    def _submit(self, request: _Request) -> Any:
        if not request.items:
            return self._methods[request.key[0]].call(request.items, **request.kwargs)
        with self._cond:
            self.requests += 1
            self._pending.append(request)
            self._cond.notify_all()
            waited_since = time.monotonic()
            while not request.done:
                all_waiting = len(self._pending) >= max(1, self.active)
                overdue = time.monotonic() - waited_since > self.max_wait_s
                if self._pending and not self._running and (all_waiting or overdue):
                    self._flush_one()  # releases the lock while the model runs
                    waited_since = time.monotonic()
                else:
                    self._cond.wait(timeout=self.max_wait_s / 5)
        if request.error is not None:
            raise request.error
        return request.result

    def _flush_one(self) -> None:
        """Run the largest group of pending requests as one call (called with the lock held)."""
        sizes: dict = {}
        for r in self._pending:
            sizes[r.key] = sizes.get(r.key, 0) + len(r.items)
        key = max(sizes, key=lambda k: sizes[k])
        method = self._methods[key[0]]
        group, total = [], 0
        for r in self._pending:
            if r.key == key and (not group or total + len(r.items) <= method.max_batch):
                group.append(r)
                total += len(r.items)
        for r in group:
            self._pending.remove(r)
        self._running = True
        self.calls += 1
        self._cond.release()
        try:
            merged = [x for r in group for x in r.items]
            kwargs = dict(group[0].kwargs)
            try:
                parts = method.split(method.call(merged, **kwargs), [len(r.items) for r in group])
                for r, part in zip(group, parts):
                    r.result = part
            except Exception:  # noqa: BLE001 - one caller's bad input must not fail the others: one by one
                for r in group:
                    try:
                        r.result = method.call(r.items, **r.kwargs)
                    except Exception as exc:  # noqa: BLE001 - raised in the caller's thread
                        r.error = exc
        finally:
            self._cond.acquire()
            self._running = False
            for r in group:
                r.done = True
            self._cond.notify_all()


def run_concurrently(jobs: Sequence[Callable[[], T]], workers: int, batcher: CallBatcher | None = None,
                     on_done: Callable[[int, T], None] | None = None) -> list[T]:
    """Run the jobs on `workers` threads (1: one after the other in this thread), results in job
    order; a job that raises makes its result the exception object (the caller reports it)."""

    def run(index: int) -> Any:
        try:
            result = jobs[index]()
        except Exception as exc:  # noqa: BLE001 - reported by the caller, with its job
            log.warning("job %d failed: %s: %s", index, type(exc).__name__, exc)
            result = exc
        finally:
            if batcher is not None:
                batcher.job_done()
        if on_done is not None:
            on_done(index, result)
        return result

    workers = max(1, min(workers, len(jobs)))
    if batcher is not None:
        batcher.start_jobs(len(jobs), workers)
    if workers == 1:
        return [run(i) for i in range(len(jobs))]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, range(len(jobs))))


def batch_models(batcher: CallBatcher, crs_models: Sequence[Any] = (), llm_models: Sequence[Any] = ()) -> None:
    """Wrap the batched methods of loaded CRS and LLM objects (each object once)."""
    seen = set()
    for crs in crs_models:
        if crs is None or id(crs) in seen:
            continue
        seen.add(id(crs))
        _ = crs.index  # built once here, not by two workers at once
        # one generation call decodes one task (its own max_new_tokens)
        batcher.wrap(crs, "generate_features", key=lambda feats, kw: feats[0].task if feats else None)
        batcher.wrap(crs, "user_vectors", split=split_pair)
    for llm in llm_models:
        if llm is None or id(llm) in seen:
            continue
        seen.add(id(llm))
        batcher.wrap(llm, "generate", max_batch=16)
