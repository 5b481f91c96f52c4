import sys
from pathlib import Path

import pytest

from avatar.errors import AvatarError
from avatar.executor import LocalExecutor, make_executor, run_jobs

sys.path.insert(0, str(Path(__file__).parent))
from _jobs import fail_on_two, square  # noqa: E402


BACKENDS = {"local-1": lambda: LocalExecutor(1), "local-2": lambda: LocalExecutor(2)}


@pytest.fixture(params=[*BACKENDS, "ray"])
def executor(request, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # spawned workers import the job function
    if request.param == "ray":
        return request.getfixturevalue("ray_executor")
    return BACKENDS[request.param]()


def test_runs_every_job_and_resumes_without_redoing(tmp_path, executor):
    trace = tmp_path / "trace"
    trace.mkdir()
    jobs = [{"key": f"k{i}", "x": i, "trace": str(trace)} for i in range(4)]
    done = run_jobs(square, jobs[:2], tmp_path / "results", executor)
    assert done == {"k0": {"value": 0}, "k1": {"value": 1}}
    for p in trace.iterdir():
        p.unlink()
    everything = run_jobs(square, jobs, tmp_path / "results", executor)  # as after an interruption
    assert everything == {f"k{i}": {"value": i * i} for i in range(4)}
    assert sorted(p.name for p in trace.iterdir()) == ["k2", "k3"]  # finished jobs were not run again


def test_a_damaged_result_is_redone(tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "k0.json").write_text("{half")
    assert run_jobs(square, [{"key": "k0", "x": 3, "trace": str(trace)}], tmp_path / "results", LocalExecutor(1)) == {"k0": {"value": 9}}


def test_unknown_backend():
    with pytest.raises(AvatarError, match="unknown executor 'slurm'"):
        make_executor("slurm")


def test_a_failing_job_keeps_finished_results_and_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    trace = tmp_path / "trace"
    trace.mkdir()
    jobs = [{"key": f"k{i}", "x": i, "trace": str(trace)} for i in range(4)]
    with pytest.raises(ValueError, match="boom"):
        run_jobs(fail_on_two, jobs, tmp_path / "results", LocalExecutor(1))
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["k0.json", "k1.json"]
