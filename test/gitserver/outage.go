package gitserver

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Down stops serving, as a git host in an outage: every connection to the
// server's URL is refused until Up. The repositories stay as they are.
func (s *Server) Down() error { return s.srv.Close() }

// Up serves again at the same URL after Down.
func (s *Server) Up() error {
	ln, err := net.Listen("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		return fmt.Errorf("serving %s again: %w", s.URL, err)
	}
	s.srv = &http.Server{Handler: s.srv.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}
