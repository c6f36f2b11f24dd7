// Package rendezvous hands a message from one process to another through
// Firestore: the process that holds a call waits on a document that the
// process receiving the message writes. Proxy instances share no memory
// and a client's next request may reach any of them; Firestore is what
// they share.
//
// A rendezvous costs, by Firestore's billing: the waiter's listener, one
// read for its first snapshot (no document yet), one read of the document
// after it and a few more while the wait lasts (listen says why: 250 ms
// after the first, then after waits four times longer each) and one when
// the document appears; the
// answer's create, one write; the waiter's mark that it took the answer,
// one write; the TTL policy's delete, one more. Polling instead of listening (Options.Poll) costs a read per
// poll. BENCHMARKS.md compares the two on the emulator.
package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxAnswerBytes bounds an answer: a Firestore document holds at most
// 1 MiB, its fields included.
const MaxAnswerBytes = 1<<20 - 4<<10

// Errors of Answer and Wait.
var (
	// ErrAnswered: an answer was already stored under the ID.
	ErrAnswered = errors.New("rendezvous: already answered")
	// ErrTooLarge: the answer is larger than MaxAnswerBytes.
	ErrTooLarge = errors.New("rendezvous: answer too large")
	// ErrForeign: the document under the ID belongs to another owner.
	ErrForeign = errors.New("rendezvous: answer of another owner")
)

// Options tune a Store.
type Options struct {
	// Collection holds the documents. Default "rendezvous". A TTL
	// policy on its field expireAt removes those no waiter took.
	Collection string
	// Poll, when positive, makes Wait read the document every Poll
	// instead of listening to it.
	Poll time.Duration
}

// Store is a collection of rendezvous documents, each named by an ID
// the caller makes unguessable.
type Store struct {
	client *firestore.Client
	opts   Options
	reads  atomic.Int64
	writes atomic.Int64
	// snapshots starts a listener on a document; tests replace it.
	snapshots func(context.Context, *firestore.DocumentRef) snapshotIterator
}

// snapshotIterator is what listen needs of a
// *firestore.DocumentSnapshotIterator.
type snapshotIterator interface {
	Next() (*firestore.DocumentSnapshot, error)
	Stop()
}

func listenTo(ctx context.Context, doc *firestore.DocumentRef) snapshotIterator {
	return doc.Snapshots(ctx)
}

// New makes a Store in client's database.
func New(client *firestore.Client, opts Options) *Store {
	if opts.Collection == "" {
		opts.Collection = "rendezvous"
	}
	return &Store{client: client, opts: opts, snapshots: listenTo}
}

// Ops reports the billed Firestore reads and writes the Store made.
func (s *Store) Ops() (reads, writes int64) { return s.reads.Load(), s.writes.Load() }

// entry is a rendezvous document.
type entry struct {
	Answer []byte `firestore:"answer"`
	// Owner is who may take the answer (the API key's ID): the waiter
	// checks it as the writer did.
	Owner string `firestore:"owner"`
	// ExpireAt is the field of the collection's TTL policy; Wait also
	// refuses an answer past it.
	ExpireAt time.Time `firestore:"expireAt"`
	// Taken marks an answer its waiter has read.
	Taken bool `firestore:"taken"`
}

// Answer stores answer under id for owner, once: a second answer under
// the same id is ErrAnswered.
func (s *Store) Answer(ctx context.Context, id, owner string, answer []byte, expires time.Time) error {
	if len(answer) > MaxAnswerBytes {
		return ErrTooLarge
	}
	doc := s.client.Collection(s.opts.Collection).Doc(id)
	var err error
	for attempt := range 4 {
		s.writes.Add(1)
		_, err = doc.Create(ctx, entry{Answer: answer, Owner: owner, ExpireAt: expires})
		switch status.Code(err) {
		case codes.OK:
			return nil
		case codes.AlreadyExists:
			if attempt > 0 && s.ours(ctx, doc, answer) {
				return nil // the attempt that failed had stored it
			}
			return ErrAnswered
		case codes.Unknown, codes.Aborted, codes.Unavailable, codes.Canceled:
			// The emulator fails a create that meets a read of the same
			// document now and then, and one that meets a listener being
			// stopped ("call already cancelled", Canceled though ctx is
			// not); the service may be unavailable a moment.
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(10<<attempt) * time.Millisecond):
			}
			continue
		}
		break
	}
	return fmt.Errorf("rendezvous: store the answer: %w", err)
}

