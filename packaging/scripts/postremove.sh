#!/bin/sh
# chatd package: after removal (deb postrm, rpm %postun). A removal keeps the data in
# /var/lib/chatd (host keys, the history, who owns which name); a purge (dpkg -P, apt purge)
# deletes it. The system user chatd stays: files elsewhere may still belong to it, and a
# recycled uid would hand them to someone else.
set -e

if [ "$1" = purge ]; then
	rm -rf /var/lib/chatd
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
