#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kubectl, etcd, helm) and the
# node tier (kube-controller-manager, kube-scheduler, kubelet) from the Go
# wrapper modules in tests/controlplane/ into a versioned cache directory.
#
#   scripts/controlplane.sh build   build unless cached; last stdout line = bin dir
#   scripts/controlplane.sh path    print the bin dir without building
#   scripts/controlplane.sh key     print the cache key
#   scripts/controlplane.sh prune   remove cached builds other than the current one
#
# Environment:
#   IMAGELABEL_CP_CACHE  cache root (default: $HOME/.cache/imagelabel/controlplane)
#   IMAGELABEL_CP_NICE   nice level for go build (default: 10)
#
# All logging goes to stderr so callers can take the path from stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modules="$repo_root/tests/controlplane"
cache_root="${IMAGELABEL_CP_CACHE:-$HOME/.cache/imagelabel/controlplane}"
binaries=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet etcd helm)

log() { printf 'controlplane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Versions come from the go.mod files themselves, so bumping a module is the
# only edit needed to move the control plane to a new release.
require_version() {
    local gomod="$1" module="$2" version
    version="$(awk -v m="$module" '($1 == m || ($1 == "require" && $2 == m)) && $0 !~ /=>/ {
        print ($1 == "require" ? $3 : $2); exit }' "$gomod")"
    [[ -n "$version" ]] || die "no requirement on $module in $gomod"
    printf '%s\n' "$version"
}

k8s_version="$(require_version "$modules/k8s/go.mod" k8s.io/kubernetes)"
etcd_version="$(require_version "$modules/etcd/go.mod" go.etcd.io/etcd/server/v3)"
helm_version="$(require_version "$modules/helm/go.mod" helm.sh/helm/v3)"

[[ "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected kubernetes version $k8s_version"
k8s_major="${BASH_REMATCH[1]}"
k8s_minor="${BASH_REMATCH[2]}"

# Without these, /version reports v0.0.0 and Helm's kubeVersion checks and
# deprecation lint assume Kubernetes 1.20.
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor"
    k8s_ldflags+=" -X $pkg.gitTreeState=clean"
done
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done
etcd_ldflags="-s -w"
# Static binaries, as the upstream release builds are.
build_env=(CGO_ENABLED=0)
# -mod=readonly: fail on an incomplete go.sum instead of editing it.
# -buildvcs=false: the binaries must not depend on this repository's state.
build_flags=(-trimpath -mod=readonly -buildvcs=false)

# Everything that changes the output goes into the key: versions, module
# files, toolchain and the build recipe above.
cache_key() {
    local go_version recipe_hash
    go_version="$(go env GOVERSION 2>/dev/null)" || die "go is not installed (need Go >= 1.24 on PATH)"
    recipe_hash="$(
        {
            for m in k8s etcd helm; do
                cat "$modules/$m/go.mod" "$modules/$m/go.sum"
            done
            printf '%s\n' "$go_version" "$k8s_ldflags" "$helm_ldflags" "$etcd_ldflags" "${build_env[*]}" "${build_flags[*]}"
        } | sha256sum | cut -c1-12
    )"
    printf 'k8s-%s_etcd-%s_helm-%s_%s_%s\n' "$k8s_version" "$etcd_version" "$helm_version" "$go_version" "$recipe_hash"
}

is_complete() {
    local dir="$1" b
    [[ -f "$dir/stamp" ]] || return 1
    for b in "${binaries[@]}"; do
        [[ -x "$dir/bin/$b" ]] || return 1
    done
}

go_build() {
    # out: a directory ending in / or a file name (go build -o semantics).
    local module="$1" ldflags="$2" out="$3"
    shift 3
    local start=$SECONDS
    log "building $* (module $module)"
    (cd "$modules/$module" &&
        env "${build_env[@]}" nice -n "${IMAGELABEL_CP_NICE:-10}" \
            go build "${build_flags[@]}" -ldflags="$ldflags" -o "$out" "$@")
    log "built $* in $((SECONDS - start))s"
}

build() {
    local key dir
    key="$(cache_key)"
    dir="$cache_root/$key"
    if is_complete "$dir"; then
        log "cache hit: $dir"
        printf '%s\n' "$dir/bin"
        return
    fi

    mkdir -p "$cache_root"
    command -v flock >/dev/null || die "flock (util-linux) is required"
    # One builder per key: concurrent test processes wait here instead of
    # compiling the same binaries twice on a small machine.
    exec 9>"$cache_root/$key.lock"
    if ! flock -n 9; then
        log "another build of $key is running; waiting for it"
        flock 9
    fi
    if is_complete "$dir"; then
        log "built by another process: $dir"
        printf '%s\n' "$dir/bin"
        return
    fi

    local start=$SECONDS staging="$cache_root/$key.partial"
    rm -rf "$staging" "$dir"
    mkdir -p "$staging/bin"
    log "cache miss: building $key into $cache_root (with cold Go caches this takes about 8-10 min on 2 cores)"
    # One go build for all five: they share most packages, and go schedules
    # the compile of the union across the cores (separate builds would
    # compile client-go and apimachinery once per binary's link graph).
    go_build k8s "$k8s_ldflags" "$staging/bin/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl \
        k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubelet
    # A file name, because go would name this binary after the /v3 path.
    go_build etcd "$etcd_ldflags" "$staging/bin/etcd" go.etcd.io/etcd/server/v3
    go_build helm "$helm_ldflags" "$staging/bin/" helm.sh/helm/v3/cmd/helm

    local b
    for b in "${binaries[@]}"; do
        [[ -x "$staging/bin/$b" ]] || die "build produced no $b"
    done
    # The stamp is written last and the directory renamed into place, so an
    # interrupted build never looks complete.
    printf 'key=%s\nbuilt=%s\nseconds=%s\n' "$key" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - start))" >"$staging/stamp"
    mv "$staging" "$dir"
    log "done in $((SECONDS - start))s: $dir/bin"
    printf '%s\n' "$dir/bin"
}

# Not automatic: another worktree may be using an older key right now.
prune() {
    local keep entry
    keep="$(cache_key)"
    [[ -d "$cache_root" ]] || return 0
    for entry in "$cache_root"/*; do
        [[ -e "$entry" ]] || continue
        case "$(basename "$entry")" in
        "$keep" | "$keep.lock") ;;
        *)
            log "removing $entry"
            rm -rf "$entry"
            ;;
        esac
    done
}

main() {
    case "${1:-}" in
    build) build ;;
    prune) prune ;;
    path) printf '%s\n' "$cache_root/$(cache_key)/bin" ;;
    key) cache_key ;;
    *)
        printf 'usage: %s build|path|key|prune\n' "$0" >&2
        exit 2
        ;;
    esac
}

# On one line so bash has read it completely before the (long) build runs:
# bash reads scripts as it goes, and an edit or checkout of this file during
# a build would otherwise make it execute whatever lands at the old offset.
main "$@"; exit
