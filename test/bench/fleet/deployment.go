//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// deployment is one fleet size: its own database with the fleet seeded,
// two replicas on it, and the agents, spread over both.
type deployment struct {
	w        *world
	size     int
	replicas []*replica
	admin    *registry.Client
	log      *requestLog
	fleet    *fleet
	// failoverErr says why the agents cannot be given several registry
	// URLs; nil when the client fails over between them.
	failoverErr error
	seeding     time.Duration
	settling    time.Duration
	// waitingAtSettle is the replicas' waiting long-polls once every agent reported.
	waitingAtSettle [replicas]int
}

func deploy(ctx context.Context, w *world, size int) (_ *deployment, err error) {
	d := &deployment{w: w, size: size}
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	db, err := w.newDatabase(ctx)
	if err != nil {
		return nil, err
	}
	host.Progress("%s clusters: seeding them into PostgreSQL, over the channels %v", host.Thousands(size), channelNames)
	began := time.Now()
	seeded, err := host.SeedFleet(ctx, db, w.git.RepoURL(configRepo), size, channelNames)
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	d.seeding = time.Since(began)
	host.Progress("starting %d caravan-central replicas", replicas)
	var urls, hosts []string
	for i := range replicas {
		addr, err := host.FreeAddr()
		if err != nil {
			return nil, err
		}
		r, err := startReplica(ctx, w.replicaSpec(i, db, addr))
		if err != nil {
			return nil, err
		}
		d.replicas = append(d.replicas, r)
		urls, hosts = append(urls, r.URL), append(hosts, addr)
	}
	if d.admin, err = registry.New(urls[0], w.secrets.admin); err != nil {
		return nil, err
	}
	d.failoverErr = clientFailsOver(ctx, urls[0], w.secrets.admin)
	settings := agentSettings{interval: w.opts.interval, severalURLs: d.failoverErr == nil, failback: w.opts.failback}
	d.log = newRequestLog(time.Now(), hosts)
	host.Progress("starting %s agents over %s", host.Thousands(size), w.opts.interval)
	began = time.Now()
	if d.fleet, err = startFleet(seeded, urls, settings, d.log); err != nil {
		return nil, err
	}
	if err := d.settle(ctx); err != nil {
		return nil, err
	}
	d.settling = time.Since(began)
	return d, nil
}

// settle waits until every agent holds its assignment and reported it.
func (d *deployment) settle(ctx context.Context) error {
	timeout := 2*d.w.opts.interval + time.Duration(d.size)*10*time.Millisecond
	err := await(ctx, "every agent's first report", d.fleet.agents, timeout, func(s snapshot) bool {
		_, ok := s.firstReport(time.Time{}, func(string) bool { return true })
		return ok
	})
	if err != nil {
		return err
	}
	for i, r := range d.replicas {
		m, err := r.metrics(ctx)
		if err != nil {
			return err
		}
		d.waitingAtSettle[i] = m.waiting
	}
	return nil
}

// cpuSample is the CPU time used so far by each replica, the benchmark
// (the agents), PostgreSQL and the whole machine.
type cpuSample struct {
	at       time.Time
	replicas [replicas]time.Duration
	bench    time.Duration
	pg       time.Duration
	machine  time.Duration
}

func (d *deployment) sampleCPU() (cpuSample, error) {
	s := cpuSample{at: time.Now(), bench: host.SelfCPUTime()}
	var err error
	for i, r := range d.replicas {
		if s.replicas[i], err = r.CPUTime(); err != nil {
			return s, err
		}
	}
	if s.pg, err = d.w.pgctl.cpuTime(); err != nil {
		return s, err
	}
	s.machine, err = host.MachineCPUTime()
	return s, err
}

// cpuUse is what each part used between two samples.
type cpuUse struct {
	wall     time.Duration
	replicas [replicas]time.Duration
	bench    time.Duration
	pg       time.Duration
	// other is every other process of the machine: the git server's
	// git commands, and whatever else runs on it.
	other time.Duration
}

func (a cpuSample) until(b cpuSample) cpuUse {
	u := cpuUse{wall: b.at.Sub(a.at), bench: b.bench - a.bench, pg: b.pg - a.pg}
	used := u.bench + u.pg
	for i := range a.replicas {
		u.replicas[i] = b.replicas[i] - a.replicas[i]
		used += u.replicas[i]
	}
	u.other = max(b.machine-a.machine-used, 0)
	return u
}

// cores is a CPU time as the cores it kept busy over the window.
func (u cpuUse) cores(t time.Duration) float64 {
	if u.wall <= 0 {
		return 0
	}
	return t.Seconds() / u.wall.Seconds()
}

// loggedProblems counts the warnings and errors the replicas logged so far.
func (d *deployment) loggedProblems() map[string]int {
	var paths []string
	for _, r := range d.replicas {
		paths = append(paths, r.LogPath)
	}
	return loggedProblems(paths...)
}

func (d *deployment) stop() {
	if d.fleet != nil {
		d.fleet.stop()
	}
	var errs []error
	for _, r := range d.replicas {
		errs = append(errs, r.Stop())
	}
	if err := errors.Join(errs...); err != nil {
		host.Progress("stopping the replicas: %v", err)
	}
}
