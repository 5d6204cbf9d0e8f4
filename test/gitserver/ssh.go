package gitserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SSHServer serves the same bare repositories over SSH, through the real
// `git upload-pack`, to one client key.
type SSHServer struct {
	// Addr is host:port; URL(name) is a repo's ssh:// URL.
	Addr string
	// ClientKey is the PEM private key the server accepts.
	ClientKey []byte
	// KnownHosts is a known_hosts line that pins the server's key.
	KnownHosts []byte
	root       string
	ln         net.Listener
	wg         sync.WaitGroup
}

// StartSSH serves s's repositories over SSH until the test ends.
func (s *Server) StartSSH(t testing.TB) *SSHServer {
	t.Helper()
	srv, err := launchSSH(s.Root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.close)
	return srv
}

func launchSSH(root string) (*SSHServer, error) {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return nil, err
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		return nil, err
	}
	authorized, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return nil, err
	}
	config := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(authorized.Marshal()) {
			return &ssh.Permissions{}, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	config.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	host, port, _ := net.SplitHostPort(addr)
	s := &SSHServer{Addr: addr, ClientKey: pem.EncodeToMemory(block), root: root, ln: ln,
		KnownHosts: []byte(fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))}
	s.wg.Add(1)
	go s.serve(config)
	return s, nil
}

// URL is the ssh:// URL of a repository.
func (s *SSHServer) URL(name string) string { return "ssh://git@" + s.Addr + "/" + name + ".git" }

func (s *SSHServer) close() {
	_ = s.ln.Close()
	s.wg.Wait()
}

func (s *SSHServer) serve(config *ssh.ServerConfig) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.session(conn, config)
	}
}

func (s *SSHServer) session(conn net.Conn, config *ssh.ServerConfig) {
	defer conn.Close()
	_, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(requests)
	for nc := range channels {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.exec(ch, reqs)
	}
}

// exec runs `git upload-pack` for an exec request naming it; the server
// only reads.
func (s *SSHServer) exec(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" || len(req.Payload) < 4 {
			_ = req.Reply(false, nil)
			continue
		}
		command := string(req.Payload[4 : 4+binary.BigEndian.Uint32(req.Payload)])
		repo, ok := strings.CutPrefix(command, "git-upload-pack ")
		if !ok {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		dir := filepath.Join(s.root, filepath.Clean("/"+strings.Trim(repo, "'\"")))
		cmd := exec.Command("git", "upload-pack", dir)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, io.Discard
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
		return
	}
}
