"""Job functions for executor tests: importable by spawned workers and Ray."""

import os
from pathlib import Path


def square(job):
    # leave a trace, so tests can tell which jobs really ran
    Path(job["trace"]).joinpath(job["key"]).write_text(str(os.getpid()))
    return {"value": job["x"] ** 2}


def fail_on_two(job):
    if job["x"] == 2:
        raise ValueError("boom")
    return square(job)


def nap(job):
    """Leave the worker's pid, then sleep: a job still in flight when the test interrupts or kills its parent."""
    import time

    Path(job["trace"]).joinpath(job["key"]).write_text(str(os.getpid()))
    time.sleep(job["sleep"])
    return {"slept": job["sleep"]}


def visible_gpu(job):
    """The GPU this worker was given (CUDA_VISIBLE_DEVICES), after a pause so that every worker gets a job."""
    import time

    time.sleep(job["sleep"])
    return {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}
