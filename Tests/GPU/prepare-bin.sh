#!/usr/bin/env bash
# Builds the binary the device check carries to a GPU machine that has no Swift: a release build with the Swift
# runtime linked statically, in .bin/hprune, plus the few shared libraries it still needs that a bare CUDA machine
# may lack (libyaml, libsqlite3, …) in .bin/lib/ — everything except glibc's own libraries. The binary is stripped
# and gzipped (.bin/hprune.gz, ~27 MB; 116 MB unstripped) to fit the device machine's 64 MiB carry limit.
# Usage: Tests/GPU/prepare-bin.sh   (then carry .bin/ and run Tests/GPU/device-check.sh there)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
scratch="${SCRATCH:-.build-static}"
swift build -c release --static-swift-stdlib --product hprune --scratch-path "$scratch"
mkdir -p .bin/lib
rm -f .bin/hprune
cp "$scratch/release/hprune" .bin/hprune.tmp && strip .bin/hprune.tmp
gzip -9 -c .bin/hprune.tmp > .bin/hprune.gz.tmp && mv .bin/hprune.gz.tmp .bin/hprune.gz
ldd .bin/hprune.tmp | awk '/=> \// { print $3 }' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
        *) cp -L "$lib" .bin/lib/ ;;
    esac
done
rm -f .bin/hprune.tmp
ls -la .bin .bin/lib
echo "carry .bin/ (and Tests/GPU/device-check.sh); the check sets LD_LIBRARY_PATH=.bin/lib"
