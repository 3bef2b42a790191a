#!/usr/bin/env bash
# Installs everything needed to build, test and demo slrctl on Debian 12.
# Noninteractive and idempotent: `apt-get update`, then install (a no-op for
# packages already there).  SLR_DEPS_OFFLINE=1 skips apt when nothing is missing.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config git ca-certificates
  libmnl-dev libnftnl-dev libssl-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  # the SLR's kernel fast path: a tc BPF program built with clang, loaded with libbpf
  clang libbpf-dev
  # operator policies: F and G as sandboxed Lua 5.4 functions
  liblua5.4-dev
  # tests, benchmarks
  libgtest-dev libbenchmark-dev libtins-dev
  # runtime / end-to-end tests / demo
  nftables iproute2 procps kmod util-linux coreutils
  curl python3 tcpdump openssl haproxy iperf3
  # packages: cpack's DEB shlibdeps needs file, RPM needs rpmbuild
  file rpm
  # man page rendering checks (`man -l`)
  man-db groff-base
)

SUDO=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo)" >&2; exit 1; }
  SUDO=(sudo)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$st" == installed ]] || missing+=("$p")
done

# Always refresh the package lists and install (a no-op for what is there),
# so a fresh machine and a long-lived one end up the same.  SLR_DEPS_OFFLINE=1
# skips apt when nothing is missing (working without a mirror).
if [[ ${#missing[@]} == 0 && "${SLR_DEPS_OFFLINE:-0}" == 1 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing: ${missing[*]:-${PACKAGES[*]}}"
"${SUDO[@]}" apt-get update -qq </dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${PACKAGES[@]}" </dev/null >/dev/null
echo "install-deps: done"
