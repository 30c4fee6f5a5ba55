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
    echo "setup: installing Python packages into .venv (torch 2.14.1 the first time: a download of several GB, kept in pip's cache)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,ray]'
    echo "$stamp" > .venv/.installed
fi

# A throwaway Neo4j server for the graph-store tests (neo4j/server, docs/graph-stores.md): its own
# home, free ports and a random password, stopped whatever happens. Skipped when NEO4J_URI
# already names a server. Under CI=true the Neo4j tests may not skip, so a failed start fails.
start_neo4j() {
    [[ -z ${NEO4J_URI:-} ]] || return 0
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if ((${#missing[@]})) && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages for the Neo4j server: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    NEO4J_TEST_HOME=$(mktemp -d /tmp/semattack-neo4j.XXXXXX)
    trap 'NEO4J_HOME_DIR=$NEO4J_TEST_HOME/home neo4j/server stop >/dev/null; rm -rf "$NEO4J_TEST_HOME"' EXIT
    local ports
    ports=$(.venv/bin/python -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    export NEO4J_HOME_DIR=$NEO4J_TEST_HOME/home NEO4J_LIB_DIR=${NEO4J_LIB_DIR:-$HOME/.cache/semattack-bench/neo4j-lib}
    export NEO4J_BOLT_PORT=${ports% *} NEO4J_HTTP_PORT=${ports#* }
    NEO4J_PASSWORD=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')
    export NEO4J_PASSWORD
    local started=$SECONDS
    if neo4j/server start >/dev/null; then
        eval "$(neo4j/server env)"
        echo "setup: Neo4j test server on $NEO4J_URI ($((SECONDS - started)) s to start)"
    elif [[ ${CI:-} == true ]]; then
        echo "setup: the Neo4j test server did not start, and under CI=true its tests may not skip" >&2
        exit 1
    else
        echo "setup: the Neo4j test server did not start; its tests will skip" >&2
    fi
}

# The tests that compare results bit for bit (marker `bitwise`), again under settings that make
# this CPU compute the way other CPUs do (bench/numerics.py, EMULATED_CPUS): only those that take
# effect here, read back in a fresh process (MKL ignores its branch names on AMD CPUs), each on
# code paths of its own; `python -m bench.numerics` prints which are used and which not, and why.
# A test that holds only on this CPU's path fails here. Two settings at a time, one thread each
# (BENCH_TEST_THREADS): the toy models keep one core busy, so two lanes take about half the time.
rerun_bitwise_tests() {
    local files rc=0 started=$SECONDS i
    files=$(grep -l "pytest.mark.bitwise" tests/test_*.py | grep -v test_sweep_ray)
    local -a settings logs
    mapfile -t settings < <(.venv/bin/python -m bench.numerics)
    if ((${#settings[@]} < 2)); then
        echo "setup: fewer than two emulated CPUs take effect on this CPU (above)" >&2
        return 1
    fi
    for ((i = 0; i < ${#settings[@]}; i++)); do
        logs[i]=$(mktemp)
        # shellcheck disable=SC2086
        (
            env BENCH_TEST_THREADS=1 ${settings[i]} .venv/bin/python -m pytest -q -m bitwise -p no:cacheprovider \
                $files >"${logs[i]}" 2>&1
            echo $? >"${logs[i]}.rc"
        ) &
        if ((i % 2 == 1)); then wait; fi
    done
    wait
    for ((i = 0; i < ${#settings[@]}; i++)); do
        if [[ $(cat "${logs[i]}.rc") == 0 ]]; then
            echo "setup: bitwise tests under ${settings[i]}: $(tail -n 1 "${logs[i]}" | tr -d '=')"
        else
            cat "${logs[i]}"
            echo "setup: bitwise tests under ${settings[i]} FAILED" >&2
            rc=1
        fi
        rm -f "${logs[i]}" "${logs[i]}.rc"
    done
    echo "setup: bitwise tests under ${#settings[@]} emulated CPUs: $((SECONDS - started)) s"
    return $rc
}

# The whole suite as two pytest processes at once, one torch thread each: one process alone
# keeps one of the two cores busy (subprocesses, DuckDB, the Neo4j server's round trips). The
# files that use the one Neo4j server or start Ray, and the numerics tests, run in the first;
# the rest in the second, shown as it runs; the first's report follows. Each has its own data
# and temporary folders (tests/conftest.py).
run_suite_in_two() {
    local tmp rc_shared rc_rest
    local -a shared rest
    tmp=$(mktemp -d /tmp/semattack-tests.XXXXXX)
    mapfile -t shared < <({ grep -l -i -E "neo4j|run_sweep_ray|--ray" tests/test_*.py; echo tests/test_numerics.py; } | sort -u)
    mapfile -t rest < <(ls tests/test_*.py | grep -v -x -F -f <(printf '%s\n' "${shared[@]}"))
    BENCH_TEST_THREADS=1 .venv/bin/python -m pytest -p no:cacheprovider --basetemp="$tmp/shared" "${shared[@]}" \
        >"$tmp/shared.log" 2>&1 &
    local pid=$!
    BENCH_TEST_THREADS=1 .venv/bin/python -m pytest -p no:cacheprovider --basetemp="$tmp/rest" "${rest[@]}"
    rc_rest=$?
    wait "$pid"
    rc_shared=$?
    echo "setup: the other process (${#shared[@]} files: Neo4j, Ray, numerics):"
    cat "$tmp/shared.log"
    rm -rf "$tmp"
    ((rc_rest == 0 && rc_shared == 0))
}

case "${1:-}" in
    demo)
        shift
        exec .venv/bin/bench demo "$@"
        ;;
    test)
        shift
        # one formatter setting, the lint rules and the library's types (pyproject.toml), checked before the tests
        .venv/bin/ruff check --quiet bench kg results tests
        .venv/bin/ruff format --check --quiet bench kg results tests
        .venv/bin/mypy
        start_neo4j
        set +e
        emulated=0
        if [[ $# -eq 0 ]]; then # the whole suite: first the bitwise tests on other CPUs' code paths
            rerun_bitwise_tests
            emulated=$?
        fi
        if [[ $# -eq 0 ]]; then
            run_suite_in_two
        else
            .venv/bin/python -m pytest "$@"
        fi
        rc=$?
        if [[ $rc -eq 5 ]]; then
            echo "setup: pytest collected no tests"
            rc=0
        fi
        if [[ $emulated -ne 0 ]]; then
            echo "setup: a bitwise test failed under an emulated CPU (above)" >&2
            rc=1
        fi
        exit $rc
        ;;
    "") ;;
    *)
        echo "usage: ./setup.sh [demo|test] [args...]" >&2
        exit 2
        ;;
esac
