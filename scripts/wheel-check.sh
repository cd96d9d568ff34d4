#!/usr/bin/env bash
# The wheel as a user gets it. Builds it with maturin (zig as the linker, so it runs on glibc
# 2.17 and later: manylinux2014), shows what auditwheel says of it, installs it into a fresh
# virtual environment that has nothing else, and there, with only that environment on PATH (no
# cargo, no compiler), runs `memwarden --version`, a short `memwarden run` of a Python worker that
# marks its trials with `import memwarden`, and `memwarden analyze`, asserting the leak is found.
# Prints the wheel's size, its installed size and the binary's. maturin, ziglang and auditwheel
# come from PyPI into a virtual environment outside the clone, reused across runs.
#
#   scripts/wheel-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/memwarden/target}"
tools="${MEMWARDEN_WHEEL_TOOLS:-$HOME/.cache/memwarden/wheel-tools}"
if ! "$tools/bin/python" -c 'import maturin, ziglang, auditwheel' 2>/dev/null; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q 'maturin>=1.7,<2' ziglang auditwheel
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

started=$(date +%s)
if ! PATH="$tools/bin:$PATH" maturin build --release --zig --compatibility manylinux2014 \
    --out "$work/dist" >"$work/maturin.log" 2>&1; then
    cat "$work/maturin.log" >&2
    echo "wheel-check: maturin could not build the wheel" >&2
    exit 1
fi
wheel=$(ls "$work"/dist/memwarden-*.whl)
echo "wheel-check: built $(basename "$wheel") in $(( $(date +%s) - started )) s"
"$tools/bin/auditwheel" show "$wheel" | tr '\n' ' ' | sed 's/  */ /g'; echo

python3 -m venv "$work/fresh"
"$work/fresh/bin/pip" install -q --no-index "$wheel"
# Nothing but the fresh environment on PATH: no cargo, no cc, no memwarden from elsewhere.
bare() { env -i HOME="$work" LANG=C.UTF-8 PATH="$work/fresh/bin" "$@"; }
bare /bin/sh -c 'command -v cargo || command -v cc || command -v rustc' && {
    echo "wheel-check: a compiler is on the bare PATH" >&2; exit 1; }
[ "$(bare /bin/sh -c 'command -v memwarden')" = "$work/fresh/bin/memwarden" ]
bare memwarden --version
bare python -c 'import memwarden, sys; sys.exit(0 if "site-packages" in memwarden.__file__ else 1)'
# The pytest plugin is registered under the module's own name (pyproject.toml).
bare python -c 'import importlib.metadata as m
found = [(e.name, e.value) for e in m.distribution("memwarden").entry_points if e.group == "pytest11"]
assert found == [("memwarden", "memwarden")], found'

cat > "$work/worker.py" <<'PY'
import time
import memwarden

kept = []
for number in range(12):
    with memwarden.trial(number, batch_size=32):
        kept.append(bytearray(4 << 20))  # 4 MiB kept by every trial
        for i in range(0, len(kept[-1]), 4096):
            kept[-1][i] = 1
        time.sleep(0.15)
    time.sleep(0.05)
PY
bare memwarden run --quiet --no-report --out "$work/run" -- python "$work/worker.py" >/dev/null
bare memwarden analyze "$work/run" --json > "$work/findings.json"
bare python - "$work/findings.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
worker = findings["workers"][0]
assert findings["run"]["trials"] == 12, findings["run"]
assert worker["verdict"] == "leak", worker["verdict"]
rate = next(k["per_trial"]["bytes"] for k in worker["kinds"] if k["kind"] == worker["kind"])
assert 3.5 * 2**20 < rate < 4.5 * 2**20, rate
print(f"wheel-check: the installed memwarden found the leak: {rate / 2**20:.2f} MiB/trial in {worker['kind']}")
PY
mib() { echo "$(( ($1 + 524288) / 1048576 )) MiB"; }
site=$(echo "$work"/fresh/lib/python3*/site-packages)
installed=$(( $(du -sbc "$work/fresh/bin/memwarden" "$site"/memwarden "$site"/memwarden-*.dist-info | tail -1 | cut -f1) ))
echo "wheel-check: wheel $(mib "$(stat -c %s "$wheel")"), installed $(mib "$installed") (the binary, the package and its metadata), binary $(mib "$(stat -c %s "$work/fresh/bin/memwarden")")"
echo "wheel-check: passed in $(( $(date +%s) - started )) s"
