#!/usr/bin/env bash
# Set up semattack-bench (Debian packages when root, a virtualenv in .venv), then run a job.
#   ./setup.sh demo    set up, then run the offline demo (`bench demo`)
#   ./setup.sh test    set up, then run the test suite
#   ./setup.sh         set up only
# Re-running is safe and fast: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(wordnet-base wordnet-sense-index tuxpaint-stamps-default)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: missing Debian packages: ${missing[*]}; run: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: semattack-bench needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv .venv
        else
            echo "setup: '$PYTHON -m venv' failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f .venv/.installed ]] || [[ $(cat .venv/.installed) != "$stamp" ]]; then
    echo "setup: installing Python packages into .venv (torch comes from this machine's disk)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,ray]'
    echo "$stamp" > .venv/.installed
fi

case "${1:-}" in
    demo)
        shift
        exec .venv/bin/bench demo "$@"
        ;;
    test)
        shift
        # one formatter setting and the lint rules (pyproject.toml), checked before the tests
        .venv/bin/ruff check --quiet bench kg results tests
        .venv/bin/ruff format --check --quiet bench kg results tests
        set +e
        .venv/bin/python -m pytest "$@"
        rc=$?
        if [[ $rc -eq 5 ]]; then
            echo "setup: pytest collected no tests"
            rc=0
        fi
        exit $rc
        ;;
    "") ;;
    *)
        echo "usage: ./setup.sh [demo|test] [args...]" >&2
        exit 2
        ;;
esac
