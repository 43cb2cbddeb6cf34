#!/usr/bin/env bash
# Builds the project's one OCI image (pkg-operator, pkg-sidecar, pkg-migrate, pkg) with no
# container daemon and no registry: dist/pkg-operator-VERSION.oci.tar (an OCI layout in a
# tar, what `skopeo copy oci-archive:...` reads) and its SBOM dist/pkg-operator-VERSION.cdx.json.
#
# The same image as the Containerfile, built from Debian's packages and the tree's wheel:
#   1. base: mmdebstrap --variant=minbase with python3, python3-venv, ca-certificates;
#      cached in ~/.cache/pkg-operator/image keyed by its inputs (a warm build skips it);
#   2. wheels: the project's wheel from this tree and its dependencies' wheels (pip wheel);
#   3. /opt/pkg: a venv made inside the base (chroot, no network) from those wheels only;
#   4. trimmed: no pip, no wheels, docs, apt lists or caches; user pkg (10001); every file's
#      time set to SOURCE_DATE_EPOCH (default: the last commit's time), byte code as checked
#      hashes, so two builds of one commit give the same layer;
#   5. one layer, the config (user 10001, PATH, labels) and the manifest's annotations by umoci.
# Needs root (chroot, file ownership) and mmdebstrap, umoci (Debian packages): `make image`
# installs them with apt-get when they are missing.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
NAME=pkg-operator
VERSION=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
REVISION=$(git -C "$REPO" rev-parse HEAD)
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
CACHE=${PKG_IMAGE_CACHE:-$HOME/.cache/pkg-operator/image}
DIST=${DIST:-$REPO/dist}
ARCHIVE=$DIST/$NAME-$VERSION.oci.tar
SBOM=$DIST/$NAME-$VERSION.cdx.json

