#!/usr/bin/env bash
# Stand-ins for the Dockerfile's two base images, made from Debian packages where no image
# registry can be reached (docs/deployment.md, Building without an image registry):
#
#   builder  BUILDER_IMAGE: Debian bookworm (debootstrap, minbase) with gcc and libc6-dev, this
#            machine's Rust toolchain (`rustc --print sysroot`) in /usr/local/rust, this
#            machine's CA bundle, CARGO_HOME=/usr/local/cargo; with --crates, also the crates
#            of Cargo.lock (fetched on this machine) and CARGO_NET_OFFLINE=true, so the image
#            build needs no network at all.
#   runtime  RUNTIME_IMAGE: what gcr.io/distroless/cc-debian12:nonroot holds, taken from the
#            same debootstrap tree: glibc, libgcc, libgomp, libstdc++, CA certificates, tzdata,
#            netbase, os-release, users root, nobody and nonroot (65532), no shell.
#
#   scripts/container/stand-in-bases.sh [--crates] BUILDER_TAG RUNTIME_TAG
#
# Needs root, debootstrap and podman (or PODMAN="podman --root ..."), and Debian's package
# mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian). Prints the seconds each part
# took. Both tags are made anew; nothing else is kept (the work directory is removed).
set -euo pipefail
cd "$(dirname "$0")/../.."

crates=0
if [ "${1:-}" = "--crates" ]; then
  crates=1
  shift
