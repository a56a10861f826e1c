#!/usr/bin/env bash
# Assembles the operator image and a pause (sandbox) image as OCI layout
# tarballs without a container engine, for `ctr -n k8s.io images import`.
#
#   scripts/image.sh build    build both; prints two lines "<name> <tarball>"
#   scripts/image.sh recipe   print what the operator image is made of, one
#                             "field value" a line (tests/image_recipe.rs
#                             compares it with the Dockerfile)
#
# The operator image is what the Dockerfile's runtime stage describes
# (distroless cc, nonroot): the release binary at /imagelabel, the shared
# libraries it needs (per ldd) with the dynamic loader, CA certificates, an
# /etc/passwd with nonroot (65532), a world-writable /tmp, and no shell.
#
# Environment:
#   CARGO_TARGET_DIR        where cargo builds (default: <repo>/target)
#   IMAGELABEL_IMAGE_OUT    output dir (default: $CARGO_TARGET_DIR/image)
#   IMAGELABEL_IMAGE_NICE   nice level of the builds (default: 10)
#   IMAGELABEL_IMAGE_BINARY a prebuilt operator binary to put in the image
#                           instead of building the release one (the test
#                           suite passes the one cargo test built: a release
#                           build would add ~10 min to a cold CI run and
#                           minutes to every warm run after a source change)
#
# Logging goes to stderr; stdout carries only the results.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
out_dir="${IMAGELABEL_IMAGE_OUT:-$target_dir/image}"
nice_level="${IMAGELABEL_IMAGE_NICE:-10}"

# The recipe, kept next to each other so that a Dockerfile change has one
# obvious place to follow here; tests/image_recipe.rs fails until they agree.
cargo_build_args=(--release --locked --no-default-features --bin imagelabel)
# The Dockerfile strips the binary after building it.
strip_binary=yes
binary_src=release/imagelabel
binary_dst=/imagelabel
user=65532:65532
entrypoint='["/imagelabel"]'
cmd='["run"]'
exposed_ports=(8080)
repository=docker.io/library/imagelabel-operator
pause_repository=docker.io/library/imagelabel-pause

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

