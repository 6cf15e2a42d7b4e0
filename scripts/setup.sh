#!/usr/bin/env bash
# Installs everything on a fresh Debian/Ubuntu machine with Python 3.10-3.12: KenLM's build
# dependencies and the headless browser the explore page is tested in (chromium, chromium-driver; apt,
# when missing and run as root), the CPU build of torch first (so nothing pulls a CUDA build), this
# package with its test, explore and prior extras (editable), and KenLM's lmplz/build_binary.
set -euo pipefail
cd "$(dirname "$0")/.."
apt_packages=(build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
              libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
# the browser tests/test_explore.py drives: Debian's packages (Ubuntu's chromium is a snap, which a
# container cannot run: there put a chromium and its chromedriver at /usr/bin by hand)
if [ "$(. /etc/os-release 2>/dev/null && echo "${ID:-}")" = debian ]; then
    apt_packages+=(chromium chromium-driver)
elif [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "setup.sh: no /usr/bin/chromium and /usr/bin/chromedriver: tests/test_explore.py will fail until they are installed" >&2
fi
if ! dpkg -s "${apt_packages[@]}" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" > /dev/null
    else
        echo "setup.sh: install KenLM's build dependencies and the browser first: sudo apt-get install ${apt_packages[*]}" >&2
        exit 1
    fi
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[test,explore,prior]'
bash scripts/install_kenlm.sh
