#!/usr/bin/env bash
# Install firmware-bridge on a Raspberry Pi: a virtualenv under /opt/firmware-bridge, the configuration under
# /etc/firmware-bridge, the systemd unit and the can0 .network file, a system user; then enable it all.
#
# Idempotent: a second run with the same source changes nothing. The configuration and the env file are
# installed only when absent (they are yours); the unit and the .network file are the installer's and go to
# /usr/local/lib/systemd, so your changes belong in /etc (`systemctl edit`, /etc/systemd/network/).
set -euo pipefail
# The venv must be readable by the service user whatever umask sudo passed on (the env file is made 600).
umask 022

usage() {
    cat <<'EOF'
usage: sudo deploy/install-pi.sh [--source SPEC] [--python PYTHON] [--prefix DIR] [--dry-run] [--no-systemctl]

  --source SPEC    what pip installs: a checkout directory or a wheel (installed with the [influx] extra),
                   or any pip requirement, e.g. 'firmware-bridge[influx]==0.1.0' (default: this checkout)
  --python PYTHON  the interpreter the virtualenv is made from, Python >= 3.11 (default: python3)
  --prefix DIR     install root (default /). Anything else stages a tree under DIR without root: no user is
                   created and systemctl is not run. The virtualenv is not relocatable: it runs from DIR only.
  --dry-run        print what would be done, change nothing
  --no-systemctl   install the files but do not run systemctl
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$here")
prefix=/
source_spec=$checkout
python=python3
dry_run=0
use_systemctl=1

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --source) [ $# -ge 2 ] || { usage >&2; exit 2; }; source_spec=$2; shift 2 ;;
        --source=*) source_spec=${1#--source=}; shift ;;
        --python) [ $# -ge 2 ] || { usage >&2; exit 2; }; python=$2; shift 2 ;;
        --python=*) python=${1#--python=}; shift ;;
        --dry-run) dry_run=1; shift ;;
        --no-systemctl) use_systemctl=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-pi.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "install-pi.sh: $*" >&2; exit 1; }
say() { echo "$*"; }

[ -n "$prefix" ] || die "--prefix must not be empty"
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
root=${prefix%/}            # "" for the real root, so "$root/etc" is /etc
staging=0
[ -z "$root" ] || staging=1

if [ "$staging" = 0 ] && [ "$(id -u)" != 0 ] && [ "$dry_run" = 0 ]; then
    die "installing into / needs root: sudo $0 (or stage with --prefix DIR, or look with --dry-run)"
fi

pi=$here/pi
opt=$root/opt/firmware-bridge
venv=$opt/venv
stamp=$opt/installed-from
etc=$root/etc/firmware-bridge
unit=$root/usr/local/lib/systemd/system/firmware-bridge.service
dropin=$unit.d/can0.conf     # wait for can0; ELM327/SLCAN set-ups mask it (deploy/pi/README.md)
network=$root/usr/local/lib/systemd/network/80-can.network
state_dir=/var/lib/firmware-bridge   # the unit's StateDirectory; systemd creates it

changed_code=0      # the venv or the unit changed: a running agent must restart
changed_network=0
workdir=""          # made only when a checkout is copied
trap '[ -z "$workdir" ] || rm -rf "$workdir"' EXIT

# Run a command that changes the system, or only print it in a dry run.
act() {
    local shown
    shown=$(printf '%q ' "$@")
    if [ "$dry_run" = 1 ]; then
        say "would run: ${shown% }"
    else
        say "+ ${shown% }"
        "$@"
    fi
}

# A file the installer owns: rewritten whenever the shipped one differs.
install_owned() {
    local src=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "$mode" ]; then
        say "unchanged $dest"
        return 1
    fi
    act install -D -m "$mode" "$src" "$dest"
}

# A file that is the user's once installed: put there only when absent, never overwritten.
install_once() {
    local src=$1 dest=$2 mode=$3
    if [ -e "$dest" ]; then
        if cmp -s "$src" "$dest"; then say "unchanged $dest"; else say "kept $dest (yours; the shipped default is $src)"; fi
        if [ "$(stat -c %a "$dest")" != "$mode" ]; then
            say "warning: $dest has mode $(stat -c %a "$dest"), expected $mode: sudo chmod $mode $dest"
        fi
        return 0
    fi
    act install -D -m "$mode" "$src" "$dest"
}

