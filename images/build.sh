#!/usr/bin/env bash
# Build and push the satk8s step images with docker buildx, then record the pushed digests in
# images/digests.json, which the pipeline compiler reads so components pin image@digest.
#
#   REGISTRY=ghcr.io/acme images/build.sh            # both images
#   REGISTRY=ghcr.io/acme images/build.sh cpu        # one image
#
# Environment:
#   REGISTRY      (required) registry and path the images are pushed under
#   TAG           tag pushed alongside the digest (default: the satk8s version)
#   PLATFORM      buildx --platform (default: linux/amd64)
#   DIGESTS_FILE  where digests are recorded (default: images/digests.json)
#   PYTHON        interpreter with satk8s importable (default: .venv/bin/python, else python3)
#   BUILDX_ARGS   extra arguments for `docker buildx build` (e.g. --builder, --cache-to)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${REGISTRY:-}" ]]; then
  echo "error: set REGISTRY, e.g. make images REGISTRY=ghcr.io/<org>" >&2
  exit 2
fi
REGISTRY="${REGISTRY%/}"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# The first `version = "..."` in pyproject.toml is [project]'s.
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
if [[ -z "$VERSION" ]]; then echo "error: no version in pyproject.toml" >&2; exit 2; fi
TAG="${TAG:-$VERSION}"
PLATFORM="${PLATFORM:-linux/amd64}"
DIGESTS_FILE="${DIGESTS_FILE:-images/digests.json}"
GIT_SHA="$(git rev-parse --verify --quiet HEAD 2>/dev/null || echo unknown)"
IMAGES=("$@")
if [[ ${#IMAGES[@]} -eq 0 ]]; then IMAGES=(cpu gpu); fi

METADATA_DIR="$(mktemp -d)"
trap 'rm -rf "$METADATA_DIR"' EXIT

for name in "${IMAGES[@]}"; do
  dockerfile="images/Dockerfile.$name"
  if [[ ! -f "$dockerfile" ]]; then
    echo "error: no $dockerfile (images: cpu, gpu)" >&2
    exit 2
  fi
  repository="$REGISTRY/satk8s-$name"
  metadata="$METADATA_DIR/$name.json"
  echo "==> building $repository:$TAG ($PLATFORM) from $dockerfile"
  # shellcheck disable=SC2086  # BUILDX_ARGS is a list of words on purpose
  docker buildx build \
    --file "$dockerfile" \
    --platform "$PLATFORM" \
    --tag "$repository:$TAG" \
    --build-arg "SATK8S_VERSION=$VERSION" \
    --build-arg "GIT_SHA=$GIT_SHA" \
    --push \
    --metadata-file "$metadata" \
    ${BUILDX_ARGS:-} \
    .
  ref="$(PYTHONPATH="$ROOT" "$PYTHON" -m satk8s.images record \
    --metadata "$metadata" --name "$name" --repository "$repository" --out "$DIGESTS_FILE")"
  echo "==> pushed $ref"
done
echo "==> digests in $DIGESTS_FILE"
