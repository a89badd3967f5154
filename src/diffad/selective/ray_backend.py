"""The Ray backend of a batch of region tests: one Ray task per image.

The test (its localizer and network included) goes into Ray's object store once per batch
(``ray.put``); every task gets a reference to it, and each worker process deserialises it on
its first task of the batch and keeps it, so the model is shipped once per worker and the
tracer the test builds stays warm between images. At most ``n_jobs`` tasks are in flight:
results come back with ``ray.wait`` as they finish and are released at once, so memory does
not grow with the number of images. A worker process that dies is rerun by Ray up to
``max_retries`` times; an error of the test itself is not retried (it would fail again).

Ray is an optional dependency (``pip install 'diffad[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from diffad.selective.result import IMAGE_ERRORS, Outcome, SelectiveTestResult

INSTALL = "the Ray backend needs Ray: pip install 'diffad[ray]'"

# Worker side: the test of the current batch, by the hex id of its object reference.
_WORKER_TESTER: dict[str, Any] = {}
# Driver side: the remote function, built once per process.
_REMOTE: dict[str, Any] = {}


def import_ray() -> Any:
    """The ``ray`` module, or a ``ValueError`` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ValueError(INSTALL) from err
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[Any]:
    """Ray, initialised for the duration of the block if it was not already.

    An instance started here is shut down at the end; one the caller started (or connected
    to) is left running. ``num_cpus`` sizes a new local instance only: a cluster's resources
    are its own.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
        if address is None and not os.environ.get("RAY_ADDRESS"):
            kwargs.update(num_cpus=num_cpus, include_dashboard=False)
        ray.init(**kwargs)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def portable(tester: Any) -> Any:
    """``tester`` with its network on the CPU, for workers that may have no GPU.

    Each worker moves the network to its own device when it builds the tracer (``device`` of
    the test: ``"auto"`` picks the GPU Ray gave the task), so shipping CPU weights forces
    nothing. The caller's test is not modified: a network on a GPU is copied.
    """
    model = getattr(getattr(tester, "localizer", None), "model_", None)
    if model is None or all(p.device.type == "cpu" for p in model.parameters()):
        return tester
    loc = copy.copy(tester.localizer)
    loc.model_ = copy.deepcopy(model).to("cpu")
    out = copy.copy(tester)  # __getstate__ leaves the tracer cache behind
    out.localizer = loc
    return out


def _run_one(box: list, image: np.ndarray, reference: Any, method: str) -> SelectiveTestResult:
    """Worker side: the test of one image. ``box`` holds the object reference of the test
    (inside a list, so that Ray passes the reference instead of the object)."""
    import ray

    key = box[0].hex()
    tester = _WORKER_TESTER.get(key)
    if tester is None:
        _WORKER_TESTER.clear()  # a new batch: drop the previous model
        tester = _WORKER_TESTER[key] = ray.get(box[0])
    # Ray hands arrays over read-only (zero copy); the test wants its own writable copy.
    ref = None if reference is None else np.array(reference)
    return tester.test_prepared(np.array(image), ref, method)


def _remote(ray: Any) -> Any:
    """The Ray remote function of :func:`_run_one` (created once)."""
    if "run_one" not in _REMOTE:
        _REMOTE["run_one"] = ray.remote(_run_one)
    return _REMOTE["run_one"]


def _window(ray: Any, n_jobs: int | None, gpus_per_task: float) -> int:
    """How many tasks to keep in flight (``n_jobs`` checked by ``check_backend``)."""
    if n_jobs is not None and n_jobs != -1:
        return n_jobs
    res = ray.cluster_resources()
    slots = res.get("GPU", 0) / gpus_per_task if gpus_per_task else res.get("CPU", 1)
    return max(2, 2 * int(slots))


def _outcome(ray: Any, ref: Any, max_retries: int) -> Outcome:
    """The result of a finished task, or the error that becomes the image's record."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # the test raised in the worker
        cause = err.cause
        if isinstance(cause, IMAGE_ERRORS):
            return cause
        if isinstance(cause, Exception):
            raise cause from None  # a bug, as on the local path: stop the batch
        raise
    except ray.exceptions.RayError as err:  # the worker (or its node) died on every attempt
        first = next((ln for ln in str(err).splitlines() if ln.strip()), "")
        return RuntimeError(
            f"the Ray task failed {max_retries + 1} time(s): {type(err).__name__}: {first}"
        )


def iter_ray(
    tester: Any,
    images: Sequence[Any],
    references: Sequence[Any],
    method: str,
    *,
    n_jobs: int | None,
    address: str | None,
    gpus_per_task: float,
    max_retries: int,
) -> Iterator[tuple[int, Outcome]]:
    """Yield ``(index, outcome)`` as each image's Ray task finishes (completion order).

    Arguments as in :func:`diffad.selective.batch.iter_tests`. Closing the generator early
    (an interruption, an error) cancels the tasks still pending.
    """
    num_cpus = n_jobs if isinstance(n_jobs, int) and n_jobs > 0 else None
    with ray_session(address, num_cpus) as ray:
        window = _window(ray, n_jobs, gpus_per_task)
        box = [ray.put(portable(tester))]
        task = _remote(ray).options(
            num_cpus=1,
            num_gpus=gpus_per_task,
            max_retries=max_retries,
            retry_exceptions=False,
        )
        todo = iter(range(len(images)))
        pending: dict[Any, int] = {}
        try:
            while True:
                for i in todo:
                    x = np.asarray(images[i], dtype=np.float64)
                    pending[task.remote(box, x, references[i], method)] = i
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready)
                yield index, _outcome(ray, ready, max_retries)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
