# Stratoflow: runs a kubernetes task's command in the user's image (needs /bin/sh there).
# Usage: sh -c "$(cat eks_task.sh)" stratoflow-task ARGV...
# The command's exit status goes to $STRATOFLOW_DIR/exit, where the reporter container waits for
# it; with mkfifo and tee in the image its output is also copied to $STRATOFLOW_DIR/log (stdout
# and stderr merged) so a failure report can quote its last lines. Written for POSIX sh.
dir=${STRATOFLOW_DIR:-/stratoflow}
STRATOFLOW_OUTPUT="$dir/outputs"
export STRATOFLOW_OUTPUT
if command -v mkfifo >/dev/null 2>&1 && command -v tee >/dev/null 2>&1 \
    && mkfifo "$dir/pipe" 2>/dev/null; then
    tee "$dir/log" <"$dir/pipe" &
    tee_pid=$!
    "$@" >"$dir/pipe" 2>&1
    code=$?
    wait "$tee_pid"
else
    "$@"
    code=$?
fi
# write then rename, so the reporter never reads half a file
printf '%s\n' "$code" >"$dir/exit.tmp" && mv -f "$dir/exit.tmp" "$dir/exit" \
    || printf '%s\n' "$code" >"$dir/exit"
exit "$code"
