//go:build linux

package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// pgControl stops and starts the PostgreSQL server that test/postgres runs,
// as an operator's restart does: `pg_ctl stop -m fast`, and later `pg_ctl
// restart`, which, the server being down, starts it with the options it
// last ran with (its data folder's postmaster.opts), on the same port.
type pgControl struct {
	pgCtl   string
	dataDir string
	logPath string
	// cred runs pg_ctl as the data folder's owner: PostgreSQL refuses root.
	cred *syscall.Credential
}

func newPGControl(ctx context.Context, url string) (*pgControl, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	c := &pgControl{}
	if err := db.QueryRowContext(ctx, "SHOW data_directory").Scan(&c.dataDir); err != nil {
		return nil, fmt.Errorf("asking PostgreSQL for its data folder: %w", err)
	}
	c.logPath = filepath.Join(filepath.Dir(c.dataDir), "restarted.log")
	var st syscall.Stat_t
	if err := syscall.Stat(c.dataDir, &st); err != nil {
		return nil, fmt.Errorf("reading the owner of %s: %w", c.dataDir, err)
	}
	if os.Geteuid() == 0 {
		c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
	}
	var pid int
	if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return nil, fmt.Errorf("asking PostgreSQL for a server process: %w", err)
	}
	// pg_ctl beside the running server's own binary, so that the same version stops and starts it.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("finding the PostgreSQL binary: %w", err)
	}
	c.pgCtl = filepath.Join(filepath.Dir(exe), "pg_ctl")
	return c, nil
}

// stop shuts the server down, ending every connection, and returns once it is down.
func (c *pgControl) stop(ctx context.Context) error {
	return c.run(ctx, "-D", c.dataDir, "-m", "fast", "-w", "-t", "60", "stop")
}

// start starts the stopped server again and returns once it accepts connections.
func (c *pgControl) start(ctx context.Context) error {
	return c.run(ctx, "-D", c.dataDir, "-l", c.logPath, "-w", "-t", "60", "restart")
}

func (c *pgControl) run(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.pgCtl, args...)
	cmd.Dir = filepath.Dir(c.dataDir)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %v: %w\n%s", args, err, out)
	}
	return nil
}

// cpuTime is the CPU time PostgreSQL used so far: its postmaster's and
// every backend's, those that ended included.
func (c *pgControl) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading PostgreSQL's process id: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("reading PostgreSQL's process id: %w", err)
	}
	return host.TreeCPUTime(pid)
}
