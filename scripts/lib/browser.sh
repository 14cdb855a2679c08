# Sourced by scripts/test: install Chromium for the browser tests, or say in one line why
# they are skipped. Outside CI a browser that cannot be installed (no root, no network,
# the package lock held past its timeout) skips those tests, with CLINIC_SKIP_BROWSER
# exported to pytest; in CI it fails the run.
install_browser_or_skip() {
    if [ -n "${CLINIC_SKIP_BROWSER:-}" ] && [ -z "${CI:-}" ]; then
        echo "scripts/test: CLINIC_SKIP_BROWSER is set: Chromium is not installed and the" \
            "browser tests are skipped" >&2
        return 0
    fi
    local said
    said="$(mktemp)"
    if scripts/install-browser >"$said" 2>&1; then
        rm -f "$said"
        return 0
    fi
    if [ -n "${CI:-}" ]; then
        cat "$said" >&2
        rm -f "$said"
        echo "scripts/test: Chromium could not be installed (output above); CI needs it" >&2
        return 1
    fi
    local why
    why="$(grep -v '^[[:space:]]*$' "$said" | tail -n 1)"
    rm -f "$said"
    echo "scripts/test: Chromium could not be installed (${why:-no output}): the browser" \
        "tests are skipped" >&2
    export CLINIC_SKIP_BROWSER=1
}
