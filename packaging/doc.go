// Package packaging holds what makes chatd's .deb and .rpm packages (the systemd unit, the
// settings file /etc/default/chatd, the install scripts, nfpm's description and the
// packaging/package script that builds them into dist/) and the tests that build, inspect and
// install them. It has no Go code of its own.
package packaging
