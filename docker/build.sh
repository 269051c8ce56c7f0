#!/usr/bin/env bash
# Build, push and pin the project's images (the seed's docker/build.sh). Records what it built or pushed in
# docker/manifest.json, which `launcher run --mode docker` and `launcher shell` check images against.
#
#   docker/build.sh --build [--force]           build the dev image (docker/Dockerfile) as IMAGE:$USER and
#                                               record its image ID; --force builds without the cache
#   docker/build.sh --build --push [--force]    ... then push it and record the registry digest
#   docker/build.sh --pin triton|dev|release    record the ID and registry digest of the local image of
#                                               that manifest entry (e.g. after `docker pull` or `docker load`)
#
# Environment: MMW_DEV_IMAGE  repository for the dev image (default: the manifest's; set it to your
#                             registry, e.g. registry.example.com/team/mmw-dev, to --push)
#              BASE_IMAGE     base of the dev image (default: the manifest's triton image, by digest if pinned)
#              MMW_MANIFEST   manifest to update (default: docker/manifest.json)
#              DOCKER_HOST    the Docker daemon, as for the docker CLI
# Credentials come from `docker login`; this script reads and stores none.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MANIFEST=${MMW_MANIFEST:-$HERE/manifest.json}
PYTHON=${PYTHON:-python3}
DOCKER=${DOCKER:-docker}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
manifest() { "$PYTHON" "$HERE/update_manifest.py" --manifest "$MANIFEST" "$@"; }
die() { echo "build.sh: $*" >&2; exit 1; }

# The registry digest of a local image for repository $2 (empty when it was never pushed or pulled).
repo_digest() {
    "$DOCKER" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$1" \
        | { grep -F "$2@" || true; } | head -n 1 | sed 's/.*@//'
}

build=0 push=0 force=0 pin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --push) push=1 ;;
        --force) force=1 ;;
        --pin) [ $# -ge 2 ] || die "--pin needs triton, dev or release"; pin=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done
[ $build = 1 ] || [ $push = 1 ] || [ -n "$pin" ] || { usage >&2; die "nothing to do: pass --build, --push or --pin"; }
command -v "$DOCKER" >/dev/null || die "the docker CLI is not installed (apt-get install docker.io, or Docker's packages)"

if [ -n "$pin" ]; then
    ref=$(manifest ref "$pin")
    image=$(manifest get "$pin" image)
    id=$("$DOCKER" image inspect --format '{{.Id}}' "$ref" 2>/dev/null) \
        || die "image $ref is not on this Docker host; pull it (docker pull $ref) or load it (docker load -i FILE) first"
    digest=$(repo_digest "$ref" "$image")
    manifest set "$pin" --id "$id" --digest "${digest:-null}"
    echo "pinned $pin: $ref"
    echo "  id     $id"
    echo "  digest ${digest:-none (not from a registry; the id pins it)}"
fi

if [ $build = 1 ] || [ $push = 1 ]; then
    image=${MMW_DEV_IMAGE:-$(manifest get dev image)}
    tag=${USER:-$(id -un)}
    if [ $build = 1 ]; then
        base=${BASE_IMAGE:-$(manifest pull-ref triton)}
        args=(build --build-arg "BASE_IMAGE=$base" -t "$image:$tag" -f "$HERE/Dockerfile")
        [ $force = 1 ] && args+=(--no-cache)
        echo "building $image:$tag on $base"
        "$DOCKER" "${args[@]}" "$HERE"
        id=$("$DOCKER" image inspect --format '{{.Id}}' "$image:$tag")
        manifest set dev --image "$image" --tag "$tag" --id "$id" --digest null
        echo "built $image:$tag"
        echo "  id     $id  (recorded in $MANIFEST; try it: launcher shell --tag $tag)"
    fi
    if [ $push = 1 ]; then
        "$DOCKER" push "$image:$tag"
        digest=$(repo_digest "$image:$tag" "$image")
        [ -n "$digest" ] || die "pushed $image:$tag but Docker reports no registry digest for it"
        id=$("$DOCKER" image inspect --format '{{.Id}}' "$image:$tag")
        manifest set dev --image "$image" --tag "$tag" --id "$id" --digest "$digest"
        echo "pushed $image:$tag"
        echo "  digest $digest  (recorded in $MANIFEST; commit it so others run this image)"
    fi
fi