say() { printf 'make image: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root: the image's files are owned by root and the venv is made in a chroot"
for tool in mmdebstrap umoci tar; do
    command -v "$tool" >/dev/null || fail "$tool is missing: apt-get install mmdebstrap umoci"
done

mkdir -p "$CACHE" "$DIST"
export PIP_CACHE=$CACHE/pip
# The build machine's CA bundle (it may hold a proxy's CA) for pip inside the chroot only.
export BUILD_CA=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
work=$(mktemp -d "${TMPDIR:-/tmp}/pkg-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# ---- 1. the base, cached by its inputs (suite, packages, variant, this step's version)
base_key=$(printf '%s\n' "v1" "$SUITE" "$PACKAGES" minbase | sha256sum | cut -c1-16)
base=$CACHE/base-$SUITE-$base_key.tar
if [ ! -s "$base" ]; then
    say "building the Debian base ($SUITE, minbase, $PACKAGES) into $base"
    mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        "$SUITE" "$CACHE/partial-$base_key.tar"
    mv "$CACHE/partial-$base_key.tar" "$base"
else
    say "Debian base from the cache: $base"
fi

# ---- 2. wheels: the project from this tree, its dependencies for the base's Python
mkdir "$rootfs"
tar -xf "$base" -C "$rootfs" --numeric-owner
pyver=$(chroot "$rootfs" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
say "building the project's wheel (its dependencies: from PyPI for Python $pyver, pip's cache makes it fast)"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$REPO"
# The build's own leftovers must not reach the wheel of a later build of another tree.
rm -rf "$REPO/build"

# ---- 3. the venv, made inside the base, from those wheels only
mkdir -p "$rootfs/tmp/wheels"
cp "$work/wheels/"*.whl "$rootfs/tmp/wheels/"
say "installing $NAME $VERSION into /opt/pkg inside the base"
# The dependencies are resolved by the base's own pip and Python (their markers differ from
# this machine's: redis needs async-timeout before Python 3.11.3), binary wheels only, so no
# compiler is ever needed. (The pip cache mounted below stays empty: not yet found why.)
mkdir -p "$CACHE/pip" "$rootfs/tmp/pip-cache"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf.build"
unshare --mount --pid --fork --mount-proc="$rootfs/proc" /bin/sh -ec '
    rootfs=$1; shift
    mount --bind "$PIP_CACHE" "$rootfs/tmp/pip-cache"
    : >"$rootfs/tmp/build-ca.crt"
    mount --bind "$BUILD_CA" "$rootfs/tmp/build-ca.crt"
    mount --bind "$rootfs/etc/resolv.conf.build" "$rootfs/etc/resolv.conf" 2>/dev/null ||
        cp "$rootfs/etc/resolv.conf.build" "$rootfs/etc/resolv.conf"
    exec chroot "$rootfs" "$@"
' build "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/tmp/build-ca.crt PIP_DEFAULT_TIMEOUT=180 ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
    ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${https_proxy:+https_proxy=$https_proxy} /bin/sh -ec '
        python3 -m venv /opt/pkg
        /opt/pkg/bin/pip install --quiet --only-binary=:all: --cache-dir /tmp/pip-cache \
            /tmp/wheels/pkg_operator-*.whl
        /opt/pkg/bin/pip uninstall --quiet --yes pip setuptools
        # Size: kubernetes 37 ships an asyncio copy of its whole client (68 MB with byte
        # code) that nothing here imports (kopf talks to the API with aiohttp, kube.py uses
        # the synchronous client); perl came with usrmerge and runs nothing at run time;
        # the stdlib parts below serve only interactive use or building venvs.
        rm -rf /opt/pkg/lib/python3.11/site-packages/kubernetes/aio
        DEBIAN_FRONTEND=noninteractive dpkg --purge --force-depends \
            libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl \
            perl libperl5.36 perl-modules-5.36 2>/dev/null
        cd /usr/lib/python3.11 && rm -rf lib2to3 pydoc_data ensurepip idlelib tkinter turtledemo
        # Debian compiled its byte code at install time against files whose times change
        # below; compile it again as checked hashes (SOURCE_DATE_EPOCH is set), which
        # depend on the contents only.
        find /usr/lib/python3 /usr/lib/python3.11 -name __pycache__ -prune -exec rm -rf {} +
        python3 -m compileall -q -j 0 /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null
        /opt/pkg/bin/pkg --help >/dev/null
    '

# ---- 4. trim, the user, times
# The runtime writes these (Kubernetes mounts its own); the build machine's must not stay.
rm -f "$rootfs/etc/resolv.conf.build" "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
rm -rf "$rootfs/tmp/wheels" "$rootfs/tmp/pip-cache" "$rootfs/tmp/build-ca.crt" "$rootfs/usr/share/python-wheels" \
    "$rootfs"/var/cache/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/dev/* "$rootfs"/proc/* "$rootfs/etc/machine-id"
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
printf 'pkg:x:10001:10001:PKG operator:/nonexistent:/usr/sbin/nologin\n' >>"$rootfs/etc/passwd"
printf 'pkg:x:10001:\n' >>"$rootfs/etc/group"
printf 'pkg:!:%d::::::\n' "$((SOURCE_DATE_EPOCH / 86400))" >>"$rootfs/etc/shadow"
# Debian's tools wrote their times: the shadow file's "last change" and dpkg's logs.
sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$((SOURCE_DATE_EPOCH / 86400)):/" "$rootfs/etc/shadow"
chmod 1777 "$rootfs/tmp"
for leftover in "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/cache/debconf/*-old; do
    rm -f "$leftover"
done

say "writing the SBOM of the venv's Python packages: $SBOM"
"$PY" "$REPO/tools/image_sbom.py" "$rootfs/opt/pkg" --name "$NAME" --version "$VERSION" \
    --created "$CREATED" >"$SBOM.partial"
mv "$SBOM.partial" "$SBOM"

find "$rootfs" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
layer=$work/layer.tar
# Sorted names, numeric owners, no access/change times: the same tree gives the same bytes.
(cd "$rootfs" && LC_ALL=C ls -A | LC_ALL=C tar --create --file "$layer" --sort=name \
    --numeric-owner --format=posix --mtime="@$SOURCE_DATE_EPOCH" \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime --files-from=-)

# ---- 5. the OCI image
oci=$work/oci
tag=$VERSION
umoci init --layout "$oci"
umoci new --image "$oci:$tag"
umoci raw add-layer --image "$oci:$tag" --history.created "$CREATED" \
    --history.created_by "tools/build-image.sh (Debian $SUITE minbase + /opt/pkg venv)" "$layer"
annotations=(
    "org.opencontainers.image.title=$NAME"
    "org.opencontainers.image.description=PKG operator, evaluator sidecar, migrations and the pkg CLI"
    "org.opencontainers.image.version=$VERSION"
    "org.opencontainers.image.revision=$REVISION"
    "org.opencontainers.image.created=$CREATED"
    "org.opencontainers.image.licenses=Apache-2.0"
    "org.opencontainers.image.base.name=debian:$SUITE (mmdebstrap minbase)"
)
config_args=(
    --created "$CREATED" --no-history
    --config.user 10001:10001 --config.workingdir /
    --config.env PATH=/opt/pkg/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1
    --config.env TMPDIR=/tmp --config.env HOME=/tmp
    --config.cmd pkg-operator
)
for a in "${annotations[@]}"; do
    config_args+=(--config.label "$a" --manifest.annotation "$a")
done
umoci config --image "$oci:$tag" "${config_args[@]}"
umoci gc --layout "$oci"

(cd "$oci" && LC_ALL=C tar --create --file "$ARCHIVE.partial" --sort=name --numeric-owner \
    --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    oci-layout index.json blobs)
mv "$ARCHIVE.partial" "$ARCHIVE"
unpacked=$(du -sb "$rootfs" | cut -f1)
say "built $ARCHIVE ($(du -b "$ARCHIVE" | cut -f1) bytes compressed, $unpacked bytes unpacked), tag $tag"
say "load it into a registry with: skopeo copy oci-archive:$ARCHIVE docker://REGISTRY/$NAME:$tag"
