package moto

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Down makes the server unreachable, as an outage of AWS's endpoint or a
// network partition would: every connection to Endpoint is refused until
// Up. moto itself keeps running, with every resource it holds.
func (s *Server) Down() error { return s.front.Close() }

// Up serves Endpoint again after Down.
func (s *Server) Up() error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
	if err != nil {
		return fmt.Errorf("serving moto's front at port %d again: %w", s.Port, err)
	}
	s.front = &http.Server{Handler: s.front.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.front.Serve(ln) }()
	return nil
}
