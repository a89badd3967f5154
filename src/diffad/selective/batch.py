"""A batch of region tests on a backend, each result handed back as soon as it is known.

:func:`iter_tests` is the streaming core under ``diffad test``: it yields ``(index, outcome)``
pairs as tests finish, so a caller can write every result to disk at once (see
:class:`~diffad.selective.result_log.ResultLog`) and lose nothing when the run stops.
:meth:`SelectiveTest.test_many <diffad.selective.dal.SelectiveTest.test_many>`
is the list-returning form, on top of it.

Backends: ``"joblib"`` runs in this process (``n_jobs=1``) or in local joblib worker
processes; ``"ray"`` runs one Ray task per image on a local Ray instance or an existing
cluster (:mod:`diffad.selective.ray_backend`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from diffad.selective.result import IMAGE_ERRORS, Outcome

#: Backends of :func:`iter_tests` and ``SelectiveTest.test_many``.
BACKENDS = ("joblib", "ray")


def check_backend(
    backend: str,
    address: str | None,
    gpus_per_task: float,
    max_retries: int,
    n_jobs: int | None = 1,
) -> None:
    """Reject an unknown backend, Ray-only options on joblib, negative resources and (for
    Ray, before it starts) a worker count that is not positive, -1 or None.

    Raises
    ------
    ValueError
        With one line saying which option is wrong.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(gpus_per_task, bool) or not (gpus_per_task >= 0):
        raise ValueError(f"gpus_per_task must be >= 0, got {gpus_per_task!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if backend != "ray" and (address is not None or gpus_per_task):
        raise ValueError("address and gpus_per_task apply to backend='ray' only")
    bad_jobs = isinstance(n_jobs, bool) or not (
        n_jobs is None or (isinstance(n_jobs, int) and (n_jobs >= 1 or n_jobs == -1))
    )
    if backend == "ray" and bad_jobs:
        raise ValueError(f"n_jobs must be a positive integer, -1 or None, got {n_jobs!r}")


def _capture(tester: Any, index: int, image: Any, reference: Any, method: str) -> tuple:
    """``(index, result)``, or ``(index, error)`` for an error of this image's test."""
    try:
        return index, tester.test_prepared(image, reference, method)
    except IMAGE_ERRORS as err:
        return index, err


def iter_tests(
    tester: Any,
    images: Sequence[Any],
    references: Sequence[Any] | None = None,
    method: str = "parametric",
    *,
    backend: str = "joblib",
    n_jobs: int | None = 1,
    address: str | None = None,
    gpus_per_task: float = 0,
    max_retries: int = 3,
) -> Iterator[tuple[int, Outcome]]:
    """Test each image and yield ``(index, outcome)`` as each test finishes.

    Parameters
    ----------
    tester : SelectiveTest
        The configured test (model, noise, λ, search settings).
    images : sequence of array-like
        The images in model layout and scale (``SelectiveTest.test_prepared``; e.g. the
        ``image`` of a ``LocalizationResult``).
    references : sequence of array-like, optional
        One reference per image; ``None`` for the localizer's default reference.
    method : str
        As in :meth:`SelectiveTest.test`.
    backend : {"joblib", "ray"}
        Where the tests run (see the module docstring).
    n_jobs : int or None
        joblib: worker processes (1 or None: in this process, -1: all cores). Ray: images
        tested at once (None or -1: twice what the cluster can run at once, so that an
        autoscaler sees the demand); a local Ray instance started here gets this many CPUs.
    address : str, optional
        Ray only: the cluster to connect to (``"auto"``, ``"ray://host:10001"``, …); default:
        the running instance if Ray is initialised, else ``$RAY_ADDRESS``, else a new local one.
    gpus_per_task : float
        Ray only: GPUs each task requests (fractions share a GPU). Ray hides the GPUs from
        tasks that request none, so they trace on CPU.
    max_retries : int
        Ray only: times a task is rerun when its worker process dies.

    Yields
    ------
    (int, SelectiveTestResult or Exception)
        The image's index in ``images`` and its result. A ``ValueError`` or ``RuntimeError``
        of one image's test is yielded in place of its result (with Ray: also a worker that
        died on every attempt, as ``RuntimeError``) and the other images go on; any other
        exception stops the batch. Order: input order for joblib, completion order for Ray.
    """
    # Checked here, not on the first next(): a bad option fails where the call is made.
    check_backend(backend, address, gpus_per_task, max_retries, n_jobs)
    refs = [None] * len(images) if references is None else list(references)
    if len(refs) != len(images):
        raise ValueError(f"{len(refs)} references for {len(images)} images")
    return _iterate(
        tester, images, refs, method, backend, n_jobs, address, gpus_per_task, max_retries
    )


def _iterate(
    tester: Any,
    images: Sequence[Any],
    refs: list,
    method: str,
    backend: str,
    n_jobs: int | None,
    address: str | None,
    gpus_per_task: float,
    max_retries: int,
) -> Iterator[tuple[int, Outcome]]:
    """The generator behind :func:`iter_tests` (arguments checked)."""
    if backend == "ray":
        from diffad.selective.ray_backend import iter_ray

        yield from iter_ray(
            tester,
            images,
            refs,
            method,
            n_jobs=n_jobs,
            address=address,
            gpus_per_task=gpus_per_task,
            max_retries=max_retries,
        )
    elif n_jobs in (None, 1):
        for i, (x, r) in enumerate(zip(images, refs, strict=True)):
            yield _capture(tester, i, x, r, method)
    else:
        from joblib import Parallel, delayed

        # Input order, streamed: each result is yielded as soon as it and those before it
        # are done; the tester is pickled with each task.
        yield from Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_capture)(tester, i, x, r, method)
            for i, (x, r) in enumerate(zip(images, refs, strict=True))
        )
