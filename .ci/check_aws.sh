#!/usr/bin/env bash
# The AWS checks of `make test` (issue 3, "How we will know"):
#   sam validate --lint, cfn-lint template.yaml, statelint on every statemachines/*.asl.json,
#   sam build with python3.12, and that the core layer it builds ships its bytecode and
#   aarch64 shared objects only (the functions run on arm64).
# Any finding fails the run. Everything runs offline with respect to AWS: no account, fake
# credentials, a fixed Region (sam build still installs the layer's requirements with pip).
#
# Usage: .ci/check_aws.sh [SAM_BIN_DIR]   (default .venv-sam/bin, made by `make sam-venv`)
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_BIN=${1:-${SAM_BIN:-.venv-sam/bin}}
fail() { echo "check_aws: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

for tool in sam cfn-lint statelint; do
    [[ -x "$SAM_BIN/$tool" ]] || fail "$SAM_BIN/$tool not found; run 'make sam-venv' (installs .ci/requirements-sam.txt)"
done

# No AWS account here, and none needed: keep every tool away from real credentials and
# endpoints. The fake keys only satisfy tools that insist on having some.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_DEFAULT_PROFILE
export SAM_CLI_TELEMETRY=0 SAM_CLI_CONTAINER_CONNECTION_TIMEOUT=1

# python3.12 (the Lambda runtime): a python3.12 on PATH, else any 3.12.x that pyenv has.
find_python312() {
    local candidate version
    if candidate=$(command -v python3.12 2>/dev/null) && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
        "$candidate" -c 'import sys; print(sys.executable)'
        return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -rV); do
            candidate=$(PYENV_VERSION=$version pyenv which python3.12 2>/dev/null) || continue
            if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
                echo "$candidate"
                return 0
            fi
        done
    fi
    # pyenv installed but not on this PATH: its versions directory still holds the interpreter.
    for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV); do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
PY312=$(find_python312) || fail "python3.12 not found (sam build needs the Lambda runtime's Python). Put python3.12 on PATH, or install it with pyenv: 'pyenv install 3.12' (DESIGN.md: PYENV_VERSION=3.11.7:3.12.1)."
# sam build looks up 'python3.12' on PATH: put the real interpreter's directory first.
PATH="$(dirname "$PY312"):$PATH"
export PATH

step "sam validate --lint"
"$SAM_BIN/sam" validate --lint --template-file template.yaml

step "cfn-lint (errors, warnings and informational findings)"
"$SAM_BIN/cfn-lint" --include-checks I -- template.yaml

step "files the template refers to"
# Every CodeUri/ContentUri/DefinitionUri must exist; say which is missing rather than let
# sam build fail with a stack trace.
"$SAM_BIN/python" - <<'PY'
import pathlib
import sys

from samtranslator.yaml_helper import yaml_parse

template = yaml_parse(pathlib.Path("template.yaml").read_text())
missing = []
for name, resource in template["Resources"].items():
    props = resource.get("Properties") or {}
    for key in ("CodeUri", "ContentUri", "DefinitionUri"):
        uri = props.get(key)
        if isinstance(uri, str) and not uri.startswith("s3://") and not pathlib.Path(uri).exists():
            missing.append(f"{name}.{key}: {uri}")
        if key == "CodeUri" and isinstance(uri, str) and pathlib.Path(uri).is_dir():
            if not (pathlib.Path(uri) / "app.py").is_file():
                missing.append(f"{name}.{key}: {uri}app.py (Handler app.handler)")
if missing:
    sys.exit("check_aws: the template refers to files that do not exist:\n  " + "\n  ".join(missing))
PY
echo "every CodeUri, ContentUri and DefinitionUri exists"

step "statelint statemachines/*.asl.json"
shopt -s nullglob
asl_files=(statemachines/*.asl.json)
shopt -u nullglob
((${#asl_files[@]})) || fail "no statemachines/*.asl.json: the template needs statemachines/task_attempt.asl.json"
for asl in "${asl_files[@]}"; do
    echo "$asl"
    "$SAM_BIN/statelint" "$asl"
done

step "sam build (python3.12: $PY312)"
"$SAM_BIN/sam" build --template-file template.yaml \
    --build-dir .aws-sam/ci-build --cache-dir .aws-sam/ci-cache --cached

step "the core layer ships its bytecode (layers/core/Makefile)"
# Lambda's /opt is read-only: a module without bytecode there is compiled at every cold start.
"$PY312" - .aws-sam/ci-build/CoreLayer/python <<'PY'
import importlib.util
import pathlib
import sys

site = pathlib.Path(sys.argv[1])
package = site / "stratoflow"
if not package.is_dir():
    sys.exit(f"check_aws: {package} is missing: the layer was not built as layers/core/Makefile says")
bad = []
sources = sorted(package.rglob("*.py"))
for source in sources:
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    if not cached.is_file():
        bad.append(f"{source.relative_to(site)}: no {cached.name}")
        continue
    flags = int.from_bytes(cached.read_bytes()[4:8], "little")
    if flags != 0b01:  # hash-based and unchecked: a zip's file times cannot invalidate it
        bad.append(f"{cached.relative_to(site)}: not unchecked-hash bytecode (flags {flags})")
if bad:
    sys.exit("check_aws: the core layer lacks bytecode for python3.12:\n  " + "\n  ".join(bad[:20]))
print(f"{len(sources)} modules of stratoflow, each with unchecked-hash bytecode for {sys.implementation.cache_tag}")
PY

step "the core layer's shared objects are for the functions' architecture (arm64: aarch64)"
# pip installs wheels for the platforms layers/core/Makefile names; one built for this
# machine instead (x86_64) would fail to import on every arm64 function.
"$PY312" - .aws-sam/ci-build/CoreLayer/python <<'PY'
import pathlib
import sys

ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64"}
site = pathlib.Path(sys.argv[1])
found: dict[str, list[str]] = {}
for lib in sorted(site.rglob("*.so*")):
    if not lib.is_file():
        continue
    head = lib.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        continue
    machine = ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), f"e_machine {head[18:20].hex()}")
    found.setdefault(machine, []).append(str(lib.relative_to(site)))
if not found.get("aarch64"):
    sys.exit(f"check_aws: no aarch64 shared object in the core layer ({site}): was it built for arm64?")
wrong = {m: libs for m, libs in found.items() if m != "aarch64"}
if wrong:
    sys.exit("check_aws: shared objects of another architecture in the core layer:\n  "
             + "\n  ".join(f"{m}: {lib}" for m, libs in wrong.items() for lib in libs[:20]))
print(f"{len(found['aarch64'])} shared objects, all aarch64")
PY

echo
echo "check_aws: sam validate --lint, cfn-lint, statelint (${#asl_files[@]} file(s)), sam build, the layer's bytecode and its architecture passed"
