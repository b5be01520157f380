#!/usr/bin/env bash
# Debian packages some tests use: espeak-ng (synthesised speech for transcription tests),
# tesseract-ocr (the ocr extractor), shellcheck (e2e script lint). Installs what is missing when
# run as root with apt-get; otherwise says which tests will skip and why.
set -euo pipefail

declare -A want=([espeak-ng]=espeak-ng [tesseract]=tesseract-ocr [shellcheck]=shellcheck)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: missing ${missing[*]} (install them with your package manager); the tests that need them skip" >&2
fi
