#!/usr/bin/env bash
# Installs the Debian packages duet needs, only those that are missing.
set -euo pipefail
pkgs=(cmake make gcc clang pkg-config libcriterion-dev libpcre2-dev libcjson-dev
      libmicrohttpd-dev libcurl4-openssl-dev gnuplot-nox jq python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
