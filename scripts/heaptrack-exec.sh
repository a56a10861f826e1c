#!/bin/bash
# Runs a command under heaptrack, keeping its pid: the process replaces this
# script (exec), so a signal sent to the child the bench started reaches it
# (`heaptrack <cmd>` keeps its own shell as the child and the operator never
# sees the bench's SIGTERM). One profile per process:
# ${HEAPTRACK_OUT:-/tmp}/imagelabel.<pid>.zst, read with `heaptrack_print`.
#
#   IMAGELABEL_OPERATOR_WRAPPER=scripts/heaptrack-exec.sh cargo bench --bench convergence
set -euo pipefail
lib=${HEAPTRACK_LIB:-/usr/lib/heaptrack}
out="${HEAPTRACK_OUT:-/tmp}/imagelabel.$$"
pipe=$(mktemp -u /tmp/heaptrack-pipe.XXXXXX)
mkfifo "$pipe"
"$lib/libexec/heaptrack_interpret" <"$pipe" | zstd -q >"$out.zst" &
# The interpreter holds the pipe open by now; the name is not needed.
(sleep 5; rm -f "$pipe") &
LD_PRELOAD="$lib/libheaptrack_preload.so" DUMP_HEAPTRACK_OUTPUT="$pipe" exec "$@"
