#!/usr/bin/env bash
# Validates the deployment files with real tools: docker-compose's own parser, kustomize rendering with
# Kubernetes OpenAPI schema validation (kubernetes-models, KEDA and prometheus-operator schemas; ajv for
# InferencePool), and dockerfilelint. Installs what is missing (Debian packages, npm).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: $* missing and not root to install it" >&2; exit 1
  fi
}
command -v docker-compose >/dev/null || apt_install docker-compose
command -v kubectl >/dev/null || apt_install kubernetes-client
command -v npm >/dev/null || apt_install nodejs npm
(cd deploy/validate && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

echo "== docker-compose config"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile gpu config -q
echo "ok   docker-compose.yml (default and gpu profiles)"

for overlay in cpu cuda; do
  echo "== kustomize overlays/$overlay"
  kubectl kustomize "deploy/k8s/overlays/$overlay" | node deploy/validate/validate.mjs
done

echo "== the validator rejects a broken manifest"
if kubectl kustomize deploy/k8s/overlays/cpu | sed 's/^  replicas: 1$/  replicas: two/' | node deploy/validate/validate.mjs >/dev/null; then
  echo "error: a Deployment with replicas: two passed validation" >&2; exit 1
fi
echo "ok   replicas: two is rejected"

echo "== dockerfilelint"
# dockerfilelint 1.8 reads '--start-period' as '--start' (its option regex is --\w+) and flags valid
# HEALTHCHECKs; lint copies without that one option so every other rule still applies.
lint_dir=$(mktemp -d)
for f in docker/Dockerfile.cpu docker/Dockerfile.cuda; do
  sed 's/ --start-period=[0-9]*s//' "$f" > "$lint_dir/$(basename "$f")"
done
deploy/validate/node_modules/.bin/dockerfilelint "$lint_dir"/Dockerfile.*
echo "deploy validation passed"
