#!/bin/sh
# chatd package: after install or upgrade (deb postinst, rpm %post).
# Makes the system user chatd and its state directory /var/lib/chatd (mode 0700). Never
# touches what is in the directory, nor /etc/default/chatd (a conffile the package manager
# keeps when edited). Does not start or enable the service: the operator does, after reading
# /etc/default/chatd. On an upgrade a running chatd is restarted on the new binary.
set -e

# deb: "configure [OLD-VERSION]" (others: abort-*); rpm: 1 on install, 2 on upgrade.
case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

if ! getent group chatd >/dev/null; then
	groupadd --system chatd
fi
if ! getent passwd chatd >/dev/null; then
	useradd --system --gid chatd --home-dir /var/lib/chatd --no-create-home \
		--shell /usr/sbin/nologin --comment "chatd chat server" chatd
fi
if [ ! -d /var/lib/chatd ]; then
	mkdir -p /var/lib/chatd
fi
# The directory only, not its contents: the operator's files stay as they are.
chown chatd:chatd /var/lib/chatd
chmod 0700 /var/lib/chatd

# Only when systemd runs (not in a container build or a chroot).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	upgrade=
	if [ "$1" = configure ] && [ -n "$2" ]; then upgrade=1; fi
	if [ "$1" = 2 ]; then upgrade=1; fi
	if [ -n "$upgrade" ]; then
		systemctl try-restart chatd.service >/dev/null 2>&1 || true
	fi
fi
exit 0
