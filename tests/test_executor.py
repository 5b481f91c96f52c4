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


RUN_NAPS = """
import signal, sys
sys.path.insert(0, {tests!r})
from _jobs import nap
from avatar.cli import _interrupt, Interrupted
from avatar.executor import LocalExecutor, run_jobs
signal.signal(signal.SIGINT, _interrupt)
jobs = [{{"key": f"k{{i}}", "trace": {trace!r}, "sleep": s}} for i, s in enumerate({sleeps!r})]
try:
    run_jobs(nap, jobs, {results!r}, LocalExecutor(2))
except Interrupted:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead: it only waits for its parent to read its status
        return f.read().split(")")[-1].split()[0] != "Z"


def _start_naps(tmp_path, sleeps):
    import os
    import subprocess
    import time

    trace, results = tmp_path / "trace", tmp_path / "results"
    trace.mkdir()
    code = RUN_NAPS.format(tests=str(Path(__file__).parent), trace=str(trace), sleeps=sleeps, results=str(results))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    deadline = time.time() + 60
    while len(list(trace.iterdir())) < 2 and time.time() < deadline:  # both workers busy
        time.sleep(0.1)
    return proc, trace, results


def test_workers_die_with_a_killed_parent(tmp_path):
    import signal
    import time

    proc, trace, _ = _start_naps(tmp_path, [120, 120])
    workers = [int(p.read_text()) for p in trace.iterdir()]
    assert len(workers) == 2 and all(_alive(w) for w in workers)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its killed parent"


def test_ctrl_c_keeps_finished_jobs_drops_the_rest_at_once_and_prints_no_traceback(tmp_path):
    import signal
    import time

    proc, trace, results = _start_naps(tmp_path, [0, 0, 120, 120])
    deadline = time.time() + 60
    while len(list(results.glob("*.json"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    while len(list(trace.iterdir())) < 4 and time.time() < deadline:  # the long jobs are in flight
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in trace.iterdir()]
    start = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and out.strip() == "interrupted" and time.time() - start < 10
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert sorted(p.name for p in results.glob("*.json")) == ["k0.json", "k1.json"]  # the finished ones are kept
    assert not any(_alive(w) for w in workers)