// ours reports whether doc holds answer (or held it: a waiter has taken
// it).
func (s *Store) ours(ctx context.Context, doc *firestore.DocumentRef, answer []byte) bool {
	s.reads.Add(1)
	snap, err := doc.Get(ctx)
	if err != nil {
		return false
	}
	var e entry
	return snap.DataTo(&e) == nil && (e.Taken || string(e.Answer) == string(answer))
}

// Wait returns the answer stored under id, once it is, and clears it.
// It ends with ctx. An answer of another owner than owner, or past its
// expiry, is refused.
func (s *Store) Wait(ctx context.Context, id, owner string) ([]byte, error) {
	doc := s.client.Collection(s.opts.Collection).Doc(id)
	var snap *firestore.DocumentSnapshot
	var err error
	if s.opts.Poll > 0 {
		snap, err = s.poll(ctx, doc)
	} else {
		snap, err = s.listen(ctx, doc)
	}
	if err != nil {
		return nil, err
	}
	var e entry
	if err := snap.DataTo(&e); err != nil {
		return nil, fmt.Errorf("rendezvous: read the answer: %w", err)
	}
	if e.Taken {
		return nil, ErrAnswered
	}
	// Taken once: the answer's bytes go now, and the document stays
	// until its TTL as a mark that refuses a second answer (Answer's
	// create fails). A failed write leaves the answer to the TTL policy.
	s.writes.Add(1)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	go func() { // ends within 5 s
		defer cancel()
		doc.Set(wctx, entry{Owner: e.Owner, ExpireAt: e.ExpireAt, Taken: true})
	}()
	if e.Owner != owner {
		return nil, ErrForeign
	}
	if time.Now().After(e.ExpireAt) {
		return nil, context.DeadlineExceeded
	}
	return e.Answer, nil
}

// listen waits for the document with a snapshot listener. A document
// created while the listener is being set up can be missed by it (seen
// on the emulator: about one in a hundred when the answer comes within
// milliseconds), so once the listener has its first snapshot, the
// document is read once: what was created before is found then, what is
// created after reaches the listener. The emulator's listener has also
// been seen to miss a create made just after that read (about once in
// five hundred waits), so while nothing comes the document is read again
// after recheckFirst, then after each wait four times longer: a miss
// costs that delay, and a long wait a few more reads (five in its first
// five minutes: at 0.25, 1.25, 5.25, 21.25 and 85.25 s). These reads
// start with the wait, not with the first snapshot, so a listener that
// never delivers one costs the delay too, not the whole wait.
func (s *Store) listen(ctx context.Context, doc *firestore.DocumentRef) (*firestore.DocumentSnapshot, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	it := s.snapshots(ctx, doc)
	type next struct {
		snap *firestore.DocumentSnapshot
		err  error
	}
	snaps := make(chan next)
	// The goroutine owns the iterator: Stop must not run concurrently
	// with Next. It ends with ctx, which fails Next.
	go func() {
		defer it.Stop()
		for {
			snap, err := it.Next()
			select {
			case snaps <- next{snap, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// Armed now, not at the first snapshot: a listener that never
	// delivers one (seen once on the emulator, under load) must not keep
	// the document from being read.
	recheck := time.NewTimer(recheckFirst)
	defer recheck.Stop()
	wait := recheckFirst
	for first := true; ; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case n := <-snaps:
			if n.err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("rendezvous: listen: %w", n.err)
			}
			s.reads.Add(1)
			if n.snap.Exists() {
				return n.snap, nil
			}
			if !first {
				continue
			}
			first = false
		case <-recheck.C:
			wait *= 4
		}
		if snap, err := s.read(ctx, doc); snap != nil || err != nil {
			return snap, err
		}
		recheck.Reset(wait)
	}
}

// recheckFirst is how long listen waits before it reads the document
// again, past the read after the listener's first snapshot.
const recheckFirst = 250 * time.Millisecond

// read reads the document once: nil and no error when it does not
// exist yet.
func (s *Store) read(ctx context.Context, doc *firestore.DocumentRef) (*firestore.DocumentSnapshot, error) {
	s.reads.Add(1)
	snap, err := doc.Get(ctx)
	switch {
	case err == nil:
		return snap, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case status.Code(err) != codes.NotFound:
		return nil, fmt.Errorf("rendezvous: read: %w", err)
	}
	return nil, nil
}

// poll waits for the document by reading it every Options.Poll.
func (s *Store) poll(ctx context.Context, doc *firestore.DocumentRef) (*firestore.DocumentSnapshot, error) {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		if snap, err := s.read(ctx, doc); snap != nil || err != nil {
			return snap, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
