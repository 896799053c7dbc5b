"""deploy/: the Pi's systemd unit, CAN bring-up and installer, the default car config, the server compose file.

Needs systemd-analyze and shellcheck (`make test` installs Debian's systemd and shellcheck packages). The
installer is run for real into a temporary prefix, as an unprivileged user when the tests run as root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from firmware_bridge.config import load_config
from firmware_bridge.sinks.outputs import default_state_dir

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PI = DEPLOY / "pi"
UNIT = PI / "firmware-bridge.service"
DROPIN = PI / "firmware-bridge.service.d" / "can0.conf"
NETWORK = PI / "80-can.network"
INSTALLER = DEPLOY / "install-pi.sh"
SERVER = DEPLOY / "server"
COMPOSE = SERVER / "docker-compose.yml"
DBRP_SCRIPT = SERVER / "influxdb-init" / "create-dbrp.sh"
READ_TOKEN_SCRIPT = SERVER / "influxdb-init" / "grafana-read-token.sh"
INSTALLED_EXE = "/opt/firmware-bridge/venv/bin/firmware-bridge"
NOBODY = 65534


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install {package} (make test installs it)")
    return path


def ini(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd-style file: section -> key -> every value given (keys repeat, e.g. DeviceAllow)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# --- the systemd unit --------------------------------------------------------------------------------------

@pytest.fixture
def unit_copy(tmp_path):
    """The unit and its drop-in, with ExecStart pointing at this venv's firmware-bridge: systemd-analyze checks
    that the executable exists."""
    exe = Path(sys.executable).with_name("firmware-bridge")
    assert exe.is_file(), exe
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(INSTALLED_EXE) == 1
    copy = tmp_path / "firmware-bridge.service"
    copy.write_text(text.replace(INSTALLED_EXE, str(exe)), encoding="utf-8")
    (tmp_path / "firmware-bridge.service.d").mkdir()
    shutil.copy(DROPIN, tmp_path / "firmware-bridge.service.d" / DROPIN.name)
    return copy


def test_systemd_analyze_verify_accepts_the_unit(unit_copy):
    result = subprocess.run([tool("systemd-analyze", "systemd"), "verify", str(unit_copy)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys are only warnings (exit 0): any line about our files is a mistake in them.
    ours = [line for line in output.splitlines() if "firmware-bridge.service" in line or "can0.conf" in line]
    assert not ours, output
    assert "Unknown" not in output, output


def test_systemd_security_exposure_stays_low(unit_copy):
    result = subprocess.run([tool("systemd-analyze", "systemd"), "security", "--offline=yes", "--no-pager",
                             str(unit_copy)], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    # 1.7 today ("OK"); what is left is what the agent needs: network, CAN, serial devices.
    assert float(match.group(1)) <= 2.0, result.stdout


def test_unit_is_a_watched_notify_service_that_can_read_can():
    unit = ini(UNIT)
    service = unit["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "30" and one["Restart"] == "always" and one["RestartSec"] == "5"
    assert one["StateDirectory"] == "firmware-bridge"
    assert one["ExecStart"] == f"{INSTALLED_EXE} run --config /etc/firmware-bridge/agent.toml"
    assert one["EnvironmentFile"] == "-/etc/firmware-bridge/env"
    assert one["User"] == "firmware-bridge" and "dialout" in one["SupplementaryGroups"].split()
    families = one["RestrictAddressFamilies"].split()
    assert {"AF_CAN", "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= set(families)
    assert not any(f.startswith("~") for f in families)
    assert one["CapabilityBoundingSet"] == ""   # reading can0 needs no capability
    assert one.get("PrivateNetwork", "no") == "no"   # it would hide can0
    assert one.get("PrivateDevices", "no") == "no"   # it would hide the serial adapters
    assert one["ProtectSystem"] == "strict" and one["ProtectHome"] == "yes" and one["NoNewPrivileges"] == "yes"
    assert one["SystemCallFilter"] != "" and "@system-service" in service["SystemCallFilter"]
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-rfcomm rw"} <= set(service["DeviceAllow"])
    assert unit["Unit"]["RequiresMountsFor"] == ["/var/lib/firmware-bridge"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    dropin = ini(DROPIN)["Unit"]
    assert dropin["Wants"] == dropin["After"] == ["sys-subsystem-net-devices-can0.device"]


# --- CAN bring-up ------------------------------------------------------------------------------------------

def test_can_network_file_uses_only_keys_networkd_knows():
    network = ini(NETWORK)
    assert network["Match"]["Name"] == ["can0"]
    assert network["CAN"]["BitRate"] == ["500K"] and network["CAN"]["RestartSec"] == ["100ms"]
    assert network["Link"]["RequiredForOnline"] == ["no"]
    # networkd ignores an unknown key with a warning; its parser tables hold every "Section.Key" it accepts.
    binary = next((p for p in (Path("/lib/systemd/systemd-networkd"), Path("/usr/lib/systemd/systemd-networkd"))
                   if p.exists()), None)
    if binary is None:
        pytest.fail("systemd-networkd is missing: apt-get install systemd (make test installs it)")
    known = set(re.findall(rb"[A-Z][A-Za-z]+\.[A-Z][A-Za-z]+", binary.read_bytes()))
    for section, keys in network.items():
        for key in keys:
            assert f"{section}.{key}".encode() in known, f"{NETWORK.name}: [{section}] {key}= unknown to networkd"


def test_config_txt_snippet_enables_the_mcp2515():
    lines = [l for l in (PI / "config.txt.snippet").read_text(encoding="utf-8").splitlines()
             if l and not l.startswith("#")]
    assert lines == ["dtparam=spi=on", "dtoverlay=mcp2515-can0,oscillator=16000000,interrupt=25"]
    text = (PI / "config.txt.snippet").read_text(encoding="utf-8")
    assert "#dtoverlay=mcp2515-can0,oscillator=12000000,interrupt=25" in text


# --- the car's default configuration -------------------------------------------------------------------------

def test_default_car_config_loads(monkeypatch):
    config = load_config(PI / "agent.toml")
    assert config["bus"] == {"interface": "socketcan", "channel": "can0", "bitrate": 500000, "silence_warn_s": 30.0}
    assert config["obd"]["enabled"] is False
    assert config["influx"]["url"] is None        # INFLUX_URL from /etc/firmware-bridge/env
    assert config["spool"]["path"] is None        # so the spool goes to the unit's StateDirectory
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/firmware-bridge")
    assert default_state_dir() == Path("/var/lib/firmware-bridge")


# --- the installer -------------------------------------------------------------------------------------------

def test_scripts_pass_shellcheck():
    result = subprocess.run([tool("shellcheck", "shellcheck"), str(INSTALLER), str(DBRP_SCRIPT), str(READ_TOKEN_SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, size, mtime and content hash (or link target)."""
    listing = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entry = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entry = ("dir", st.st_mode)
            else:
                entry = ("file", st.st_mode, st.st_size, st.st_mtime_ns,
                         hashlib.sha256(path.read_bytes()).hexdigest())
            listing[str(path.relative_to(root))] = entry
    return listing


