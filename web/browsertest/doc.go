// Package browsertest drives chatd's web page in a real headless Chromium, against a real server
// (room, SQLite, SSH and web on loopback) and the real OpenSSH client. It has tests only: the
// web package's own tests cannot import the SSH server, since transports never import each other.
package browsertest
