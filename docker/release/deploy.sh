#!/usr/bin/env bash
# Build the release image (the seed's release/docker/deploy.sh): the NGC Triton image with this project's
# wheel and the model repository baked in. Records the image in docker/manifest.json ("release").
#
#   docker/release/deploy.sh --build --wheel    build the wheel, then the image IMAGE:VERSION
#   docker/release/deploy.sh --build            reuse the wheel already in dist/
#   docker/release/deploy.sh --push             push IMAGE:VERSION and record its registry digest
#
# Needs the ONNX networks in the repository first (`make engines`). Serve it with
# `launcher run --mode docker` and docker.image_kind: release in config/config.yaml.
# Environment: MMW_RELEASE_IMAGE  repository (default: the manifest's release image)
#              MMW_RELEASE_TAG    tag (default: the project version from pyproject.toml)
#              MMW_REPOSITORY     model repository to bake (default: model_repository; e.g. a
#                                 `python -m export repository --variant gpu --root DIR` tree)
#              BASE_IMAGE         base image (default: the manifest's triton image, by digest if pinned)
#              MMW_MANIFEST       manifest to update (default: docker/manifest.json)
# Credentials come from `docker login`; this script reads and stores none.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DOCKER_DIR=$(dirname "$HERE")
ROOT=$(dirname "$DOCKER_DIR")
MANIFEST=${MMW_MANIFEST:-$DOCKER_DIR/manifest.json}
PYTHON=${PYTHON:-python3}
DOCKER=${DOCKER:-docker}
REPOSITORY=${MMW_REPOSITORY:-$ROOT/model_repository}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
manifest() { "$PYTHON" "$DOCKER_DIR/update_manifest.py" --manifest "$MANIFEST" "$@"; }
die() { echo "deploy.sh: $*" >&2; exit 1; }

build=0 wheel=0 push=0
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --wheel) wheel=1 ;;
        --push) push=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done
[ $build = 1 ] || [ $wheel = 1 ] || [ $push = 1 ] || { usage >&2; die "nothing to do: pass --build, --wheel or --push"; }

version=$("$PYTHON" -c 'import re,sys; print(re.search(r"^version\s*=\s*\"([^\"]+)\"", open(sys.argv[1]).read(), re.M).group(1))' "$ROOT/pyproject.toml")
image=${MMW_RELEASE_IMAGE:-$(manifest get release image)}
tag=${MMW_RELEASE_TAG:-$version}

if [ $wheel = 1 ]; then
    # Build from a copy of the checkout's files (tracked and new, not ignored) so no build/ is left behind.
    src=$(mktemp -d "${TMPDIR:-/tmp}/mmw-wheel.XXXXXX")
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c \
            '[ -f "$1" ] && install -D -m 0644 "$1" "$2/$1" || true' _ {} "$src")
    else
        cp -a "$ROOT/." "$src/"
    fi
    rm -f "$ROOT"/dist/multi_model_workflows-*.whl
    "$PYTHON" -m pip wheel --no-deps --disable-pip-version-check -q -w "$ROOT/dist" "$src"
    rm -rf "$src"
    echo "wheel: $(ls "$ROOT"/dist/multi_model_workflows-*.whl)"
fi

if [ $build = 1 ]; then
    shopt -s nullglob
    wheels=("$ROOT"/dist/multi_model_workflows-"$version"-*.whl)
    [ ${#wheels[@]} -eq 1 ] || die "expected one wheel of version $version in $ROOT/dist, found ${#wheels[@]}; pass --wheel"
    for net in detector labeller; do
        onnx=$(find "$REPOSITORY/$net" -name 'model.onnx' -o -name 'model.plan' | head -n 1)
        [ -n "$onnx" ] || die "no model.onnx/model.plan under $REPOSITORY/$net; run \`make engines\` first"
    done
    stage=$(mktemp -d "${TMPDIR:-/tmp}/mmw-release.XXXXXX")
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/wheels"
    cp "${wheels[0]}" "$stage/wheels/"
    cp "$DOCKER_DIR/requirements-triton.txt" "$HERE/Dockerfile" "$stage/"
    # The repository without caches or editor leftovers.
    # (OpenVINO's IR, *.xml/*.bin, goes too; its compiled-model cache is keyed by path, so it stays behind.)
    (cd "$REPOSITORY" && find . -type f \( -name 'config.pbtxt' -o -name '*.py' -o -name '*.onnx' -o -name '*.plan' \
        -o -name '*.xml' -o -name '*.bin' -o -name '*.txt' -o -name '*.json' \) -not -path '*/__pycache__/*' \
        -not -path '*/openvino_cache/*' -print0 \
        | xargs -0 -I{} install -D -m 0644 {} "$stage/model_repository/{}")
    base=${BASE_IMAGE:-$(manifest pull-ref triton)}
    echo "building $image:$tag on $base (wheel $(basename "${wheels[0]}"), repository $REPOSITORY)"
    "$DOCKER" build --build-arg "BASE_IMAGE=$base" -t "$image:$tag" "$stage"
    id=$("$DOCKER" image inspect --format '{{.Id}}' "$image:$tag")
    manifest set release --image "$image" --tag "$tag" --id "$id" --digest null
    echo "built $image:$tag"
    echo "  id     $id  (recorded in $MANIFEST)"
fi

if [ $push = 1 ]; then
    "$DOCKER" push "$image:$tag"
    digest=$("$DOCKER" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image:$tag" \
        | { grep -F "$image@" || true; } | head -n 1 | sed 's/.*@//')
    [ -n "$digest" ] || die "pushed $image:$tag but Docker reports no registry digest for it"
    manifest set release --digest "$digest"
    echo "pushed $image:$tag"
    echo "  digest $digest  (recorded in $MANIFEST)"
fi
