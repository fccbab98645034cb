package web

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/charmbracelet/log"
)

// certCheckEvery is how often the certificate files are looked at for a renewal.
const certCheckEvery = time.Minute

// certLoader serves the certificate in TLSCert/TLSKey and picks up a renewed one (certbot and the
// like replace the files every few weeks) without a restart.
type certLoader struct {
	certFile, keyFile string
	log               *log.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times when cert was loaded
	checked time.Time
}

func newCertLoader(certFile, keyFile string, logger *log.Logger) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, log: logger}
	stamp, err := l.stampNow()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	l.cert, l.stamp, l.checked = &cert, stamp, time.Now()
	return l, nil
}

func (l *certLoader) stampNow() (string, error) {
	var stamp string
	for _, f := range []string{l.certFile, l.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d@%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

// get is tls.Config.GetCertificate. A renewal that cannot be read keeps the old certificate
// (logged): a half-written file must not take the site down.
func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) < certCheckEvery {
		return l.cert, nil
	}
	l.checked = time.Now()
	stamp, err := l.stampNow()
	if err != nil || stamp == l.stamp {
		return l.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		l.log.Warn("tls: a changed certificate cannot be loaded; serving the old one", "err", err)
		return l.cert, nil
	}
	l.cert, l.stamp = &cert, stamp
	l.log.Info("tls: certificate reloaded", "file", l.certFile)
	return l.cert, nil
}
