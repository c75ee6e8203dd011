#!/usr/bin/env bash
# The whole check, as CI runs it: set-up, lint, format, types, tests.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k janus -x`).
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

failed=()

banner() {
    printf '\n==================== %s ====================\n' "$*"
}

step() {
    local name="$1"
    shift
    banner "$name"
    local started=$SECONDS
    "$@"
    local status=$?
    if [ "$status" -ne 0 ]; then
        printf '%s: FAILED (exit %d, %ds)\n' "$name" "$status" "$((SECONDS - started))"
        failed+=("$name")
    else
        printf '%s: ok (%ds)\n' "$name" "$((SECONDS - started))"
    fi
    return 0
}

banner "setup"
if ! bash scripts/setup.sh; then
    printf 'setup: FAILED\n'
    exit 1
fi

python="$repo_root/.venv/bin/python"
# Qt front-end tests run without a screen.
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
# The packaging test builds the PyInstaller bundle and runs its --self-test from outside the
# source tree (about 1-2 minutes); CALLPATH_TEST_BUNDLE=0 skips it for quick local runs.
export CALLPATH_TEST_BUNDLE="${CALLPATH_TEST_BUNDLE:-1}"

step "ruff check" "$python" -m ruff check .
step "ruff format --check" "$python" -m ruff format --check .
step "mypy" "$python" -m mypy

run_pytest() {
    # `python -m` puts the repository on sys.path, so tests import `tests.servers` and `core`.
    "$python" -m pytest "$@"
    local status=$?
    if [ "$status" -eq 5 ]; then
        printf 'pytest collected no tests: that is a failure here\n'
    fi
    return "$status"
}
step "pytest" run_pytest "$@"

banner "summary"
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'FAILED steps: %s\n' "${failed[*]}"
    exit 1
fi
printf 'all steps passed\n'
