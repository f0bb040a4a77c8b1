#!/usr/bin/env bash
# Fills spec/ (git-ignored) with the data some tests read from the Serverless Workflow
# specification at its release tag v1.0.3: the JSON schema, the examples and the
# conformance kit. It is not our text, so it is fetched, never committed.
#
#   scripts/fetch-spec.sh            # from GitHub's archive of the tag
#   SKEIN_SPEC_URL=URL scripts/fetch-spec.sh   # from a mirror (any URL curl reads,
#                                              # file:// included) of the same archive
#
# Tests look for the data in $SKEIN_SPEC_DIR, then spec/, then
# ../shared/spec/serverless-workflow-1.0.3; without it they say they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=v1.0.3
url="${SKEIN_SPEC_URL:-https://github.com/serverlessworkflow/specification/archive/refs/tags/${tag}.tar.gz}"
dest=spec

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "fetch-spec: downloading ${url}" >&2
if ! curl --fail --location --silent --show-error --output "${work}/spec.tar.gz" "${url}"; then
  echo "fetch-spec: could not download ${url}; set SKEIN_SPEC_URL to a mirror of the archive," >&2
  echo "fetch-spec: or SKEIN_SPEC_DIR to a copy of the specification repository at ${tag}" >&2
  exit 1
fi
mkdir -p "${work}/x"
tar -xzf "${work}/spec.tar.gz" -C "${work}/x"
# GitHub's archive holds one top folder (specification-1.0.3/); a mirror may not.
root="$(dirname "$(find "${work}/x" -path '*/schema/workflow.yaml' -print -quit)")/.."
if [ ! -f "${root}/schema/workflow.yaml" ] || [ ! -d "${root}/ctk/features" ] || [ ! -d "${root}/examples" ]; then
  echo "fetch-spec: the archive has no schema/workflow.yaml, ctk/features and examples/" >&2
  exit 1
fi

rm -rf "${dest}.new"
mkdir -p "${dest}.new/schema" "${dest}.new/ctk"
cp "${root}/schema/workflow.yaml" "${dest}.new/schema/"
cp -r "${root}/examples" "${dest}.new/examples"
cp -r "${root}/ctk/features" "${dest}.new/ctk/features"
for f in LICENSE dsl.md dsl-reference.md; do
  [ -f "${root}/${f}" ] && cp "${root}/${f}" "${dest}.new/"
done
printf 'Serverless Workflow specification, tag %s, from %s\n' "${tag}" "${url}" > "${dest}.new/SOURCE"
rm -rf "${dest}"
mv "${dest}.new" "${dest}"
echo "fetch-spec: ${dest}/ holds $(ls "${dest}/examples" | wc -l) examples and $(ls "${dest}/ctk/features" | wc -l) feature files" >&2
