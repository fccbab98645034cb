package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoomsEndToEnd runs rooms through the real binary, the real OpenSSH client and the chat
// client: two rooms whose lines stay apart, tags, a topic, a private room refused and then
// entered by invitation, each room limit's error, and a restart that keeps rooms, topics,
// invitations, memberships and history.
func TestRoomsEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	limits := []string{"--data-dir", dataDir, "--msg-rate", "0", "--max-rooms", "4", "--max-rooms-per-person", "3", "--rooms-per-hour", "3"}
	srv := startChatd(t, limits...)
	key := clientKey(t)
	alice := startProc(t, "ssh", opensshArgs(srv.sshPort(), key, "", "-T", "alice@127.0.0.1")...)
	alice.stdout.WaitLine(t, "* alice joined #lobby (1 online)")
	bob := startProc(t, chatBin, "-addr", srv.tcpAddr, "-name", "bob")
	bob.stdout.WaitLine(t, "* bob joined #lobby (2 online)")

	// alice, whose key now holds her name, creates #go and owns it.
	alice.send(t, "/join go")
	alice.stdout.WaitLine(t, "* alice joined #go (1 online)")
	alice.send(t, "/topic Go talk")
	alice.stdout.WaitLine(t, "* alice set the topic of #go: Go talk")
	bob.send(t, "/join #GO")
	bob.stdout.WaitLine(t, "* topic of #go: Go talk")
	bob.stdout.WaitLine(t, "* bob joined #go (2 online)")
	alice.send(t, "hello gophers")
	bob.stdout.WaitLine(t, "alice: hello gophers")
	bob.send(t, "/join lobby")
	bob.stdout.WaitLine(t, "* you are in #lobby now: your lines go there")
	alice.send(t, "in go again")
	bob.stdout.WaitLine(t, "#go alice: in go again")
	bob.send(t, "lobby talk")
	alice.stdout.WaitLine(t, "#lobby bob: lobby talk")

	// A private room: refused, then invited.
	alice.send(t, "/join secret")
	alice.stdout.WaitLine(t, "* alice joined #secret (1 online)")
	alice.send(t, "/private on")
	alice.stdout.WaitLine(t, "* alice made #secret private: invitation only (/invite NAME)")
	alice.send(t, "for invited eyes")
	bob.send(t, "/join secret")
	bob.stdout.WaitLine(t, "error: #secret is invite-only")
	alice.send(t, "/invite bob")
	alice.stdout.WaitLine(t, "* bob may join #secret now")
	bob.stdout.WaitLine(t, "* alice invited you to #secret: /join #secret")
	bob.send(t, "/join secret")
	bob.stdout.WaitContains(t, "] alice: for invited eyes")
	bob.stdout.WaitLine(t, "* bob joined #secret (2 online)")

	// Each limit says so. alice is in #lobby, #go and #secret: her most.
	alice.send(t, "/join more")
	alice.stdout.WaitLine(t, "error: room limit: you are in 3 rooms, the most one may be in; leave one first (/part ROOM)")
	bob.send(t, "/part lobby")
	bob.stdout.WaitLine(t, "* you left #lobby; you are in #secret now")
	bob.send(t, "/join b1") // the address's third room this hour
	bob.stdout.WaitLine(t, "* bob joined #b1 (1 online)")
	bob.send(t, "/part b1")
	bob.stdout.WaitLine(t, "* you left #b1; you are in #go now")
	bob.send(t, "/join b2") // #lobby, #go, #secret, #b1: the server's most
	bob.stdout.WaitLine(t, "error: room limit: the server has 4 rooms, the most it may have; join one of them (/rooms)")
	bob.send(t, "/rooms")
	bob.stdout.WaitLine(t, "* #go (2 online, you are in it): Go talk")
	bob.stdout.WaitLine(t, "* #secret (2 online, private, you are in it)")
	// Parting back to the default room.
	bob.send(t, "/part go")
	bob.stdout.WaitLine(t, "* you left #go; you are in #secret now")
	bob.send(t, "/part secret")
	bob.stdout.WaitLine(t, "* you left #secret; you are in #lobby now")
	alice.stdout.WaitLine(t, "* bob left #secret")
	alice.stdout.WaitLine(t, "* bob joined #lobby (2 online)")

	if code, _ := srv.stop(t); code != 0 {
		t.Fatalf("chatd exited %d", code)
	}
	alice.wait(t)
	bob.wait(t)

	// The restart: a new server on the same data, with limits off.
	srv = startChatd(t, "--data-dir", dataDir, "--msg-rate", "0", "--rooms-per-hour", "1")
	alice = startProc(t, "ssh", opensshArgs(srv.sshPort(), key, "", "-T", "alice@127.0.0.1")...)
	alice.stdout.WaitLine(t, "* your rooms: #go, #lobby, #secret (lines from rooms but the current one start with the room's name)")
	alice.send(t, "/join go")
	alice.stdout.WaitLine(t, "* you are in #go now: your lines go there")
	alice.send(t, "/topic")
	alice.stdout.WaitLine(t, "* topic of #go: Go talk")
	alice.send(t, "/history 2")
	alice.stdout.WaitContains(t, "] alice: hello gophers")
	alice.stdout.WaitContains(t, "] alice: in go again")
	bob = startProc(t, chatBin, "-addr", srv.tcpAddr, "-name", "bob")
	bob.stdout.WaitLine(t, "* bob joined #lobby (2 online)") // a name without a key keeps no rooms
	bob.send(t, "/join secret")                              // but keeps its invitation
	bob.stdout.WaitContains(t, "] alice: for invited eyes")
	bob.stdout.WaitLine(t, "* bob joined #secret (2 online)")
	bob.send(t, "/rooms")
	bob.stdout.WaitLine(t, "* #go (1 online): Go talk")
	bob.stdout.WaitLine(t, "* #b1 (0 online)")
	bob.send(t, "/join new1")
	bob.stdout.WaitLine(t, "* bob joined #new1 (1 online)")
	bob.send(t, "/join new2")
	bob.stdout.WaitLine(t, "error: room limit: you may create 1 rooms an hour; join an existing one (/rooms) or try later")
	bob.send(t, "bye")
	alice.stdout.WaitLine(t, "* bob left #lobby")
}

