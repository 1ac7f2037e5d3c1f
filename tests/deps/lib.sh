# Shared settings for the dependency scripts. Sourced, not run.
set -euo pipefail

# Slow builds live outside the work tree so clean clones reuse them.
BLIXT_CACHE=${BLIXT_CACHE:-/var/cache/blixt}
export GOMODCACHE=${GOMODCACHE:-$BLIXT_CACHE/gomodcache}
export GOCACHE=${GOCACHE:-$BLIXT_CACHE/gocache}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
export CARGO_HOME_BLIXT=$BLIXT_CACHE/cargo-home
mkdir -p "$BLIXT_CACHE"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

log() { printf '[deps] %s\n' "$*" >&2; }

# A stamp records the inputs a build was made from; a changed input rebuilds.
stamp_matches() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
