# Stratoflow: the reporter container of a kubernetes task's pod (an AWS CLI image).
# It heartbeats while the task runs, waits for $STRATOFLOW_DIR/exit (written by eks_task.sh),
# then completes the Step Functions task token: send-task-success with the task's outputs
# (key=value lines of $STRATOFLOW_DIR/outputs, last write wins), or send-task-failure with the
# exit code and the last lines of the log (or why the outputs were refused: too large, a line
# with an empty key). It then exits 0 so the pod completes.
# The token is read from a mounted Secret at each call: a retried launch replaces it there.
# With secret references it first reads them (fetch_secrets) and masks their values in the
# outputs and the log tail it sends. Needs sh, sed, tr, head, tail, wc, sleep, cat, rm, sort and
# aws.
# Written for POSIX sh.
dir=${STRATOFLOW_DIR:-/stratoflow}
token_file=${STRATOFLOW_TOKEN_FILE:-/var/run/stratoflow/task-token}
heartbeat=${STRATOFLOW_HEARTBEAT_SECONDS:-60}
poll=${STRATOFLOW_POLL_SECONDS:-1}
tries=${STRATOFLOW_REPORT_TRIES:-30}
pause=${STRATOFLOW_REPORT_PAUSE_SECONDS:-5}
max_outputs=${STRATOFLOW_MAX_OUTPUT_BYTES:-200000}
tab=$(printf '\t')
cr=$(printf '\r')
nl='
'
# Secret references of the task (eks_task.sh): read here, as the pod's role, into an in-memory
# emptyDir shared with the task container only; their values are masked in what is reported.
names=${STRATOFLOW_SECRET_NAMES:-}
secrets_dir=${STRATOFLOW_SECRETS_DIR:-/stratoflow-secrets}
secrets_path=${STRATOFLOW_SECRETS_PATH:-}
project=${STRATOFLOW_PROJECT:-}
# Resource files of the task ("VERSION PATH" lines, the versions its run pinned): fetched here,
# as the pod's role, into $STRATOFLOW_RESOURCES_DIR in the shared volume, where the task's
# command then runs (eks_task.sh waits for resources.ready).
resources=${STRATOFLOW_RESOURCES:-}

sfn() {  # sfn ACTION ARGS...: one Step Functions call with the current token; quiet on success
    action=$1
    shift
    aws stepfunctions "$action" --task-token "$(cat "$token_file")" "$@" >/dev/null
}

report() {  # report ACTION ARGS...: retried, because a replaced token reaches the volume late
    n=1
    while ! sfn "$@"; do
        if [ "$n" -ge "$tries" ]; then
            return 1
        fi
        n=$((n + 1))
        sleep "$pause"
    done
}

json_string() {  # stdin -> one JSON string literal (lines joined with \n)
    printf '"'
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$tab/\\\\t/g" -e "s/$cr/\\\\r/g" | {
        first=1
        while IFS= read -r line || [ -n "$line" ]; do
            if [ "$first" = 1 ]; then first=0; else printf '\\n'; fi
            printf '%s' "$line"
        done
    }
    printf '"'
}

trim() {
    sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'
}

outputs_json() {  # key=value lines -> a JSON object; read backwards so the last write wins
    printf '{'
    if [ -s "$1" ]; then
        sed -n '1!G;h;$p' "$1" | {
            seen='
'
            sep=''
            while IFS= read -r line || [ -n "$line" ]; do
                line=$(printf '%s' "$line" | tr -d '\000-\010\013\014\016-\037' | trim)
                case $line in
                '' | '#'*) continue ;;
                *=*) ;;
                *) continue ;;
                esac
                key=$(printf '%s' "${line%%=*}" | trim)
                case $seen in *"
$key
"*) continue ;;
                esac
                seen="$seen$key
"
                printf '%s%s:%s' "$sep" "$(printf '%s' "$key" | json_string)" \
                    "$(printf '%s' "${line#*=}" | trim | json_string)"
                sep=','
            done
        }
    fi
    printf '}'
}

empty_key_line() {  # FILE -> the number of its first key=value line with an empty key, if any
    # (the key as outputs_json trims it: its control characters dropped, then its spaces)
    tr -d '\000-\010\013\014\016-\037' <"$1" | sed -n -e '/^[[:space:]]*=/{' -e '=' -e 'q' -e '}'
}

secret_value() {  # secret_value NAME: $value is the secret as fetched, without the CLI's newline
    value=$(cat "$secrets_dir/$1" && printf x)
    value=${value%x}
    value=${value%"$nl"}
}

mask() {  # stdin -> stdout with each secret value (4 characters or more) written ***
    text=$(cat && printf x)
    text=${text%x}
    # the longest value first: one value inside another must not leave the rest of it showing
    longest_first=$(for name in $names; do
        [ -f "$secrets_dir/$name" ] || continue
        secret_value "$name"
        printf '%s %s\n' "${#value}" "$name"
    done | sort -rn | sed 's/^[0-9]* //')
    for name in $longest_first; do
        secret_value "$name"
        [ "${#value}" -ge 4 ] || continue
        rest=$text
        text=''
        while :; do
            case $rest in *"$value"*) ;; *) break ;; esac
            text="$text${rest%%"$value"*}***"
            rest=${rest#*"$value"}
        done
        text="$text$rest"
    done
    printf '%s' "$text"
}