fi
if [ $# -ne 2 ]; then
  echo "usage: $0 [--crates] BUILDER_TAG RUNTIME_TAG" >&2
  exit 2
fi
builder_tag=$1
runtime_tag=$2
read -r -a podman <<<"${PODMAN:-podman}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm # the Dockerfile's bases are bookworm's (rust:*-slim-bookworm, cc-debian12)

work="$(mktemp -d "${TMPDIR:-/var/tmp}/titanic-stand-in.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/debootstrap"

start=$SECONDS
echo "debootstrap $suite (minbase, gcc, libc6-dev, ca-certificates, tzdata, netbase) from $mirror"
if ! debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,tzdata,netbase \
  "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  echo "FAIL debootstrap (log above)" >&2
  exit 1
fi
echo "debootstrap: $((SECONDS - start)) s"

# --- runtime -------------------------------------------------------------------------------
step=$SECONDS
rt="$work/runtime"
mkdir -p "$rt/usr/bin" "$rt/usr/lib" "$rt/usr/lib64" "$rt/usr/sbin"
# Debian bookworm is merged-/usr, as distroless is.
ln -s usr/bin "$rt/bin"
ln -s usr/lib "$rt/lib"
ln -s usr/lib64 "$rt/lib64"
ln -s usr/sbin "$rt/sbin"
# Every file of these packages, as dpkg installed it; a directory is created (through the
# merged-/usr links), a file or link copied.
for pkg in libc6 libgcc-s1 libgomp1 'libstdc++6' netbase tzdata; do
  list="$root/var/lib/dpkg/info/$pkg:amd64.list"
  [ -f "$list" ] || list="$root/var/lib/dpkg/info/$pkg.list"
  cat "$list"
done | sort -u | while IFS= read -r path; do
  [ "$path" = "/." ] && continue
  if [ -d "$root$path" ]; then
    mkdir -p "$rt$path"
  elif [ -e "$root$path" ] || [ -L "$root$path" ]; then
    cp -a "$root$path" "$rt$path"
  fi
done
mkdir -p "$rt/etc/ssl/certs" "$rt/home/nonroot" "$rt/root" "$rt/tmp" "$rt/var/lib" "$rt/usr/share"
cp "$root/etc/ssl/certs/ca-certificates.crt" "$rt/etc/ssl/certs/ca-certificates.crt"
cp -a "$root/usr/lib/os-release" "$rt/usr/lib/os-release"
cp -a "$root/etc/os-release" "$rt/etc/os-release"
cp -a "$root/etc/debian_version" "$rt/etc/debian_version"
cp -a "$root/etc/localtime" "$rt/etc/localtime" 2>/dev/null || ln -s /usr/share/zoneinfo/Etc/UTC "$rt/etc/localtime"
cat >"$rt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rt/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
printf 'hosts: files dns\nnetworks: files\n' >"$rt/etc/nsswitch.conf"
chmod 0700 "$rt/root" "$rt/home/nonroot"
chown 65532:65532 "$rt/home/nonroot"
chmod 1777 "$rt/tmp"
for shell in bash dash sh; do
  if [ -e "$rt/usr/bin/$shell" ]; then
    echo "FAIL the runtime stand-in has a shell ($shell)" >&2
    exit 1
  fi
done
tar -C "$rt" --numeric-owner -cf - . | "${podman[@]}" import --quiet \
  --change 'USER 65532:65532' \
  --change 'WORKDIR /home/nonroot' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --message 'stand-in for gcr.io/distroless/cc-debian12:nonroot (scripts/container/stand-in-bases.sh)' \
  - "$runtime_tag" >/dev/null
echo "runtime $runtime_tag: $(du -sh "$rt" | cut -f1), $((SECONDS - step)) s"

# --- builder -------------------------------------------------------------------------------
step=$SECONDS
sysroot="$(rustc --print sysroot)"
rust_version="$(rustc --version | awk '{print $2}')"
dockerfile_rust="$(sed -n 's/^ARG BUILDER_IMAGE=.*rust:\([0-9.]*\).*/\1/p' Dockerfile)"
case "$rust_version" in
"$dockerfile_rust" | "$dockerfile_rust".*) ;;
*) echo "note: this machine's Rust is $rust_version; the Dockerfile's default builder has $dockerfile_rust" ;;
esac
mkdir -p "$root/usr/local/rust/bin" "$root/usr/local/cargo/bin"
cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$sysroot/bin/rustdoc" "$root/usr/local/rust/bin/"
cp -a "$sysroot/lib" "$root/usr/local/rust/"
[ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$root/usr/local/rust/"
# This machine's CA bundle (it may trust a proxy in front of crates.io that Debian's does not).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
offline=false
if [ "$crates" = 1 ]; then
  # The crates of Cargo.lock for every platform, as `cargo fetch` leaves them in CARGO_HOME:
  # the compressed crates (those of Cargo.lock only) and the registry's index entries,
  # nothing extracted.
  cargo fetch --locked --quiet
  cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  registry="$root/usr/local/cargo/registry"
  mkdir -p "$registry/cache"
  cp -a "$cargo_home/registry/index" "$registry/"
  count=0
  while read -r name version; do
    for cache in "$cargo_home"/registry/cache/*/; do
      if [ -f "$cache$name-$version.crate" ]; then
        mkdir -p "$registry/cache/$(basename "$cache")"
        cp "$cache$name-$version.crate" "$registry/cache/$(basename "$cache")/"
        count=$((count + 1))
      fi
    done
  done < <(awk '/^\[\[package\]\]/ { name = ""; version = "" }
               /^name = / { name = $3 } /^version = / { version = $3 }
               /^source = "registry\+/ { gsub(/"/, "", name); gsub(/"/, "", version); print name, version }' Cargo.lock)
  echo "crates of Cargo.lock copied into the builder: $count ($(du -sh "$registry" | cut -f1) with the index)"
  offline=true
fi
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
tar -C "$root" --numeric-owner -cf - . | "${podman[@]}" import --quiet \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change "ENV CARGO_NET_OFFLINE=$offline" \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'WORKDIR /' \
  --message "stand-in for docker.io/library/rust:slim-bookworm with Rust $rust_version (scripts/container/stand-in-bases.sh)" \
  - "$builder_tag" >/dev/null
echo "builder $builder_tag: Rust $rust_version, crates included: $offline, $(du -sh "$root" | cut -f1), $((SECONDS - step)) s"
echo "stand-in bases: $((SECONDS - start)) s"
