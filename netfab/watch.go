package netfab

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// debounce lets the burst of events one edit causes arrive before the
// namespace is read back.
const debounce = 10 * time.Millisecond

// watchState is Run's: one watcher per owned namespace, and the set of
// namespaces with unexamined events.
type watchState struct {
	log      func(msg string, args ...any)
	mu       sync.Mutex
	dirty    map[string]bool
	signal   chan struct{}
	watchers map[string]*watcher
}

type watcher struct {
	socks []*nl.NetlinkSocket
	wg    sync.WaitGroup
}

func newWatchState(log func(string, ...any)) *watchState {
	return &watchState{log: log, dirty: map[string]bool{}, signal: make(chan struct{}, 1), watchers: map[string]*watcher{}}
}

func (w *watchState) mark(name string) {
	w.mu.Lock()
	w.dirty[name] = true
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watchState) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.dirty))
	for n := range w.dirty {
		names = append(names, n)
	}
	clear(w.dirty)
	return names
}

// start subscribes, inside the namespace, to rtnetlink link, address,
// route, rule and netconf events and to nftables events. Any event marks the
// namespace dirty; the read-back decides whether it was drift. The caller
// holds the Plane's lock.
func (w *watchState) start(h *nsHandle) {
	if _, ok := w.watchers[h.name]; ok {
		return
	}
	var socks []*nl.NetlinkSocket
	err := inNS(int(h.fd), func() error {
		rt, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE,
			unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_IFADDR)
		if err != nil {
			return fmt.Errorf("subscribe to rtnetlink: %w", err)
		}
		socks = append(socks, rt)
		nf, err := nl.Subscribe(unix.NETLINK_NETFILTER, unix.NFNLGRP_NFTABLES)
		if err != nil {
			rt.Close()
			return fmt.Errorf("subscribe to nftables: %w", err)
		}
		socks = append(socks, nf)
		return nil
	})
	if err != nil {
		// The periodic read-back still covers this namespace.
		w.log("netfab: cannot watch namespace", "netns", h.name, "err", err)
		return
	}
	wt := &watcher{socks: socks}
	for _, s := range socks {
		wt.wg.Add(1)
		go func() {
			defer wt.wg.Done()
			for {
				_, _, err := s.Receive()
				if err != nil && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
					return // closed
				}
				// ENOBUFS means events were lost: look anyway.
				w.mark(h.name)
			}
		}()
	}
	w.watchers[h.name] = wt
}

func (w *watchState) stop(name string) {
	wt := w.watchers[name]
	if wt == nil {
		return
	}
	delete(w.watchers, name)
	for _, s := range wt.socks {
		s.Close()
	}
	wt.wg.Wait()
}

func (w *watchState) stopAll() {
	for n := range w.watchers {
		w.stop(n)
	}
}

// Run keeps the kernel matching the approved state until ctx is done: it
// watches every owned namespace for netlink and nftables events and reads
// back (and reverts) a namespace within milliseconds of an edit in it, and
// does a full Reconcile every Options.Interval as the backstop for what
// events do not show (egress ends in foreign namespaces, lost events).
// Drift goes to OnDrift. Run returns ctx.Err() when ctx is done, or an
// error when the Plane is closed under it.
func (p *Plane) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	if p.watching != nil {
		p.mu.Unlock()
		return errors.New("netfab: Run is already running")
	}
	w := newWatchState(p.log.Warn)
	p.watching = w
	for _, h := range p.handles {
		w.start(h)
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		w.stopAll()
		if p.watching == w {
			p.watching = nil
		}
		p.mu.Unlock()
	}()

	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.signal:
			t := time.NewTimer(debounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			if _, err := p.reconcile(ctx, w.take()); errors.Is(err, errClosed) {
				return err
			} else if err != nil && ctx.Err() == nil {
				p.log.Error("netfab: revert failed", "err", err)
			}
		case <-tick.C:
			if _, err := p.Reconcile(ctx); errors.Is(err, errClosed) {
				return err
			} else if err != nil && ctx.Err() == nil {
				p.log.Error("netfab: reconcile failed", "err", err)
			}
		}
	}
}
