#!/usr/bin/env bash
# Compiles tools/neuron/mod/*.mod into BUILD_DIR/libelmmech.so, loadable with
# h.nrn_load_dll() (tools/neuron/simulate.py does this). Uses nocmodl and the C compiler
# directly, because Debian 12's nrnivmodl (NEURON 8.2.2) looks for its makefile and
# libnrniv in the wrong places.
#
#   tools/neuron/build_mechanisms.sh BUILD_DIR [MOD_DIR]
#
# Idempotent: does nothing when BUILD_DIR/libelmmech.so is newer than every .mod file and
# this script. The library is built in a temporary folder and moved into place, so a
# reader never sees a half-written file. Paths can be overridden with the environment
# variables NOCMODL, NRN_INCDIR, NRN_LIBDIR, NRNUNITS, CC (defaults: Debian 12 packages
# neuron + neuron-dev).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [MOD_DIR]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="$1"
mod_dir="${2:-$here/mod}"
mod_dir="$(cd "$mod_dir" && pwd)"

NOCMODL="${NOCMODL:-$(command -v nocmodl || true)}"
NRN_INCDIR="${NRN_INCDIR:-/usr/include}"
NRN_LIBDIR="${NRN_LIBDIR:-/usr/lib/nrn}"
NRNUNITS="${NRNUNITS:-/usr/share/nrn/lib/nrnunits.lib}"
CC="${CC:-cc}"

fail() { echo "build_mechanisms: $*" >&2; exit 1; }
[ -n "$NOCMODL" ] && [ -x "$NOCMODL" ] || fail "nocmodl not found (install neuron-dev or set NOCMODL)"
[ -f "$NRN_INCDIR/nrnconf.h" ] || fail "$NRN_INCDIR/nrnconf.h missing (install neuron-dev or set NRN_INCDIR)"
[ -f "$NRN_LIBDIR/libnrniv.so" ] || fail "$NRN_LIBDIR/libnrniv.so missing (install neuron or set NRN_LIBDIR)"
[ -f "$NRNUNITS" ] || fail "$NRNUNITS missing (set NRNUNITS)"
command -v "$CC" >/dev/null || fail "C compiler '$CC' not found (install build-essential)"

shopt -s nullglob
mods=("$mod_dir"/*.mod)
[ ${#mods[@]} -gt 0 ] || fail "no .mod files in $mod_dir"

mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"
lib="$build_dir/libelmmech.so"

# Up to date?
if [ -f "$lib" ]; then
  stale=0
  for f in "${mods[@]}" "${BASH_SOURCE[0]}"; do
    [ "$f" -nt "$lib" ] && stale=1
  done
  if [ $stale -eq 0 ]; then
    echo "build_mechanisms: $lib is up to date"
    exit 0
  fi
fi

work="$(mktemp -d "$build_dir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# MPI headers are only needed if NEURON's headers include mpi.h; add them when present.
mpi_inc=()
for d in /usr/lib/x86_64-linux-gnu/openmpi/include /usr/lib/x86_64-linux-gnu/openmpi/include/openmpi; do
  [ -d "$d" ] && mpi_inc+=("-I$d")
done
cflags=(-O2 -fPIC -Wno-write-strings -DHAVE_CONFIG_H "-I$NRN_INCDIR" "${mpi_inc[@]}")

names=()
for f in "${mods[@]}"; do
  name="$(basename "$f" .mod)"
  names+=("$name")
  # nocmodl resolves units relative to the working directory; run it inside the work folder.
  (cd "$mod_dir" && MODLUNIT="$NRNUNITS" "$NOCMODL" "$name.mod" -o "$work" >"$work/$name.nocmodl.log" 2>&1) \
    || { cat "$work/$name.nocmodl.log" >&2; fail "nocmodl failed on $f"; }
  "$CC" "${cflags[@]}" -c "$work/$name.c" -o "$work/$name.o"
done

# Registration entry point that NEURON calls after dlopen (what nrnivmodl writes as mod_func).
{
  echo '#include <stdio.h>'
  echo 'extern int nrnmpi_myid;'
  echo 'extern int nrn_nobanner_;'
  for n in "${names[@]}"; do echo "extern void _${n}_reg(void);"; done
  echo 'void modl_reg(void) {'
  echo '  if (!nrn_nobanner_ && nrnmpi_myid < 1) {'
  printf '    fprintf(stderr, "Additional mechanisms from files\\n");\n'
  for n in "${names[@]}"; do printf '    fprintf(stderr, " \\"%s.mod\\"");\n' "$n"; done
  printf '    fprintf(stderr, "\\n");\n'
  echo '  }'
  for n in "${names[@]}"; do echo "  _${n}_reg();"; done
  echo '}'
} >"$work/mod_func.c"
"$CC" "${cflags[@]}" -c "$work/mod_func.c" -o "$work/mod_func.o"

objs=()
for n in "${names[@]}"; do objs+=("$work/$n.o"); done
"$CC" -shared -fPIC -o "$work/libelmmech.so" "${objs[@]}" "$work/mod_func.o" \
  "-L$NRN_LIBDIR" -lnrniv "-Wl,-rpath,$NRN_LIBDIR" -lm

mv -f "$work/libelmmech.so" "$lib"
echo "build_mechanisms: built $lib from ${#names[@]} mechanisms (${names[*]})"