// TestSingleRoomDatabaseMigrates starts chatd on a database written by the single-room chatd
// (the v2 fixture): its history is #lobby's, whole.
func TestSingleRoomDatabaseMigrates(t *testing.T) {
	dataDir := t.TempDir()
	fixture, err := os.ReadFile(filepath.Join("..", "..", "store", "sqlite", "testdata", "v2.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "chat.db"), fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startChatd(t, "--data-dir", dataDir, "--history-keep", "all", "--history", "3")
	reader := startProc(t, chatBin, "-addr", srv.tcpAddr, "-name", "reader")
	reader.stdout.WaitLine(t, "* the last 3 messages of #lobby:")
	reader.stdout.WaitContains(t, "] ** bob waves (v2 action 49)")
	reader.stdout.WaitLine(t, "* reader joined #lobby (1 online)")
	reader.send(t, "/history 50")
	reader.stdout.WaitLine(t, "* the last 50 messages of #lobby:")
	reader.stdout.WaitContains(t, "] Alice: v2 message 0")
	reader.stdout.WaitContains(t, "] bob: v2 message 7: héllo, 世界 👋")
	reader.send(t, "/rooms")
	reader.stdout.WaitLine(t, "* #lobby (1 online, you are in it)")

	out, err := sshAs(t, srv, clientKey(t), "carol", "history", "'#lobby'", "1000")
	if err != nil {
		t.Fatalf("ssh history: %v\n%s", err, out)
	}
	if n := strings.Count(out, "\n"); n != 50 || !strings.HasPrefix(out, "[history 2026-01-10 ") {
		t.Errorf("ssh history printed %d lines:\n%s", n, out)
	}
}
