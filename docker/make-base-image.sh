#!/usr/bin/env bash
# Make the base image of the CPU image without any Docker registry: a Debian bookworm root file
# system made by debootstrap (minbase, with python3 3.11, python3-venv and CA certificates,
# security updates applied), imported into the local Docker engine.
# Usage (as root, with debootstrap and a running Docker engine):
#   bash docker/make-base-image.sh [IMAGE]          (default IMAGE: avsearch-base:bookworm)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              DEBIAN_SECURITY (default http://deb.debian.org/debian-security),
#              EXTRA_CA_CERTS: PEM files (separated by spaces) of certificate authorities the
#                image should trust besides Debian's, e.g. that of a TLS-intercepting proxy
#                between the build and PyPI (default: none).
set -euo pipefail
IMAGE=${1:-avsearch-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
EXTRA_CA_CERTS=${EXTRA_CA_CERTS:-}

die() { echo "make-base-image: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
docker info >/dev/null 2>&1 || die "no Docker engine reachable: install docker.io and start dockerd"
for pem in $EXTRA_CA_CERTS; do
  grep -q 'BEGIN CERTIFICATE' "$pem" 2>/dev/null || die "EXTRA_CA_CERTS: $pem is not a PEM certificate"
done

root=$(mktemp -d /tmp/avsearch-rootfs.XXXXXX)
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

echo "make-base-image: debootstrap bookworm into $root (a few minutes)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$MIRROR" >&2

cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
SOURCES
n=0
for pem in $EXTRA_CA_CERTS; do
  n=$((n + 1))
  cp "$pem" "$root/usr/local/share/ca-certificates/extra-$n.crt"
done
mount -t proc proc "$root/proc"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -ec \
  'update-ca-certificates >/dev/null && apt-get update -qq && apt-get upgrade -y -qq && apt-get clean'
umount "$root/proc"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
  "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/doc" -type f ! -name copyright -delete  # keep the licences
python_version=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

echo "make-base-image: importing it as $IMAGE (Python $python_version)" >&2
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "Debian bookworm minbase with python3 $python_version (docker/make-base-image.sh)" \
  - "$IMAGE" >/dev/null
docker image ls "$IMAGE" >&2
