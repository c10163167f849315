package resolver

import (
	"container/list"
	"hash/maphash"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Kinds of cache entries. Only kindAnswer and kindNegative are ever used to
// answer clients; the others route queries and hold DNSSEC state.
const (
	kindAnswer   uint8 = iota // an RRset from an authoritative answer
	kindNegative              // NXDOMAIN (type 0) or NODATA (the type)
	kindDeleg                 // NS RRset of a zone cut, from a referral
	kindGlue                  // A/AAAA of a name server, from a referral
	kindZone                  // DNSSEC state of a zone apex (*zoneSec)
	kindNotCut                // a name proven not to be a zone cut
)

// security states, ordered so that the minimum of a chain is its state.
type secState uint8

const (
	secBogus     secState = iota + 1 // validation failed
	secUnchecked                     // not validated (validation off, or routing data)
	secInsecure                      // proven to be in an unsigned zone, or not under an anchor
	secSecure                        // validated
)

func (s secState) String() string {
	switch s {
	case secBogus:
		return "bogus"
	case secInsecure:
		return "insecure"
	case secSecure:
		return "secure"
	}
	return "unchecked"
}

type cacheKey struct {
	name  string // lowercased
	rtype uint16
	kind  uint8
}

// entry is one cached item. Its slices are never modified once stored;
// readers copy RRs before changing TTLs.
type entry struct {
	key    cacheKey
	rrs    []mdns.RR // the RRset (answer, deleg, glue) or the authority section (negative)
	sigs   []mdns.RR // RRSIGs over rrs (answer)
	pre    []mdns.RR // a synthesised CNAME: the DNAME (and RRSIGs) it came from
	rcode  int       // negative: NXDOMAIN or NOERROR
	sec    secState
	zone   *zoneSec // kindZone
	expire time.Time
	elem   *list.Element
}

// ttlLeft is the TTL to hand out for an entry at now.
func (e *entry) ttlLeft(now time.Time) uint32 {
	d := e.expire.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}

type cacheShard struct {
	mu    sync.Mutex
	items map[cacheKey]*entry
	lru   list.List // front = most recently used
	max   int
}

// cache is a sharded LRU cache bounded by number of entries.
type cache struct {
	seed   maphash.Seed
	shards []*cacheShard
}

const cacheShards = 16

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed()}
	n := cacheShards
	if size < n*4 {
		n = 1
	}
	per := size / n
	if per < 1 {
		per = 1
	}
	for range n {
		c.shards = append(c.shards, &cacheShard{items: make(map[cacheKey]*entry), max: per})
	}
	return c
}

func (c *cache) shard(k cacheKey) *cacheShard {
	if len(c.shards) == 1 {
		return c.shards[0]
	}
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.name)
	h.WriteByte(byte(k.rtype))
	h.WriteByte(byte(k.rtype >> 8))
	h.WriteByte(k.kind)
	return c.shards[h.Sum64()%uint64(len(c.shards))]
}

// get returns the live entry for k, or nil. An expired entry is removed.
func (c *cache) get(k cacheKey, now time.Time) *entry {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.items[k]
	if e == nil {
		return nil
	}
	if !now.Before(e.expire) {
		s.lru.Remove(e.elem)
		delete(s.items, k)
		return nil
	}
	s.lru.MoveToFront(e.elem)
	return e
}

// put stores e (replacing any entry with the same key), evicting the least
// recently used entries beyond the shard's bound. Entries that would expire
// at once are not stored.
func (c *cache) put(e *entry, now time.Time) {
	if !now.Before(e.expire) {
		return
	}
	s := c.shard(e.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.items[e.key]; old != nil {
		// Never let routing data or unchecked data replace validated data
		// that is still live.
		if old.sec == secSecure && e.sec < secSecure && now.Before(old.expire) && e.kind() == old.kind() {
			s.lru.MoveToFront(old.elem)
			return
		}
		s.lru.Remove(old.elem)
	}
	e.elem = s.lru.PushFront(e)
	s.items[e.key] = e
	for s.lru.Len() > s.max {
		last := s.lru.Back()
		victim := last.Value.(*entry)
		s.lru.Remove(last)
		delete(s.items, victim.key)
	}
}

func (e *entry) kind() uint8 { return e.key.kind }

// len is the number of entries (for the metrics gauge).
func (c *cache) len() int {
	n := 0
	for _, s := range c.shards {
		s.mu.Lock()
		n += len(s.items)
		s.mu.Unlock()
	}
	return n
}

// withTTL returns copies of rrs with every TTL set to ttl.
func withTTL(rrs []mdns.RR, ttl uint32) []mdns.RR {
	out := make([]mdns.RR, len(rrs))
	for i, rr := range rrs {
		c := mdns.Copy(rr)
		c.Header().Ttl = ttl
		out[i] = c
	}
	return out
}
