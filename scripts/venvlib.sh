# Sourced by setup.sh and floors.sh: keep a cached venv's editable install on this checkout.
# refresh_editable VENV INSTALL...: run INSTALL (a no-deps editable install of $ROOT) when the venv
# points at another clone, or when pyproject.toml's [project] table (entry points, URLs) changed.
refresh_editable() {
  local venv=$1; shift
  local meta
  meta=$("$venv/bin/python" -c 'import json, sys, tomllib
print(json.dumps(tomllib.load(open(sys.argv[1], "rb"))["project"], sort_keys=True))' "$ROOT/pyproject.toml" |
    sha256sum | cut -c1-12)
  if [[ $(cat "$venv/.project" 2>/dev/null) != "$meta" ]] ||
    ! "$venv/bin/python" -c "import airflow_batchjob, sys; sys.exit(0 if airflow_batchjob.__file__.startswith('$ROOT/') else 1)" 2>/dev/null; then
    "$@" >&2
    echo "$meta" >"$venv/.project"
  fi
}