fetch_secrets() {  # each referenced secret into $secrets_dir/NAME; else report which and why
    for name in $names; do
        if aws secretsmanager get-secret-value --secret-id "$secrets_path$name" \
            --query SecretString --output text >"$secrets_dir/$name" 2>"$dir/secret.err"; then
            secret_value "$name"
            [ "${#value}" -lt 4 ] || continue
            code=TooShort # as secrets.lookup: a value too short to mask is never used
        else
            code=$(sed -n 's/.*(\([A-Za-z]*\)).*/\1/p' "$dir/secret.err" | head -n 1)
        fi
        rm -f "$secrets_dir/$name"
        if [ "$code" = TooShort ]; then
            why="secret '$name' of project '$project': a secret's value has at least 4 characters: a shorter one could not be masked in logs without masking ordinary text"
        elif [ "$code" = ResourceNotFoundException ]; then
            why="secret '$name' is not set in project '$project' (set it with \`stratoflow secrets set $name --project $project\`)"
        else
            why="secret '$name' ($secrets_path$name) could not be read: ${code:-unknown error}"
        fi
        : >"$dir/secrets.failed"
        fail null "$why"
        return 1
    done
    : >"$dir/secrets.ready"
}

fetch_resources() {  # each pinned version into its path; else report which and why
    work=${STRATOFLOW_RESOURCES_DIR:-$dir/work}
    mkdir -p "$work"
    while read -r version path; do
        [ -n "$path" ] || continue
        case $path in */*) mkdir -p "$work/${path%/*}" ;; esac
        if aws s3api get-object --bucket "$STRATOFLOW_RESOURCES_BUCKET" \
            --key "$STRATOFLOW_RESOURCES_PREFIX$path" --version-id "$version" "$work/$path" \
            >/dev/null 2>"$dir/resource.err"; then
            continue
        fi
        code=$(sed -n 's/.*(\([A-Za-z]*\)).*/\1/p' "$dir/resource.err" | head -n 1)
        : >"$dir/resources.failed"
        fail null "resource '$path' version $version (pinned when the run was created) could not be fetched: ${code:-unknown error}"
        return 1
    done <<RESOURCES
$resources
RESOURCES
    chmod -R a+rX "$work" 2>/dev/null
    : >"$dir/resources.ready"
}

fail() {  # fail CODE MESSAGE: send-task-failure with the exit code and the log's last lines
    {
        printf '{"exit_code":%s,"error":' "$1"
        printf '%s' "$2" | json_string
        printf ',"log_tail":'
        if [ -f "$dir/log" ]; then
            tail -n 40 "$dir/log" | mask | tail -n 20 | LC_ALL=C tr -cd '\11\12\15\40-\176' \
                | tail -c 2000 | json_string
        else
            printf '""'
        fi
        printf '}'
    } >"$dir/cause.json"
    report send-task-failure --error Stratoflow.TaskFailed --cause "file://$dir/cause.json"
}

if [ -n "$names" ]; then
    fetch_secrets || exit 0 # reported; the task container sees secrets.failed and ends
fi
if [ -n "$resources" ]; then
    fetch_resources || exit 0 # reported; the task container sees resources.failed and ends
fi

elapsed=$heartbeat
until [ -s "$dir/exit" ]; do
    if [ "$heartbeat" -gt 0 ] && [ "$elapsed" -ge "$heartbeat" ]; then
        sfn send-task-heartbeat 2>/dev/null || true
        elapsed=0
    fi
    sleep "$poll"
    elapsed=$((elapsed + poll))
done

code=$(head -n 1 "$dir/exit" | tr -cd '0-9')
[ -n "$code" ] || code=255
if [ "$code" != 0 ]; then
    fail "$code" "exited with code $code"
elif [ -f "$dir/outputs" ] && [ "$(wc -c <"$dir/outputs")" -gt "$max_outputs" ]; then
    fail 0 "the outputs file is larger than $max_outputs bytes"
elif [ -f "$dir/outputs" ] && bad=$(empty_key_line "$dir/outputs") && [ -n "$bad" ]; then
    # as the local runner (taskexec.empty_key_message): no template could read its value
    fail 0 "outputs: line $bad of the outputs file (\$STRATOFLOW_OUTPUT) has an empty key (=value); write key=value lines with a key"
else
    {
        printf '{"status":"succeeded","exit_code":0,"outputs":'
        if [ -n "$names" ] && [ -f "$dir/outputs" ]; then
            mask <"$dir/outputs" >"$dir/outputs.masked"
            outputs_json "$dir/outputs.masked"
        else
            outputs_json "$dir/outputs"
        fi
        printf '}'
    } >"$dir/result.json"
    report send-task-success --task-output "file://$dir/result.json" \
        || fail 0 "the outputs could not be reported (not UTF-8?)"
fi
exit 0
