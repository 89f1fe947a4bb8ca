#!/usr/bin/env bash
# Installs the Debian packages napari's Qt needs to draw under a virtual X server (Xvfb), only those missing.
# Used by `make test`/`make demo` and by .ci/run. Needs root (or sudo); prints what to install otherwise.
set -euo pipefail
packages=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxcb-shape0
  libxcb-randr0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 libdbus-1-3 libfontconfig1)
command -v dpkg >/dev/null 2>&1 || { echo "not a Debian/Ubuntu system: install Xvfb and Qt's xcb libraries yourself"; exit 0; }
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
((${#missing[@]})) || exit 0
if [[ $(id -u) -eq 0 ]]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
  echo "Missing system packages: ${missing[*]} — install them with: sudo apt-get install ${missing[*]}" >&2; exit 1; fi
echo "Installing system packages: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
