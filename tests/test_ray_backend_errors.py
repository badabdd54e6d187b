"""`--backend ray` that cannot run (Ray missing, no cluster at the address) is one error line from
the CLI, within seconds, saying what to do: never a traceback or a wait of minutes."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from dreamgym.cli import main

EVALUATE = ["evaluate", "LatentDoomTakeCover-v0", "--policy", "random", "--episodes", "1", "--backend", "ray"]


def closed_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_ray_session(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process (the CLI would use it)")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    return ray


def test_ray_backend_without_ray_installed_is_one_error_line_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(EVALUATE) == 1
    err = capsys.readouterr().err
    assert "dreamgym evaluate: error: " in err and 'pip install "dreamgym[ray]"' in err
    assert "Traceback" not in err


def test_ray_backend_at_address_auto_without_a_cluster_is_one_error_line(no_ray_session, capsys):
    try:
        from ray._private.services import (
            find_gcs_addresses,  # how Ray's "auto" finds a cluster here
        )
    except ImportError:  # moved in another Ray version: assume none runs
        find_gcs_addresses = tuple
    if find_gcs_addresses():
        pytest.skip("a Ray cluster is running on this machine, so 'auto' would find it")
    start = time.monotonic()
    assert main([*EVALUATE, "--address", "auto"]) == 1
    assert time.monotonic() - start < 60
    err = capsys.readouterr().err
    assert "dreamgym evaluate: error: no Ray cluster answers at address 'auto'" in err
    assert "ray start --head" in err and "Traceback" not in err
    assert not no_ray_session.is_initialized()


@pytest.mark.parametrize("via_environment", [False, True], ids=["host:port", "auto with RAY_ADDRESS"])
def test_ray_backend_with_nothing_listening_at_the_address_fails_within_seconds(
    no_ray_session, monkeypatch, capsys, via_environment
):
    """ray.init itself would retry such an address for minutes."""
    address = f"127.0.0.1:{closed_port()}"
    if via_environment:
        monkeypatch.setenv("RAY_ADDRESS", address)
    start = time.monotonic()
    assert main([*EVALUATE, "--address", "auto" if via_environment else address]) == 1
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert f"dreamgym evaluate: error: no Ray cluster answers at address '{address}'" in err
    assert "ray start --head" in err and "Traceback" not in err
