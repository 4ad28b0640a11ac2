"""The package layout's promises: a light `import gateway`, no web framework in the domains."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[1] / "gateway"
DOMAINS = ("auth", "tokens", "audit", "infra", "ops", "admin")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", [p for p in DOMAINS if p != "ops"])
def test_domain_packages_never_import_aiohttp_web(package: str) -> None:
    """The domain packages are plain functions and classes; only http/app/dev know aiohttp.web."""
    offenders = {
        str(path.relative_to(GATEWAY)): sorted(
            name
            for name in _imports(path)
            if name == "aiohttp.web" or name.startswith("aiohttp.web.")
        )
        for path in (GATEWAY / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_gateway_loads_no_dependency() -> None:
    """`import gateway` is the version only: no aiohttp, asyncpg or redis module."""
    loaded = _loaded_after("import gateway")
    heavy = {m for m in loaded if m.split(".")[0] in {"aiohttp", "asyncpg", "redis"}}
    assert heavy == set()


def test_admin_commands_load_neither_web_app_nor_dev() -> None:
    """The admin commands' modules load no aiohttp.web, no issuer and no gateway.dev."""
    loaded = _loaded_after(
        "import gateway.cli, gateway.admin.tenants, gateway.admin.revoke, gateway.admin.schema"
    )
    assert not {m for m in loaded if m.startswith(("aiohttp.web", "gateway.dev", "gateway.app"))}
    assert "gateway.tokens.issuer" not in loaded


def test_serve_path_loads_no_dev_module() -> None:
    """What `gateway serve` imports (the app and the runner) never pulls in gateway.dev."""
    loaded = _loaded_after("import gateway.cli, gateway.app, gateway.ops.serve")
    assert not {m for m in loaded if m.startswith("gateway.dev")}