# Every file of a source directory that a build could read, skipping VCS data, virtualenvs, build output and
# secrets (.env). Used both to copy the checkout and to fingerprint it, so the two always agree.
source_files() {
    (cd "$1" && find . \( -name .git -o -name .venv -o -name venv -o -name build -o -name dist \
        -o -name __pycache__ -o -name '*.egg-info' -o -name .pytest_cache -o -name .mypy_cache \
        -o -name node_modules -o -name .env \) -prune -o -type f -print0 | LC_ALL=C sort -z)
}

fingerprint() {
    (cd "$1" && source_files . | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# --- the virtualenv ------------------------------------------------------------------------------------
install_venv() {
    local spec want have=""
    if [ -d "$source_spec" ]; then
        [ -f "$source_spec/pyproject.toml" ] || die "--source $source_spec: no pyproject.toml there"
        want="directory $(cd "$source_spec" && pwd) sha256:$(fingerprint "$source_spec")"
    elif [ -f "$source_spec" ]; then
        spec=$(cd "$(dirname "$source_spec")" && pwd)/$(basename "$source_spec")
        want="file $spec sha256:$(sha256sum "$spec" | cut -d' ' -f1)"
    else
        want=""     # a requirement for an index: pip itself decides whether there is anything to do
    fi
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ -n "$want" ] && [ "$want" = "$have" ] && [ -x "$venv/bin/firmware-bridge" ]; then
        say "unchanged $venv (installed from the same source)"
        return
    fi

    if [ ! -x "$venv/bin/python" ]; then
        command -v "$python" >/dev/null || die "$python not found: sudo apt install python3 python3-venv"
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "$python is older than 3.11 (Raspberry Pi OS bookworm has 3.11)"
        "$python" -c 'import ensurepip, venv' 2>/dev/null \
            || die "$python cannot make virtualenvs: sudo apt install python3-venv"
        act "$python" -m venv "$venv"
    fi

    if [ -d "$source_spec" ]; then
        # Build from a copy: pip builds in the source tree, and a root-owned build/ left in your checkout
        # would get in the way of your own builds.
        if [ "$dry_run" = 1 ]; then
            say "would run: $venv/bin/python -m pip install --upgrade '${source_spec}[influx]' (from a copy)"
        else
            workdir=$(mktemp -d)
            mkdir "$workdir/src"
            source_files "$source_spec" | tar -C "$source_spec" --null -T - -cf - | tar -C "$workdir/src" -xf -
            want="directory $(cd "$source_spec" && pwd) sha256:$(fingerprint "$workdir/src")"
            act "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
                "${workdir}/src[influx]"
        fi
    elif [ -f "$source_spec" ]; then
        act "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "${spec}[influx]"
        # pip keeps an installed package of the same version as the wheel: a rebuilt wheel must replace it.
        act "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$spec"
    else
        # An index requirement: pip decides whether there is anything newer; compare what is installed.
        local before=""
        [ "$dry_run" = 1 ] || [ ! -x "$venv/bin/python" ] || before=$(pip_freeze)
        act "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_spec"
        if [ "$dry_run" = 0 ] && [ "$before" = "$(pip_freeze)" ]; then
            say "unchanged $venv (pip found nothing newer)"
            return
        fi
    fi
    if [ -n "$want" ] && [ "$dry_run" = 0 ]; then
        printf '%s\n' "$want" > "$stamp"
    fi
    changed_code=1
}

pip_freeze() { "$venv/bin/python" -m pip freeze --all --disable-pip-version-check 2>/dev/null; }

# --- the system user -----------------------------------------------------------------------------------
install_user() {
    if [ "$staging" = 1 ]; then
        say "skipped: creating the system user firmware-bridge (staging under $prefix)"
        return
    fi
    if getent passwd firmware-bridge >/dev/null; then
        say "unchanged user firmware-bridge"
    else
        act useradd --system --user-group --home-dir "$state_dir" --no-create-home \
            --shell /usr/sbin/nologin --comment "firmware-bridge telemetry agent" firmware-bridge
    fi
    getent group dialout >/dev/null \
        || say "warning: no group dialout: the unit's SupplementaryGroups=dialout will fail; create it or edit the unit"
}

# --- systemd -------------------------------------------------------------------------------------------
run_systemctl() {
    if [ "$staging" = 1 ]; then
        say "skipped: systemctl (staging under $prefix)"
        return
    fi
    if [ "$use_systemctl" = 0 ]; then
        say "skipped: systemctl (--no-systemctl)"
        return
    fi
    command -v systemctl >/dev/null || die "systemctl not found: this needs a systemd system (or --no-systemctl)"
    local booted=0
    [ -d /run/systemd/system ] && booted=1   # not in a chroot or a container without systemd
    if [ "$booted" = 1 ]; then
        act systemctl daemon-reload
    fi

    if systemctl is-enabled --quiet systemd-networkd.service 2>/dev/null; then
        say "unchanged systemd-networkd.service (enabled)"
        if [ "$changed_network" = 1 ] && [ "$booted" = 1 ] && systemctl is-active --quiet systemd-networkd.service; then
            act networkctl reload
        fi
    else
        # networkd sets can0's bitrate and brings it up; it only touches links a .network file matches.
        if [ "$booted" = 1 ]; then
            act systemctl enable --now systemd-networkd.service
        else
            act systemctl enable systemd-networkd.service
        fi
        # Enabling networkd also enables its wait-online service, which times out after two minutes when
        # networkd manages no link that counts for "online" (can0 does not). Where NetworkManager runs the
        # network (Raspberry Pi OS), NetworkManager-wait-online already does that job.
        if systemctl is-enabled --quiet NetworkManager.service 2>/dev/null; then
            act systemctl disable systemd-networkd-wait-online.service
        fi
    fi

    if systemctl is-enabled --quiet firmware-bridge.service 2>/dev/null; then
        say "unchanged firmware-bridge.service (enabled)"
    else
        act systemctl enable firmware-bridge.service
    fi
    if [ "$changed_code" = 1 ] && [ "$booted" = 1 ] && systemctl is-active --quiet firmware-bridge.service; then
        act systemctl restart firmware-bridge.service
    fi
}

# The agent runs as the service user: make sure that user can run the venv's interpreter (a Python under
# /root, such as pyenv's, cannot) and import the package.
check_service_user() {
    [ "$staging" = 0 ] && [ "$dry_run" = 0 ] || return 0
    if ! runuser -u firmware-bridge -- "$venv/bin/python" -c 'import firmware_bridge' 2>/dev/null; then
        die "the firmware-bridge user cannot run $venv/bin/python (-> $(readlink -f "$venv/bin/python")):" \
            "remove $opt and re-run with --python /usr/bin/python3"
    fi
    say "checked: the firmware-bridge user runs $venv/bin/python"
}

[ "$dry_run" = 1 ] && say "dry run: nothing is changed"
say "installing firmware-bridge from $source_spec into ${root:-/}"
install_user
install_venv
check_service_user
if [ -d "$etc" ]; then say "unchanged $etc"; else act install -d -m 755 "$etc"; fi
install_once "$pi/agent.toml" "$etc/agent.toml" 644
# The token lives here: root only. systemd reads it before dropping to the service user.
install_once "$pi/env" "$etc/env" 600
if install_owned "$pi/firmware-bridge.service" "$unit" 644; then changed_code=1; fi
if install_owned "$pi/firmware-bridge.service.d/can0.conf" "$dropin" 644; then changed_code=1; fi
if install_owned "$pi/80-can.network" "$network" 644; then changed_network=1; fi
run_systemctl

if [ "$dry_run" = 0 ] && [ "$staging" = 0 ]; then
    cat <<EOF

Next:
  1. MCP2515 HAT: append deploy/pi/config.txt.snippet to /boot/firmware/config.txt (check the crystal), reboot.
  2. Server and token: edit $etc/env (INFLUX_URL, INFLUX_ORG, INFLUX_BUCKET, INFLUX_TOKEN).
  3. sudo systemctl restart firmware-bridge && journalctl -u firmware-bridge -f
EOF
fi
