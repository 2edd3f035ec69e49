# Stratoflow: runs a kubernetes task's command in the user's image (needs /bin/sh there).
# Usage: sh -c "$(cat eks_task.sh)" stratoflow-task ARGV...
# The command's exit status goes to $STRATOFLOW_DIR/exit, where the reporter container waits for
# it; with mkfifo and tee in the image its output is also copied to $STRATOFLOW_DIR/log (stdout
# and stderr merged) so a failure report can quote its last lines. Written for POSIX sh.
dir=${STRATOFLOW_DIR:-/stratoflow}
STRATOFLOW_OUTPUT="$dir/outputs"
export STRATOFLOW_OUTPUT
# Secret references ({{ secrets.NAME }} for each NAME in $STRATOFLOW_SECRET_NAMES): the reporter
# reads them from Secrets Manager as the pod's role into $STRATOFLOW_SECRETS_DIR (an in-memory
# emptyDir of this pod only), then writes $dir/secrets.ready (or secrets.failed, having reported
# why). The references in the arguments and in the variables named by $STRATOFLOW_SECRET_ENV
# are replaced by the values here, in the container, just before the command starts.
if [ -n "${STRATOFLOW_SECRET_NAMES:-}" ]; then
    secrets_dir=${STRATOFLOW_SECRETS_DIR:-/stratoflow-secrets}
    until [ -e "$dir/secrets.ready" ] || [ -e "$dir/secrets.failed" ]; do
        sleep 1
    done
    if [ ! -e "$dir/secrets.ready" ]; then
        printf '1\n' >"$dir/exit"
        exit 1
    fi
    nl='
'
    resolve() {  # resolve TEXT: $resolved is TEXT with each reference replaced by its value
        resolved=$1
        for name in $STRATOFLOW_SECRET_NAMES; do
            ref="{{ secrets.$name }}"
            case $resolved in *"$ref"*) ;; *) continue ;; esac
            value=$(cat "$secrets_dir/$name" && printf x)
            value=${value%x}
            value=${value%"$nl"} # the AWS CLI's text output ends the value with a newline
            rest=$resolved
            resolved=''
            while :; do
                case $rest in *"$ref"*) ;; *) break ;; esac
                resolved="$resolved${rest%%"$ref"*}$value"
                rest=${rest#*"$ref"}
            done
            resolved="$resolved$rest"
        done
    }
    n=$#
    while [ "$n" -gt 0 ]; do # each argument, in place
        resolve "$1"
        shift
        set -- "$@" "$resolved"
        n=$((n - 1))
    done
    for variable in ${STRATOFLOW_SECRET_ENV:-}; do # names checked by the launcher
        eval "resolve \"\${$variable}\""
        eval "$variable=\$resolved"
        export "${variable?}"
    done
    unset resolved value rest ref
fi
# Resource files: the reporter fetches them into $STRATOFLOW_RESOURCES_DIR (resources.ready, or
# resources.failed having reported why); the command runs there, where they are.
if [ -n "${STRATOFLOW_RESOURCES_DIR:-}" ]; then
    until [ -e "$dir/resources.ready" ] || [ -e "$dir/resources.failed" ]; do
        sleep 1
    done
    if [ ! -e "$dir/resources.ready" ] || ! cd "$STRATOFLOW_RESOURCES_DIR"; then
        printf '1\n' >"$dir/exit"
        exit 1
    fi
fi
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
