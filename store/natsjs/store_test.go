package natsjs

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"chatd/store/natsjs/natstest"
	"chatd/store/storetest"

	"github.com/charmbracelet/log"
	"github.com/nats-io/nuid"
)

// syncBuffer is a log destination the test may read while the store writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// openStore opens a store with cfg on the server at url, with a prefix of its own unless cfg
// has one, closing it when the test ends.
func openStore(t testing.TB, url string, cfg Config) (*Store, *syncBuffer) {
	t.Helper()
	if cfg.URLs == nil && cfg.Conn == nil {
		cfg.URLs = []string{url}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "t" + nuid.Next() // streams and buckets of its own on a shared server
	}
	logs := &syncBuffer{}
	s, err := Open(context.Background(), cfg, log.New(logs))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, logs
}

// TestConformance runs the storage conformance suite against a store on a real, embedded NATS
// server: a prefix of its own for each subtest.
func TestConformance(t *testing.T) {
	srv := natstest.Start(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, _ := openStore(t, srv.URL(), Config{})
		return s
	})
}

// TestConnectErrorHidesPasswords: the error of a store that cannot connect names the servers,
// not the password in their URLs (it reaches the logs).
func TestConnectErrorHidesPasswords(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the connection is refused at once
	_, err = Open(context.Background(), Config{URLs: []string{"nats://chatd:hunter2@" + addr}, Timeout: time.Second}, nil)
	if err == nil {
		t.Fatal("Open connected to a closed port")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), addr) {
		t.Errorf("Open's error = %q: want the address, without the password", err)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://n1:4222", "nats://n1:4222"},
		{"nats://chatd:hunter2@n1:4222", "nats://chatd:xxxxx@n1:4222"},
		{"tls://chatd@n1:4222", "tls://chatd@n1:4222"},
		{"nats://chatd:pa%zz@n1:4222", "...@n1:4222"}, // does not parse: the secret goes anyway
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := RedactURLs([]string{"nats://a:b@x:1", "nats://y:2"}); got != "nats://a:xxxxx@x:1,nats://y:2" {
		t.Errorf("RedactURLs = %q", got)
	}
}
