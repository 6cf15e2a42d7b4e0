#!/usr/bin/env bash
# Builds KenLM's lmplz and build_binary (not shipped by PyPI's kenlm, nor by Debian) from the pinned
# kenlm source release on PyPI, into $KENLM_PREFIX/bin (default ~/.cache/fairseq-wae/kenlm/bin).
# Idempotent: does nothing when both binaries are there. scripts/train_lm.py looks there, then on PATH.
set -euo pipefail
KENLM_VERSION=0.3.0
prefix=${KENLM_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/fairseq-wae/kenlm}
if [ -x "$prefix/bin/lmplz" ] && [ -x "$prefix/bin/build_binary" ]; then
    echo "KenLM binaries already in $prefix/bin"
    exit 0
fi

missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
for header in boost/program_options.hpp boost/thread.hpp zlib.h bzlib.h lzma.h; do
    [ -e "/usr/include/$header" ] || missing+=("$header")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_kenlm.sh: missing build dependencies: ${missing[*]}" >&2
    echo "On Debian/Ubuntu: apt-get install build-essential cmake libboost-program-options-dev" \
         "libboost-system-dev libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip download --quiet --no-deps --no-binary kenlm "kenlm==$KENLM_VERSION" -d "$work"
tar -xzf "$work"/kenlm-*.tar.gz -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'kenlm-*' | head -n 1)
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release > "$work/cmake.log" 2>&1 \
    || { tail -n 30 "$work/cmake.log" >&2; exit 1; }
cmake --build "$src/build" -j"$(nproc)" --target lmplz build_binary > "$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; exit 1; }
mkdir -p "$prefix/bin"
cp "$src/build/bin/lmplz" "$src/build/bin/build_binary" "$prefix/bin/"
echo "KenLM $KENLM_VERSION: lmplz and build_binary installed in $prefix/bin"
