"""The Ray backend: same answers as the serial path, errors recorded, dead workers retried,
interrupted runs resumed without doing an image twice or losing one.

One local Ray instance (2 CPUs, no dashboard) serves the whole module. Without Ray installed
only the test of the missing-Ray message runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pytest
import torch

from diffad.cli import main
from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.selective import REGION_TEST_FOLDER
from diffad.selective.batch import iter_tests
from diffad.selective.dal import SelectiveTest

pytestmark = pytest.mark.usefixtures("torch_threads")

D = 8
LAM = 0.5
KILL, FAIL = 77.0, 99.0  # first pixel values that make _Faulty kill its worker / raise


class _Faulty(SelectiveTest):
    """A test that raises on images starting with FAIL, and kills the worker process that
    first meets an image starting with KILL (once: a marker file records the death)."""

    marker = ""
    driver_pid = -1

    def test_prepared(self, image, reference=None, method=None):
        first = float(np.asarray(image).flat[0])
        if first == FAIL:
            raise ValueError("this image is broken")
        if first == KILL and os.getpid() != self.driver_pid and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # the worker dies mid-task, as on a lost node or an OOM kill
        return super().test_prepared(image, reference, method)


class _Unpickled(SelectiveTest):
    """A test that leaves one file in ``folder`` each time it is unpickled."""

    folder = ""

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(os.path.join(self.folder, f"{os.getpid()}-{id(self)}"), "w"):
            pass


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    except Exception as err:  # a sandbox without the ports or shared memory Ray needs
        pytest.skip(f"a local Ray instance cannot start here: {err}")
    # The faulty test class lives in this module, which Ray workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_model")
    rng = np.random.default_rng(0)
    loc = DDPMLocalizer(
        unet={"channels": [4, 8]},
        t_start=460,
        train_steps=5,
        batch_size=8,
        device="cpu",
        verbose=False,
        score="l1",
    ).fit(rng.standard_normal((16, 1, D, D)).astype(np.float32))
    healthy = rng.standard_normal((8, 1, D, D)).astype(np.float32)
    loc.calibrate(healthy)
    loc.save(root / "model")
    SelectiveTest(loc).calibrate(healthy).save(root / "model" / REGION_TEST_FOLDER)
    return loc, root


@pytest.fixture(scope="module")
def images():
    """Six images (three lesioned) and their references."""
    rng = np.random.default_rng(3)
    imgs = rng.standard_normal((6, D, D))
    imgs[:3, 2:5, 2:5] += 3.0
    return imgs, rng.standard_normal((6, D, D))


def _tester(loc, cls=SelectiveTest):
    return cls(loc, 1.0, lam=LAM, device="cpu", termination="precision")


def _same(a, b):
    """Two parametric results agree in everything a p-value depends on (every image of the
    fixture selects a region at LAM, so both have a p-value and a truncation set)."""
    assert a.selected and b.selected and a.intervals is not None and b.intervals is not None
    assert a.p_value == b.p_value and a.p_value_bounds == b.p_value_bounds
    np.testing.assert_array_equal(a.region, b.region)
    np.testing.assert_array_equal(a.intervals, b.intervals)
    assert (a.z, a.region_size, a.n_pieces) == (b.z, b.region_size, b.n_pieces)


def test_missing_ray_is_one_clear_error(monkeypatch):
    from diffad.selective.ray_backend import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ValueError, match=r"needs Ray: pip install 'diffad\[ray\]'"):
        import_ray()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "spark"}, "backend must be one of"),
        ({"address": "auto"}, "apply to backend='ray' only"),
        ({"gpus_per_task": 1}, "apply to backend='ray' only"),
        ({"backend": "ray", "gpus_per_task": -1}, "gpus_per_task must be >= 0"),
        ({"backend": "ray", "max_retries": -1}, "max_retries must be"),
        ({"backend": "ray", "n_jobs": 0}, "n_jobs must be"),
    ],
)
def test_bad_backend_options_fail_before_anything_starts(model, images, options, message):
    with pytest.raises(ValueError, match=message):
        _tester(model[0]).test_many(*images, **options)
    with pytest.raises(ValueError, match=message):
        iter_tests(_tester(model[0]), images[0], **options)  # at the call, not on next()


def test_ray_gives_the_serial_p_values_intervals_and_regions(ray_local, model, images):
    tester = _tester(model[0])
    serial = tester.test_many(*images)
    assert all(r.selected for r in serial)
    on_ray = tester.test_many(*images, backend="ray", n_jobs=2)
    for a, b in zip(serial, on_ray, strict=True):
        _same(a, b)
    for method in ("oc", "naive"):
        ser = tester.test_many(images[0][:3], images[1][0], method)
        ray_ = tester.test_many(images[0][:3], images[1][0], method, backend="ray", n_jobs=-1)
        assert [r.p_value for r in ray_] == [r.p_value for r in ser]
    blind = SelectiveTest(model[0], 1.0, lam=1e3, device="cpu")  # selects nothing
    for a, b in zip(blind.test_many(*images), blind.test_many(*images, backend="ray"), strict=True):
        assert not b.selected and b.message == a.message
        np.testing.assert_array_equal(a.region, b.region)
    assert ray_local.is_initialized()  # the caller's instance is left running


def test_the_test_is_shipped_once_per_worker_not_per_image(ray_local, model, tmp_path):
    tester = _tester(model[0], _Unpickled)
    tester.folder = str(tmp_path)
    imgs = np.random.default_rng(5).standard_normal((12, D, D))
    assert len(tester.test_many(imgs, imgs[0], "naive", backend="ray", n_jobs=2)) == 12
    assert 1 <= len(os.listdir(tmp_path)) <= 2  # two workers at most, 12 tasks


def test_an_image_that_raises_becomes_an_error_and_the_others_complete(ray_local, model, images):
    tester = _tester(model[0], _Faulty)
    imgs = images[0].copy()
    imgs[1, 0, 0] = FAIL
    outcomes = dict(iter_tests(tester, imgs, list(images[1]), backend="ray", n_jobs=2))
    assert sorted(outcomes) == list(range(6))
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "this image is broken"
    serial = _tester(model[0]).test_many(imgs[[0, 2, 3, 4, 5]], images[1][[0, 2, 3, 4, 5]])
    for k, ref in zip((0, 2, 3, 4, 5), serial, strict=True):
        _same(outcomes[k], ref)
    with pytest.raises(ValueError, match="this image is broken"):  # the list API raises
        tester.test_many(imgs, images[1], backend="ray", n_jobs=2)


def test_a_killed_worker_is_retried_and_the_run_completes(ray_local, model, images, tmp_path):
    tester = _tester(model[0], _Faulty)
    tester.marker, tester.driver_pid = str(tmp_path / "died"), os.getpid()
    imgs = images[0].copy()
    imgs[2, 0, 0] = KILL
    on_ray = tester.test_many(imgs, images[1], backend="ray", n_jobs=2, max_retries=2)
    assert os.path.exists(tester.marker)  # a worker did die
    for a, b in zip(_tester(model[0]).test_many(imgs, images[1]), on_ray, strict=True):
        _same(a, b)
    # Without retries the image is recorded as failed and the others still complete.
    tester.marker = str(tmp_path / "died_again")
    outcomes = dict(
        iter_tests(tester, imgs, list(images[1]), backend="ray", n_jobs=2, max_retries=0)
    )
    assert isinstance(outcomes[2], RuntimeError) and "failed 1 time(s)" in str(outcomes[2])
    assert all(not isinstance(outcomes[k], Exception) for k in (0, 1, 3, 4, 5))


def _cli_args(**over):
    base = dict(
        backend="ray", workers=2, address=None, gpus_per_task=0, max_retries=3,
        method="parametric", termination="precision", alpha=0.05, quiet=True,
    )  # fmt: skip
    return argparse.Namespace(**{**base, **over})


def test_an_interrupted_run_resumes_without_doing_an_image_twice(
    ray_local, model, images, tmp_path
):
    from diffad.cli.region_pvalues import compute_results
    from diffad.selective.result_log import ResultLog

    names = [f"img{i}" for i in range(6)]
    path, settings = tmp_path / "log.jsonl", {"run": 1}

    class Interrupted(ResultLog):
        """Ctrl-C in the driver after the third result is written, tasks still in flight."""

        def put(self, key, result):
            super().put(key, result)
            if len(self) == 3:
                raise KeyboardInterrupt

    tester = _tester(model[0])
    with pytest.raises(KeyboardInterrupt):
        log = Interrupted(path, settings)
        compute_results(_cli_args(), tester, names, images[0], [images[1][0]] * 6, log)
    first = [json.loads(ln)["key"] for ln in path.read_text().splitlines()]
    assert len(first) == 3

    class Counting(ResultLog):
        computed: list = []

        def put(self, key, result):
            self.computed.append(key)
            super().put(key, result)

    log = Counting(path, settings)
    results = compute_results(_cli_args(), tester, names, images[0], [images[1][0]] * 6, log)
    assert sorted(log.computed) == sorted(set(names) - set(first))  # only the missing ones
    keys = [json.loads(ln)["key"] for ln in path.read_text().splitlines()]
    assert sorted(keys) == sorted(names)  # every image once: none twice, none lost
    serial = tester.test_many(images[0], images[1][0])
    for a, b in zip(serial, results, strict=True):
        _same(a, b)


def test_cli_ray_and_joblib_write_identical_p_values(ray_local, model, images, tmp_path, capsys):
    _, root = model
    np.save(tmp_path / "stack.npy", images[0])
    base = ["test", "--model", str(root / "model"), "--images", str(tmp_path / "stack.npy")]
    base += ["--npy-3d", "stack", "--device", "cpu", "--quiet", "--check", "0", "--lam", "0.5"]
    base += ["--method", "parametric"]
    records = {}
    for backend in ("joblib", "ray"):
        out = tmp_path / f"{backend}.jsonl"
        assert main([*base, "--backend", backend, "--workers", "2", "--out", str(out)]) == 0
        lines = [json.loads(ln) for ln in out.read_text().splitlines()]
        # Everything but the time a test took.
        records[backend] = {r["key"]: {**r["result"], "seconds": 0} for r in lines}
    assert len(records["ray"]) == 6 and records["ray"] == records["joblib"]
    # A joblib log is resumed by a Ray run (the backend does not change the p-values).
    argv = [*base, "--backend", "ray", "--out", str(tmp_path / "joblib.jsonl")]
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("resuming: 6 result(s)")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--address", "auto"], "--address needs --backend ray"),
        (["--gpus-per-task", "1"], "--gpus-per-task needs --backend ray"),
        (["--backend", "ray", "--workers", "0"], "--workers must be"),
        (["--backend", "ray", "--gpus-per-task", "-1"], "--gpus-per-task must be >= 0"),
        (["--backend", "ray", "--max-retries", "-1"], "--max-retries must be >= 0"),
        (["--backend", "ray", "--device", "cuda"], "needs --gpus-per-task"),
    ],
)
def test_cli_backend_errors_are_one_line(model, tmp_path, capsys, extra, message):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((D, D)))
    argv = ["test", "--model", str(model[1] / "model"), "--images", str(x), "--quiet"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffad: error:") and message in err and err.count("\n") == 1


def test_cli_unknown_backend_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["test", "--model", "m", "--images", "x", "--backend", "spark"])
    assert stop.value.code == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ray_tasks_trace_on_the_gpu_they_request(ray_local, model, images):
    if ray_local.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("the local Ray instance has no GPU")
    cpu = _tester(model[0]).test_many(*images)
    gpu = SelectiveTest(model[0], 1.0, lam=LAM, device="cuda", termination="precision")
    on_gpu = gpu.test_many(*images, backend="ray", n_jobs=1, gpus_per_task=1)
    for a, b in zip(cpu, on_gpu, strict=True):
        np.testing.assert_array_equal(a.region, b.region)
        assert a.selected and b.p_value == pytest.approx(a.p_value, abs=1e-6)
