# Progress for long build steps, shared by the build scripts (source it; bash only):
#
#   . tools/progress.sh
#   progress_run "kube-apiserver" go build -v -o out ./cmd/kube-apiserver
#
# runs the command with its output (stdout and stderr) in a log, and while it runs prints
#   <label>: still building, 95 s, 412 packages compiled, 3 modules downloaded
# every KNOOPPUNT_PROGRESS_SECONDS (default 30) seconds on stderr. The counts are the lines
# `go build -v` / `go install -v` write: one per package compiled (cached packages print
# nothing), "go: downloading <module>" per module fetched. On success it prints
#   <label>: done in 312 s (1480 packages compiled)
# and on failure the last 40 lines of the log, then returns the command's exit status.
# The command's stdout is not passed on: use it for builds, not for commands whose output
# is wanted.

progress_count() {  # progress_count LOG: "<packages> <downloads>"
    local log="$1" downloads packages
    downloads="$(grep -c '^go: downloading ' "$log" 2>/dev/null || true)"
    packages="$(grep -cvE '^(go: |#|\s)' "$log" 2>/dev/null || true)"
    echo "${packages:-0} ${downloads:-0}"
}

progress_run() {  # progress_run LABEL COMMAND [ARGS...]
    local label="$1"
    shift
    local log t0=$SECONDS interval="${KNOOPPUNT_PROGRESS_SECONDS:-30}" rc=0 ticker counts
    log="$(mktemp "${TMPDIR:-/tmp}/progress.XXXXXX")"
    (
        while sleep "$interval"; do
            read -r p d <<<"$(progress_count "$log")"
            echo "$label: still building, $((SECONDS - t0)) s, $p packages compiled, $d modules downloaded" >&2
        done
    ) &
    ticker=$!
    "$@" >"$log" 2>&1 || rc=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    counts="$(progress_count "$log")"
    if ((rc == 0)); then
        echo "$label: done in $((SECONDS - t0)) s (${counts%% *} packages compiled)" >&2
    else
        tail -n 40 "$log" >&2
        echo "$label: FAILED after $((SECONDS - t0)) s (exit $rc)" >&2
    fi
    rm -f "$log"
    return "$rc"
}
