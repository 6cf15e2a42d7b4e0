#!/usr/bin/env bash
# Installs everything on a fresh Debian/Ubuntu machine with Python 3.10-3.12: KenLM's build
# dependencies (apt, when missing and run as root), the CPU build of torch first (so nothing pulls a
# CUDA build), this package with its test extras (editable), and KenLM's lmplz/build_binary.
set -euo pipefail
cd "$(dirname "$0")/.."
apt_packages=(build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
              libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
if ! dpkg -s "${apt_packages[@]}" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" > /dev/null
    else
        echo "setup.sh: install KenLM's build dependencies first: sudo apt-get install ${apt_packages[*]}" >&2
        exit 1
    fi
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[test]'
bash scripts/install_kenlm.sh
