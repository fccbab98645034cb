#!/bin/sh
# chatd package: before removal (deb prerm, rpm %preun). Stops and disables the service when
# the package goes away; on an upgrade it does nothing (the new package's postinstall
# restarts a running chatd).
set -e

# deb: "remove", "upgrade NEW-VERSION", ...; rpm: 0 on erase, 1 on upgrade.
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop chatd.service >/dev/null 2>&1 || true
fi
# Works without a running systemd too: it only removes the symlinks.
if command -v systemctl >/dev/null; then
	systemctl disable chatd.service >/dev/null 2>&1 || true
fi
exit 0