class Staging:
    """The installer run into a temporary prefix from a snapshot of the checkout (others edit the tree while the
    tests run; the installer fingerprints its source), as an unprivileged user when we are root."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="fb-deploy-"))
        self.base.chmod(0o755)
        self.source = self.base / "src"
        shutil.copytree(ROOT, self.source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "venv", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache", ".env"))
        # copytree keeps the checkout's modes: readable by the unprivileged user whatever they were (a clone
        # in a `mktemp -d` folder is 0700)
        for path in (self.source, *self.source.rglob("*")):
            path.chmod(path.stat().st_mode | (0o755 if path.is_dir() else 0o644))
        self.prefix = self.base / "prefix"
        self.home = self.base / "home"
        self.home.mkdir()
        self.as_nobody = os.geteuid() == 0 and shutil.which("setpriv") is not None
        if self.as_nobody:
            for path in (self.base, self.home):
                os.chown(path, NOBODY, NOBODY)

    def install(self, *args: str) -> subprocess.CompletedProcess:
        command = ["bash", str(self.source / "deploy" / "install-pi.sh"), "--prefix", str(self.prefix), *args]
        if self.as_nobody:
            command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
        # A Python everyone can run (a root-only pyenv would not do for an unprivileged user).
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        env = dict(os.environ, HOME=str(self.home), TMPDIR=str(self.base))
        return subprocess.run([*command, "--python", python], capture_output=True, text=True, env=env,
                              timeout=300)


@pytest.fixture(scope="module")
def staging():
    staged = Staging()
    yield staged
    shutil.rmtree(staged.base, ignore_errors=True)


def test_installer_dry_run_changes_nothing(staging):
    result = staging.install("--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not staging.prefix.exists()
    out = result.stdout
    assert "would run:" in out and "-m venv" in out and "pip install" in out
    for name in ("agent.toml", "env", "firmware-bridge.service", "can0.conf", "80-can.network"):
        assert re.search(rf"would run: install .*{re.escape(name)}", out), (name, out)
    assert "skipped: creating the system user" in out and "skipped: systemctl" in out


def test_installer_stages_a_tree_and_a_second_run_changes_nothing(staging):
    first = staging.install()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "skipped: creating the system user" in first.stdout and "skipped: systemctl" in first.stdout
    prefix = staging.prefix
    etc = prefix / "etc" / "firmware-bridge"
    systemd = prefix / "usr" / "local" / "lib" / "systemd"
    assert (etc / "agent.toml").read_bytes() == (PI / "agent.toml").read_bytes()
    assert stat.S_IMODE((etc / "env").stat().st_mode) == 0o600   # it will hold the token
    assert (systemd / "system" / "firmware-bridge.service").read_bytes() == UNIT.read_bytes()
    assert (systemd / "system" / "firmware-bridge.service.d" / "can0.conf").read_bytes() == DROPIN.read_bytes()
    assert (systemd / "network" / "80-can.network").read_bytes() == NETWORK.read_bytes()
    assert os.access(prefix / INSTALLED_EXE.lstrip("/"), os.X_OK)
    load_config(etc / "agent.toml")

    before = tree(prefix)
    second = staging.install()
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree(prefix) == before
    assert "+ " not in second.stdout, second.stdout          # nothing was run
    assert "would run" not in staging.install("--dry-run").stdout

    # The user's files are kept, never overwritten.
    (etc / "agent.toml").write_text('[vehicle]\nid = "my-kei"\n', encoding="utf-8")
    third = staging.install()
    assert third.returncode == 0, third.stdout + third.stderr
    assert (etc / "agent.toml").read_text(encoding="utf-8") == '[vehicle]\nid = "my-kei"\n'
    assert "kept " in third.stdout


def test_installed_agent_starts_as_the_unit_runs_it(staging, tmp_path):
    """The staged venv runs the unit's command line with the installed config: READY=1 and a watchdog ping to
    $NOTIFY_SOCKET, the spool in $STATE_DIRECTORY, a clean exit on SIGTERM. (A virtual bus stands in for can0.)"""
    exe = staging.prefix / INSTALLED_EXE.lstrip("/")
    if not exe.exists():
        staging.install()
    config = staging.prefix / "etc" / "firmware-bridge" / "agent.toml"
    config.write_bytes((PI / "agent.toml").read_bytes())
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.5)
    state = tmp_path / "state"
    state.mkdir()
    with socket.socket() as closed:     # a port nobody listens on: the spool keeps the points
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), STATE_DIRECTORY=str(state),
               INFLUX_URL=f"http://127.0.0.1:{port}", WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    agent = subprocess.Popen([str(exe), "run", "--config", str(config), "--interface", "virtual",
                              "--channel", "fb-deploy-test"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        messages = []
        deadline = time.monotonic() + 30
        while not ("READY=1" in "".join(messages) and "WATCHDOG=1" in "".join(messages)):
            if agent.poll() is not None or time.monotonic() > deadline:
                break
            try:
                messages.append(notify.recv(4096).decode())
            except socket.timeout:
                pass
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
        notify.close()
    assert "READY=1" in "".join(messages) and "WATCHDOG=1" in "".join(messages), (messages, err)
    assert agent.returncode == 0, err
    assert (state / "spool.db").exists(), err


# --- the server ----------------------------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def bind_mounts(service: dict) -> list[tuple[str, str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append((source, target, options[0] if options else "rw"))
    return mounts


def test_compose_mounts_exist_in_the_repository():
    services = compose()["services"]
    mounts = [m for service in services.values() for m in bind_mounts(service)]
    assert mounts
    for source, target, _ in mounts:
        assert (SERVER / source).resolve().exists(), f"{COMPOSE.name} mounts {source} at {target}: missing"
    grafana = {target: (source, options) for source, target, options in bind_mounts(services["grafana"])}
    assert grafana["/etc/grafana/provisioning"] == ("../../dashboards/provisioning", "ro")
    assert grafana["/var/lib/grafana/dashboards"] == ("../../dashboards/json", "ro")
    influx = {target: source for source, target, _ in bind_mounts(services["influxdb"])}
    assert influx["/docker-entrypoint-initdb.d"] == "./influxdb-init"


def test_compose_services_and_their_settings():
    services = compose()["services"]
    influx, grafana = services["influxdb"], services["grafana"]
    assert influx["image"] == "influxdb:2.7"
    assert grafana["image"].startswith(("grafana/grafana:", "grafana/grafana-oss:"))
    init = influx["environment"]
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert init[f"DOCKER_INFLUXDB_INIT_{key}"].startswith("${"), key
    env = grafana["environment"]
    assert env["INFLUX_URL"] == "http://influxdb:8086"
    assert env["INFLUX_BUCKET"] == init["DOCKER_INFLUXDB_INIT_BUCKET"]
    # Grafana never sees the admin token: its INFLUX_TOKEN is the read-only token the init script writes to a
    # volume both services mount (influxdb read-write, Grafana read-only), exported before Grafana's own start.
    assert "INFLUX_TOKEN" not in env and "ADMIN_TOKEN" not in json.dumps(grafana)
    token_file = re.search(r"^out=(\S+)$", READ_TOKEN_SCRIPT.read_text(), flags=re.M).group(1)
    entrypoint = " ".join(grafana["entrypoint"])
    assert f'export INFLUX_TOKEN="$$(cat {token_file})" && exec /run.sh' in entrypoint
    volume_dir = str(Path(token_file).parent)
    assert f"grafana-token:{volume_dir}" in influx["volumes"]
    assert f"grafana-token:{volume_dir}:ro" in grafana["volumes"]
    # The provisioned datasource reads its URL and credentials from Grafana's environment.
    datasource = ROOT / "dashboards" / "provisioning" / "datasources" / "influxdb.yaml"
    wanted = set(re.findall(r"\$\{?(INFLUX_[A-Z_]+)", datasource.read_text(encoding="utf-8")))
    assert wanted and wanted <= set(env) | {"INFLUX_TOKEN"}, wanted - set(env)
    provider = yaml.safe_load((ROOT / "dashboards" / "provisioning" / "dashboards" / "firmware-bridge.yaml")
                              .read_text(encoding="utf-8"))
    assert [p["options"]["path"] for p in provider["providers"]] == ["/var/lib/grafana/dashboards"]


def test_compose_variables_are_documented_in_env_example():
    text = "\n".join(line.split("#")[0] for line in COMPOSE.read_text(encoding="utf-8").splitlines())
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (SERVER / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    assert used and used <= documented, used - documented
    # Ports: published through a documented variable or on loopback only.
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith(("${", "127.0.0.1:")), (name, port)


def test_grafana_read_token_script_makes_a_read_only_token():
    assert READ_TOKEN_SCRIPT.stat().st_mode & stat.S_IXUSR
    text = READ_TOKEN_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text
    command = " ".join(text.split("\\\n"))
    create = re.search(r"influx auth create (.*?)\|", command, flags=re.S).group(1)
    assert '--read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}"' in create
    assert "--write" not in create and "--all-access" not in create and "--operator" not in create


def test_dbrp_init_script_runs_in_the_influxdb_image():
    # The image runs `run-parts --regex '.*sh$'` on the folder: only executable files run.
    assert DBRP_SCRIPT.stat().st_mode & stat.S_IXUSR
    text = DBRP_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/bash\n")
    command = " ".join(text.split("\\\n"))
    assert re.search(r"influx v1 dbrp create .*--bucket-id \"\$\{DOCKER_INFLUXDB_INIT_BUCKET_ID\}\"", command)
    assert '--db "${DOCKER_INFLUXDB_INIT_BUCKET}"' in command and "--rp autogen" in command
    assert "--default" in command
