"""A Dask cluster that fails a batch stage is one line, not a traceback or a wait for ever (the
crystal/Dask probe of session 47: a scheduler without workers, a service that is not a scheduler,
a scheduler lost mid-run and workers without the package hung or gave tracebacks; "localhost:8786"
was read as a bad local:N; ensemble gave a ValueError traceback for a malformed address)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fcinv_widgets import dataset as ds
from fcinv_widgets.cli import main
from fcinv_widgets.errors import FcinvError

pytest.importorskip("distributed")


def test_localhost_is_an_address_not_local_n():
    import argparse

    from fcinv_widgets.commands._common import scheduler_address

    assert scheduler_address("localhost:8786") == "localhost:8786"
    assert scheduler_address("local:2") == "local:2" and scheduler_address("local") == "local"
    with pytest.raises(argparse.ArgumentTypeError, match="local:N"):
        scheduler_address("local:x")
    assert ds._is_local("local:2") and not ds._is_local("localhost:8786")
    with pytest.raises(argparse.ArgumentTypeError, match="inproc:// addresses live inside one Python process"):
        scheduler_address("inproc://x")


def test_a_scheduler_without_workers_is_one_line(monkeypatch):
    from dask.distributed import LocalCluster

    monkeypatch.setattr(ds, "DASK_NO_WORKER_S", 2.0)
    with LocalCluster(n_workers=0, dashboard_address=None, processes=False) as cluster:
        t0 = time.perf_counter()
        with pytest.raises(FcinvError, match="has no worker"):
            ds.dask_client(cluster.scheduler_address)
        assert time.perf_counter() - t0 < 30


def test_a_service_that_is_not_a_scheduler_is_given_up(monkeypatch):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held = []
    stop = threading.Event()

    def accept():  # accepts and says nothing, as a wrong service on the port would
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setattr(ds, "DASK_CONNECT_S", 2.0)
    try:
        t0 = time.perf_counter()
        with pytest.raises(FcinvError, match="cannot connect to the Dask scheduler"):
            ds.dask_client(f"tcp://127.0.0.1:{srv.getsockname()[1]}")
        assert time.perf_counter() - t0 < 30
    finally:
        stop.set()
        for c in held:
            c.close()
        srv.close()


def test_workers_without_the_package_are_named():
    class FakeClient:
        def wait_for_workers(self, n, timeout):
            return None

        def run(self, fn):
            return {"tcp://10.0.0.1:1": True, "tcp://10.0.0.2:1": False}

    with pytest.raises(FcinvError, match="1 of the 2 Dask workers .* cannot import fcinv_widgets .*10.0.0.2"):
        ds._check_workers(FakeClient(), "tcp://x:1")


def test_a_scheduler_lost_mid_run_is_one_line(tmp_path, monkeypatch):
    """A scheduler process that dies while its worker runs the stage's tasks."""
    import json
    import os
    import signal
    import subprocess
    import sys

    monkeypatch.setattr(ds, "DASK_NO_WORKER_S", 3.0)
    bin_dir = os.path.dirname(sys.executable)
    info = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "error"}
    sched = subprocess.Popen(
        [os.path.join(bin_dir, "dask"), "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    worker = None
    try:
        for _ in range(200):
            if info.exists() and info.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen(
            [os.path.join(bin_dir, "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        threading.Timer(8.0, lambda: os.killpg(sched.pid, signal.SIGKILL)).start()
        t0 = time.perf_counter()
        with pytest.raises(FcinvError, match="lost the Dask scheduler|no Dask worker left|did not finish"):
            ds.run_tasks(time.sleep, [((60.0,), {}), ((60.0,), {})], "slow", scheduler=address)  # (a function every worker has)
        assert time.perf_counter() - t0 < 55
    finally:
        for p in (sched, worker):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def test_ensemble_refuses_a_malformed_address_in_one_line(capsys):
    rc = main(
        [
            "ensemble",
            "--material",
            "Ge",
            "--models",
            "CHGNet-0.3.0",
            "--supercell",
            "2",
            "2",
            "2",
            "--scheduler",
            "foo bar",
            "--out",
            "/tmp/never.h5",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Dask scheduler" in err[0], err
