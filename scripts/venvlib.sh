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
    ! "$venv/bin/python" -I -c "import airflow_batchjob, sys; sys.exit(0 if airflow_batchjob.__file__.startswith('$ROOT/') else 1)" 2>/dev/null; then
    "$@" >&2
    echo "$meta" >"$venv/.project"
  fi
}

# compile_bytecode VENV: write the venv's bytecode once. Where PYTHONDONTWRITEBYTECODE is set (this
# machine and CI set it) no import writes __pycache__, and uv installs without compiling: every
# Airflow task process then compiled cncf.kubernetes, the kubernetes client and pika from source,
# 8-13 s a parse on 2 cores; eight at once took past Airflow's 120 s DAG-import timeout and failed a
# task (the floor lane's defer-race test, CI of 2026-12-07). compileall writes whatever that
# variable says, and only where the source is newer than the bytecode.
compile_bytecode() {
  local venv=$1 site
  [[ -f $venv/.bytecode ]] && return 0
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$venv/bin/python" -m compileall -q -j 2 "$site" >/dev/null || true
  touch "$venv/.bytecode"
}
