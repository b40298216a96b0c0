#!/bin/sh
# Debian 12 packages cell needs to build and run (and, with "test", to test).
set -eu
export DEBIAN_FRONTEND=noninteractive
BUILD="build-essential cmake pkg-config libwebsockets-dev libwebsockets-evlib-uv libuv1-dev
 libjansson-dev libsqlite3-dev libyaml-dev libarchive-dev libssl-dev lxc-dev
 libacl1-dev libzstd-dev liblz4-dev libbz2-dev liblzma-dev zlib1g-dev nettle-dev"
RUN="lxc uidmap rsync btrfs-progs squashfs-tools iptables dnsmasq-base curl"
TEST="libcmocka-dev python3 python3-pytest python3-websocket busybox-static
 lxd-client python3-pylxd xz-utils zstd bzip2 tmux"
PKGS="$BUILD $RUN"
[ "${1:-}" = test ] && PKGS="$PKGS $TEST"
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PKGS
