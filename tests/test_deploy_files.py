"""deploy/compose.yaml and deploy/Dockerfile, checked without Docker (none runs here): the
services fit together, and every setting, command and file they name exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.cli import build_parser
from herd.config import SETTINGS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
HERD_SERVICES = {"import-demo", "gateway1", "gateway2", "worker1", "worker2"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["volumes"]) == {"models"}
    found: dict[str, Any] = compose["services"]
    return found


def _herd_argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        command = shlex.split(command[2].replace('"$(python -m herd.demo)"', "Modelfile"))
    assert command[0] == "herd"
    return list(command[1:])


def test_the_services_and_the_published_port(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "nginx", *HERD_SERVICES}
    assert services["nginx"]["ports"] == ["11434:11434"]
    assert all("ports" not in services[name] for name in HERD_SERVICES)  # only through nginx
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_every_herd_setting_named_exists(services: dict[str, Any]) -> None:
    known = {f"HERD_{s.name}" for s in SETTINGS}
    named = {key for name in HERD_SERVICES for key in services[name].get("environment", {})}
    named |= set(re.findall(r"\b(HERD_[A-Z_]+)=", (DEPLOY / "Dockerfile").read_text()))
    assert named and named <= known, named - known


def test_herd_services_share_one_store_and_one_redis(services: dict[str, Any]) -> None:
    for name in HERD_SERVICES:
        env = services[name]["environment"]
        assert f"models:{env['HERD_MODELS']}" in services[name]["volumes"], name
        build_parser().parse_args(_herd_argv(services[name]))  # a verb and arguments herd knows
    for name in HERD_SERVICES - {"import-demo"}:
        assert services[name]["environment"]["HERD_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["import-demo"]["condition"] == "service_completed_successfully"
    assert "--appendonly" in services["redis"]["command"]


def test_nginx_balances_exactly_the_gateway_services(services: dict[str, Any]) -> None:
    site = (DEPLOY / "nginx" / "herd.conf").read_text()
    upstreams = re.findall(r"^\s*server\s+(\S+):(\d+)\s", site, flags=re.MULTILINE)
    gateways = {name for name in HERD_SERVICES if _herd_argv(services[name])[0] == "gateway"}
    assert {host for host, _ in upstreams} == gateways == {"gateway1", "gateway2"}
    for host, port in upstreams:
        assert services[host]["environment"]["HERD_HOST"] == f"0.0.0.0:{port}"
    assert re.search(r"^\s*listen 11434;", site, flags=re.MULTILINE)
    # The mounts put each file where the other expects it.
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in services["nginx"]["volumes"])
    assert mounts == {"./nginx/herd.conf": "/etc/nginx/conf.d/default.conf",
                      "./nginx/proxy.conf": "/etc/nginx/herd/proxy.conf"}
    assert all((DEPLOY / source).is_file() for source in mounts)
    include, = re.findall(r"^\s*include\s+(\S+);", site, flags=re.MULTILINE)
    assert "/etc/nginx/" + include == mounts["./nginx/proxy.conf"]


def test_dockerfile_copies_what_exists_and_installs_the_worker() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    root = DEPLOY.parent
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _ = line.split()
        assert all((root / source).exists() for source in sources), line
    assert '".[worker]"' in text and "use_extra_bufts" in text
    assert "use_extra_bufts = extra_buffer_types_safe()" in (root / "worker" / "llama_model.py").read_text()
