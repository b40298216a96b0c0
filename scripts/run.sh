#!/bin/sh
# Install, build and start celld in the foreground on its embedded defaults
# (CELL_DIR=/var/lib/celld: dir storage, SQLite, unix socket).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/celld --verbose "$@"