recipe() {
    printf 'cargo_build %s\n' "${cargo_build_args[*]}"
    printf 'strip %s\n' "$strip_binary"
    printf 'binary %s %s\n' "$binary_src" "$binary_dst"
    printf 'user %s\n' "$user"
    printf 'entrypoint %s\n' "$entrypoint"
    printf 'cmd %s\n' "$cmd"
    printf 'expose %s\n' "${exposed_ports[*]}"
    printf 'repository %s\n' "$repository"
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Writes $1 into the layout's blob store and sets blob_digest / blob_size.
add_blob() {
    local file="$1" layout="$2"
    blob_digest="$(sha256 "$file")"
    blob_size="$(stat -c %s "$file")"
    mkdir -p "$layout/blobs/sha256"
    cp "$file" "$layout/blobs/sha256/$blob_digest"
}

# oci_image <rootfs> <name:tag> <config-json-fragment> <out.tar>
# A single-layer, uncompressed image: containerd unpacks it as it is, and
# compressing ~10 MB on every test run would only cost time.
oci_image() {
    local rootfs="$1" name="$2" config="$3" out="$4"
    local work layout layer diff_id config_digest config_size manifest_digest manifest_size
    work="$(mktemp -d "$out_dir/oci.XXXXXX")"
    layout="$work/layout"
    mkdir -p "$layout"
    layer="$work/layer.tar"
    # Fixed owner and times, so the same inputs give the same digests.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
        -C "$rootfs" -cf "$layer" .
    add_blob "$layer" "$layout"
    diff_id="$blob_digest"
    local layer_size="$blob_size"

    printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$config" "$diff_id" >"$work/config.json"
    add_blob "$work/config.json" "$layout"
    config_digest="$blob_digest" config_size="$blob_size"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
        "$config_digest" "$config_size" "$diff_id" "$layer_size" >"$work/manifest.json"
    add_blob "$work/manifest.json" "$layout"
    manifest_digest="$blob_digest" manifest_size="$blob_size"

    # io.containerd.image.name carries the full name: ctr would otherwise
    # make one up from the ref.name tag alone.
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest_digest" "$manifest_size" "$name" "${name##*:}" >"$layout/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$layout" -cf "$out" .
    rm -rf "$work"
}

# Copies a file to the same absolute path under the rootfs.
copy_into() {
    local rootfs="$1" path="$2"
    mkdir -p "$rootfs$(dirname "$path")"
    cp -L "$path" "$rootfs$path"
}

base_files() {
    local rootfs="$1"
    mkdir -p "$rootfs/etc" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    # distroless's users: root, nobody, nonroot; no login shell anywhere.
    cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
    mkdir -p "$rootfs/home/nonroot"
}

operator_image() {
    local binary="${IMAGELABEL_IMAGE_BINARY:-$target_dir/$binary_src}" rootfs="$out_dir/rootfs-operator"
    if [[ -n "${IMAGELABEL_IMAGE_BINARY:-}" ]]; then
        log "using the prebuilt $binary instead of cargo build ${cargo_build_args[*]}"
    else
        log "cargo build ${cargo_build_args[*]} (target dir $target_dir)"
        (cd "$repo_root" && CARGO_TARGET_DIR="$target_dir" nice -n "$nice_level" cargo build "${cargo_build_args[@]}" >&2)
    fi
    [[ -x "$binary" ]] || die "no binary at $binary"

    rm -rf "$rootfs"
    base_files "$rootfs"
    cp "$binary" "$rootfs$binary_dst"
    if [[ "$strip_binary" == yes ]]; then
        strip "$rootfs$binary_dst"
    fi
    local lib
    # ldd lists "name => /path (addr)" and the loader as "/path (addr)".
    while read -r lib; do
        copy_into "$rootfs" "$lib"
    done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    local ca=/etc/ssl/certs/ca-certificates.crt
    [[ -f "$ca" ]] || die "$ca is missing (apt-get install ca-certificates)"
    copy_into "$rootfs" "$ca"

    local tag ports="" p
    for p in "${exposed_ports[@]}"; do
        ports+="${ports:+,}\"$p/tcp\":{}"
    done
    # The tag follows the contents, so a rebuilt binary is a new image and
    # an unchanged one is found already imported.
    tag="dev-$(tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf - . | sha256sum | cut -c1-12)"
    local name="$repository:$tag" out="$out_dir/imagelabel-operator-$tag.oci.tar"
    if [[ ! -f "$out" ]]; then
        oci_image "$rootfs" "$name" \
            "{\"User\":\"$user\",\"Entrypoint\":$entrypoint,\"Cmd\":$cmd,\"ExposedPorts\":{$ports},\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"SSL_CERT_FILE=$ca\"],\"WorkingDir\":\"/\"}" \
            "$out"
    fi
    printf '%s %s\n' "$name" "$out"
}

pause_image() {
    local rootfs="$out_dir/rootfs-pause" src="$out_dir/pause.c"
    command -v gcc >/dev/null || die "gcc is required for the pause binary (apt-get install gcc libc6-dev)"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    # The sandbox only has to hold the pod's namespaces, exit on TERM and
    # reap children (it is PID 1 of a pod that shares its PID namespace).
    cat >"$src" <<'EOF'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, quit);
    signal(SIGTERM, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
EOF
    gcc -static -Os -s -o "$rootfs/pause" "$src"
    local tag
    tag="dev-$(sha256 "$rootfs/pause" | cut -c1-12)"
    local name="$pause_repository:$tag" out="$out_dir/imagelabel-pause-$tag.oci.tar"
    if [[ ! -f "$out" ]]; then
        oci_image "$rootfs" "$name" '{"User":"65535:65535","Entrypoint":["/pause"]}' "$out"
    fi
    printf '%s %s\n' "$name" "$out"
}

main() {
    case "${1:-}" in
    build)
        mkdir -p "$out_dir"
        operator_image
        pause_image
        ;;
    recipe) recipe ;;
    *)
        printf 'usage: %s build|recipe\n' "$0" >&2
        exit 2
        ;;
    esac
}

main "$@"; exit
