"""Grafana's own npm packages (tests/grafana/package.json), installed once into a cache directory.

The tests use them to check the dashboards as Grafana would: @grafana/schema's TypeScript types through tsc,
and @grafana/data's unit formatters and transformers in node. Without npm or a reachable registry the tests
that need them skip, saying why; an install that fails any other way fails them.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TEST_CACHE_HOME

HERE = Path(__file__).resolve().parent / "grafana"


def cache_dir() -> Path:
    return TEST_CACHE_HOME / "grafana-npm"


def grafana_packages() -> Path:
    """The folder with node_modules/ of tests/grafana/package.json, installed when missing or changed."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed: Grafana's packages cannot be checked against")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    # test processes side by side (pytest-xdist's workers, other checkouts) install one at a time
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _install(target)
    check = target / f"check.cjs.{os.getpid()}"  # swapped in whole: a node reading the old one never sees half
    shutil.copy(HERE / "check.cjs", check)
    check.replace(target / "check.cjs")
    return target


def _install(target: Path) -> None:
    wanted = (HERE / "package.json").read_text()
    stamp = target / "installed-package.json"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        (target / "package.json").write_text(wanted)
        try:
            probe = subprocess.run(["npm", "view", "@grafana/schema@13.2.3", "version"], capture_output=True,
                                   text=True, timeout=60, cwd=target)
        except subprocess.TimeoutExpired:
            probe = None
        if probe is None or probe.returncode != 0:
            pytest.skip("the npm registry is not reachable: Grafana's packages cannot be installed "
                        f"({(probe.stderr.strip().splitlines() or ['timed out'])[-1] if probe else 'timed out'})")
        install = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                                 capture_output=True, text=True, timeout=600, cwd=target)
        assert install.returncode == 0, install.stderr[-2000:]
        stamp.write_text(wanted)


def run_check(packages: Path, request: dict, tz: str = "UTC") -> dict:
    """tests/grafana/check.cjs: unit ids through @grafana/data's formatters, transformations through its
    transformers, in the time zone ``tz`` (the browser's, for calendar periods)."""
    result = subprocess.run(["node", "check.cjs"], input=json.dumps(request), capture_output=True, text=True,
                            timeout=120, cwd=packages, env={**os.environ, "TZ": tz})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def panel_types(packages: Path) -> dict[str, str]:
    """Panel type -> the @grafana/schema module of its options and field config types."""
    exports = json.loads((packages / "node_modules/@grafana/schema/package.json").read_text())["exports"]
    found = {}
    for key in exports:
        parts = key.split("/")
        if len(parts) == 9 and parts[4] == "composable" and parts[6] == "panelcfg":
            found[parts[5]] = "@grafana/schema" + key[1:]
    return found


#: TypeScript's string enums take no string literal; dashboards are JSON: each enum is read as its values.
LOOSE = """type Loose<T> = T extends string ? `${T}` : T extends (infer U)[] ? Loose<U>[]
  : T extends object ? { [K in keyof T]: Loose<T[K]> } : T;
/** The InfluxQL query of Grafana's InfluxDB data source (public/app/plugins/datasource/influxdb/types.ts). */
interface InfluxQuery extends DataQuery {
  query: string; rawQuery: boolean; resultFormat: 'time_series' | 'table' | 'logs';
  fromAnnotations?: boolean; tagsColumn?: string; textColumn?: string; titleColumn?: string;
}
type InfluxDashboard = Omit<Loose<Dashboard>, 'panels' | 'annotations'> & {
  panels: Array<Omit<Loose<Panel>, 'targets'> & { targets: InfluxQuery[] }>;
  annotations: { list: Array<Loose<AnnotationQuery<InfluxQuery>>> };
};
"""


def typescript_of(dashboards: dict[str, dict], modules: dict[str, str]) -> str:
    """One TypeScript file: each dashboard as @grafana/schema's Dashboard, each panel's options and custom
    field config as its panel plugin's Options and FieldConfig (missing options take the plugin's defaults)."""
    used = sorted({p["type"] for d in dashboards.values() for p in d["panels"]})
    missing = [kind for kind in used if kind not in modules]
    assert not missing, f"panel types with no schema in @grafana/schema: {missing}"
    lines = ["import type { AnnotationQuery, Dashboard, DataQuery, Panel } from '@grafana/schema';"]
    lines += [f"import type * as {kind} from '{modules[kind]}';" for kind in used]
    lines.append(LOOSE)
    for name, dashboard in dashboards.items():
        lines.append(f"export const {name}_dashboard: InfluxDashboard = {json.dumps(dashboard)};")
        for panel in dashboard["panels"]:
            kind, ident = panel["type"], f"{name}_panel_{panel['id']}"
            lines.append(f"export const {ident}_options: Partial<Loose<{kind}.Options>> = "
                         f"{json.dumps(panel['options'])};")
            custom = panel["fieldConfig"]["defaults"].get("custom")
            if custom is not None:
                lines.append(f"export const {ident}_custom: Partial<Loose<{kind}.FieldConfig>> = {json.dumps(custom)};")
    return "\n".join(lines) + "\n"


_sources = itertools.count()


def tsc(packages: Path, source: str) -> subprocess.CompletedProcess:
    """``source`` through tsc, in a file of this call's own (other test processes share ``packages``)."""
    path = packages / f"dashboards-{os.getpid()}-{next(_sources)}.ts"
    path.write_text(source)
    try:
        return subprocess.run(["node", "node_modules/typescript/bin/tsc", "--noEmit", "--strict", "--skipLibCheck",
                               "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
                               path.name], capture_output=True, text=True, timeout=300, cwd=packages)
    finally:
        path.unlink()
