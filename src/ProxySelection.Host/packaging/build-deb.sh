#!/usr/bin/env bash
# Builds the Debian package of proxysel with dpkg-deb (no debhelper, no build chroot):
#
#   src/ProxySelection.Host/packaging/build-deb.sh [OUTPUT_DIR]
#
# publishes the daemon, stages /usr/lib/proxysel (the published tree), /usr/bin/proxysel (a symlink), the systemd unit,
# the default /etc/proxysel/proxysel.json (a conffile), a man page generated from the command's --help, and the
# maintainer scripts in debian/, then writes OUTPUT_DIR/proxysel_<version>_amd64.deb (default OUTPUT_DIR: artifacts/deb
# at the repository root) and prints its path as the last line.
#
# Reproducible: every timestamp (files, man page, archive members) is SOURCE_DATE_EPOCH, default the last commit's
# time; owners are root:root (dpkg-deb --root-owner-group); the man page is gzipped without name or time (gzip -n).
# The archive is gzip: xz took 10x longer on the 84 MB tree for 20 % less (56 s against 5 s with the publish).
# PROXYSEL_DEB_VERSION overrides the package version (default: `proxysel --version` without its +commit suffix).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
out=${1:-$repo/artifacts/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in dotnet dpkg-deb gzip; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is required" >&2; exit 1; }
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
export LC_ALL=C TZ=UTC

stage=$(mktemp -d "${TMPDIR:-/tmp}/proxysel-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
lib=$root/usr/lib/proxysel

# The one place the daemon is built. Self-contained: Debian ships no .NET runtime (it lives in Microsoft's own
# repository), so a framework-dependent package would depend on something apt cannot install. ReadyToRun (the Host
# project sets PublishReadyToRun when a runtime identifier is given): start to READY 1.7 s against 3.1 s JIT. Native
# AOT (-p:PublishAot=true here and the list of files removed below) builds without warnings and passes aot-smoke.sh,
# starts in 0.5 s with 26 MiB instead of 1.9 s and 64 MiB, but the tests run no AOT daemon and CI would need clang, zlib1g-dev
# and a much longer publish: not yet (README.md, "Start to READY and idle memory").
publish() {
  dotnet publish "$repo/src/ProxySelection.Host" -c Release -r linux-x64 --self-contained -o "$1" --nologo -v quiet >&2
}

publish "$lib"
# LTTng tracing provider: links liblttng-ust, which Debian installs only on request; the runtime runs without it.
rm -f "$lib/libcoreclrtraceptprovider.so"
# Symbols and XML docs are for developers (no -p: switches for them above: a global property would rebuild the
# referenced projects' shared bin/ folders under other settings).
find "$lib" \( -name '*.pdb' -o -name '*.xml' \) -delete
exe=$lib/proxysel
[ -x "$exe" ] || { echo "build-deb: publish produced no $exe" >&2; exit 1; }

full_version=$("$exe" --version)
version=${PROXYSEL_DEB_VERSION:-${full_version%%+*}}
[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "build-deb: not a Debian version: '$version'" >&2; exit 1; }

install -d "$root/usr/bin" "$root/etc/proxysel" "$root/lib/systemd/system" \
  "$root/usr/share/man/man1" "$root/usr/share/doc/proxysel" "$root/DEBIAN"
ln -s ../lib/proxysel/proxysel "$root/usr/bin/proxysel"
install -m 0644 "$here/debian/proxysel.json" "$root/etc/proxysel/proxysel.json"
install -m 0644 "$here/debian/proxysel.service" "$root/lib/systemd/system/proxysel.service"
install -m 0644 "$repo/LICENSE" "$root/usr/share/doc/proxysel/copyright"

# Man page from the command's own help: the root's, then every verb's (and their verbs', to depth 3), in the order
# --help lists them. Roff-escaped: backslashes, and lines that would start with a control character.
roff() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/" -e 's/-/\\-/g'; }
verbs() { awk '/^Commands:/ { on = 1; next } /^[^ ]/ { on = 0 } on && NF { print $1 }'; }
man_section() {
  local depth=$1; shift
  local help
  help=$("$exe" "$@" --help)
  printf '.SS "proxysel %s"\n.nf\n' "$*"
  printf '%s\n' "$help" | roff
  printf '.fi\n'
  if [ "$depth" -lt 3 ]; then
    local verb
    for verb in $(printf '%s\n' "$help" | verbs); do
      man_section $((depth + 1)) "$@" "$verb"
    done
  fi
}
{
  date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
  printf '.TH PROXYSEL 1 "%s" "proxysel %s" "User Commands"\n' "$date" "$version"
  printf '.SH NAME\nproxysel \\- Multipath TCP proxy selection for operator proxy chains\n'
  printf '.SH SYNOPSIS\n.B proxysel\n.I command\n[\\fIoptions\\fR]\n'
  printf '.SH DESCRIPTION\n.nf\n'
  "$exe" --help | roff
  printf '.fi\n.SH COMMANDS\n'
  for verb in $("$exe" --help | verbs); do
    man_section 1 "$verb"
  done
  printf '.SH FILES\n.TP\n.I /etc/proxysel/proxysel.json\n'
  printf 'The configuration the systemd unit proxysel.service starts the daemon with.\n'
  printf '.TP\n.I /run/proxysel/PSEL.sock\nThe control socket of proxysel status and proxysel cache.\n'
  printf '.SH VERSION\n%s\n' "$full_version"
} > "$stage/proxysel.1"
gzip -9n < "$stage/proxysel.1" > "$root/usr/share/man/man1/proxysel.1.gz"

installed_size=$(du -sk --apparent-size "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" "$here/debian/control.in" > "$root/DEBIAN/control"
install -m 0644 "$here/debian/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs -r md5sum) > "$root/DEBIAN/md5sums"

# Modes are install's and publish's; normalize what umask may have changed, and every timestamp.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/proxysel_${version}_amd64.deb
dpkg-deb --root-owner-group -Zgzip -z6 --build "$root" "$deb" >&2
echo "$deb"
