#!/bin/sh
# Build the release binaries and run every benchmark (celld beside LXD when
# LXD is running on this machine: see DESIGN.md for starting it).
set -eu
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
for b in bench/*.py; do
	case "$b" in */common.py) continue ;; esac
	echo "== $b"
	/usr/bin/python3 "$b"
done
