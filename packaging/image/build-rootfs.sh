#!/bin/bash
# Build build/image/calyx-rootfs.tar: Debian 12 from Debian's packages (python3, python3-nftables,
# nftables, exabgp, iproute2) with Calyx installed from its wheel into /opt/calyx, a venv that
# sees the system's site-packages (libnftables' bindings exist only as Debian's package).
# Calyx's Python dependencies come as wheels built or downloaded here with the project's pip,
# for the same Python (3.11) the image has; libstdc++6 is what the grpcio wheel links against.
# The host's calyx-cni and calyx-ipam, the static C client of calyx-cni-server (`make cni-client`),
# go to /opt/calyx/cni-client, where calyx-install-cni copies them from.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/build/image}
python=${PYTHON:-$repo/.venv/bin/python}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
client=$repo/build/cni-client
for plugin in calyx-cni calyx-ipam; do
  [ -x "$client/$plugin" ] || { echo "$client/$plugin is missing: run make cni-client" >&2; exit 1; }
done

rm -rf "$out/wheels"
mkdir -p "$out/wheels"
"$python" -m pip wheel -q --wheel-dir "$out/wheels" "$repo"

mmdebstrap --variant=essential --quiet \
  --include=python3,python3-venv,python3-nftables,nftables,exabgp,iproute2,ca-certificates,libstdc++6 \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="copy-in $out/wheels /tmp" \
  --customize-hook='chroot "$1" python3 -m venv --system-site-packages /opt/calyx' \
  --customize-hook='chroot "$1" /opt/calyx/bin/pip install -q --no-index --no-compile --find-links /tmp/wheels calyx' \
  --customize-hook='chroot "$1" /opt/calyx/bin/pip uninstall -q -y pip setuptools' \
  --customize-hook="copy-in $client /opt/calyx" \
  --customize-hook='rm -rf "$1"/tmp/wheels "$1"/tmp/pip "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  bookworm "$out/calyx-rootfs.tar" "$mirror"
cp "$here/Containerfile" "$out/Containerfile"
