package logbuffer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultCollection is the Firestore collection of batch documents.
const DefaultCollection = "requestLogBatches"

// document is a batch as stored. The entries are one bytes field rather
// than an array of maps: Firestore indexes every field of every array
// element by default, which would cost an index entry per entry field and
// hit the 40,000 index entries limit of a document; one opaque field is one
// index entry, and encoding it is a copy.
type document struct {
	CreatedAt time.Time            `firestore:"createdAt"`
	Count     int                  `firestore:"count"`
	Entries   []byte               `firestore:"entries"`
	LastUsed  map[string]time.Time `firestore:"lastUsed"`
	Format    int                  `firestore:"format"`
}

const format = 1

// Firestore is the Sink of the proxy: one document per batch, named by
// the batch ID.
type Firestore struct {
	Client     *firestore.Client
	Collection string // DefaultCollection when empty
}

func (f *Firestore) collection() *firestore.CollectionRef {
	name := f.Collection
	if name == "" {
		name = DefaultCollection
	}
	return f.Client.Collection(name)
}

// Write creates the batch's document. A document that already exists was
// stored by an earlier attempt whose answer was lost: the write succeeded.
func (f *Firestore) Write(ctx context.Context, b *Batch) error {
	_, err := f.collection().Doc(b.ID).Create(ctx, document{
		CreatedAt: b.CreatedAt, Count: b.Count, Entries: b.Entries, LastUsed: b.LastUsed, Format: format,
	})
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write request log batch %s: %w", b.ID, err)
	}
	return nil
}

// Oldest returns up to n stored batches, oldest first, with the reference
// of each document.
func (f *Firestore) Oldest(ctx context.Context, n int) ([]*Batch, []*firestore.DocumentRef, error) {
	docs, err := f.collection().OrderBy("createdAt", firestore.Asc).Limit(n).Documents(ctx).GetAll()
	if err != nil {
		return nil, nil, fmt.Errorf("read request log batches: %w", err)
	}
	batches := make([]*Batch, 0, len(docs))
	refs := make([]*firestore.DocumentRef, 0, len(docs))
	for _, d := range docs {
		batches = append(batches, decodeDocument(d))
		refs = append(refs, d.Ref)
	}
	return batches, refs, nil
}

// decodeDocument reads a batch document. One that does not decode comes
// back with Invalid set, so that the flush sets it aside instead of
// stopping.
func decodeDocument(d *firestore.DocumentSnapshot) *Batch {
	var doc document
	b := &Batch{ID: d.Ref.ID}
	if err := d.DataTo(&doc); err != nil {
		b.Invalid = "undecodable batch document: " + err.Error()
		return b
	}
	if doc.Format != format {
		b.Invalid = fmt.Sprintf("unknown batch document format %d", doc.Format)
		return b
	}
	b.CreatedAt, b.Count, b.Entries, b.LastUsed = doc.CreatedAt, doc.Count, doc.Entries, doc.LastUsed
	return b
}

// Count returns how many batch documents are stored.
func (f *Firestore) Count(ctx context.Context) (int64, error) {
	res, err := f.collection().NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("count request log batches: %w", err)
	}
	var out struct {
		N int64 `firestore:"n"`
	}
	if err := res.DataTo(&out); err != nil {
		return 0, fmt.Errorf("count request log batches: %w", err)
	}
	return out.N, nil
}

// Delete removes stored batch documents.
func (f *Firestore) Delete(ctx context.Context, refs []*firestore.DocumentRef) error {
	if len(refs) == 0 {
		return nil
	}
	bw := f.Client.BulkWriter(ctx)
	jobs := make([]*firestore.BulkWriterJob, 0, len(refs))
	for _, ref := range refs {
		job, err := bw.Delete(ref)
		if err != nil {
			bw.End()
			return fmt.Errorf("delete request log batch %s: %w", ref.ID, err)
		}
		jobs = append(jobs, job)
	}
	bw.End()
	var errs []error
	for i, job := range jobs {
		if _, err := job.Results(); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("delete request log batch %s: %w", refs[i].ID, err))
		}
	}
	return errors.Join(errs...)
}

// SetAside moves a batch document that cannot be copied into the
// collection's "Invalid" sibling, where it is kept for an operator, so
// that it neither blocks the flush nor is lost.
func (f *Firestore) SetAside(ctx context.Context, ref *firestore.DocumentRef, reason string) error {
	snap, err := ref.Get(ctx)
	if err != nil {
		return fmt.Errorf("set aside request log batch %s: %w", ref.ID, err)
	}
	data := snap.Data()
	data["invalidReason"] = reason
	data["setAsideAt"] = firestore.ServerTimestamp
	aside := f.Client.Collection(ref.Parent.ID + "Invalid").Doc(ref.ID)
	err = f.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if err := tx.Set(aside, data); err != nil {
			return err
		}
		return tx.Delete(ref)
	})
	if err != nil {
		return fmt.Errorf("set aside request log batch %s: %w", ref.ID, err)
	}
	return nil
}

// SetAsidePart moves what cannot be copied of a batch document (its
// rejected entry lines and lastUsed keys) into the "Invalid" sibling
// collection, with the reasons, and deletes the document, in one
// transaction. The flush calls it once the rest of the batch is copied.
func (f *Firestore) SetAsidePart(ctx context.Context, ref *firestore.DocumentRef, b *Batch, lines [][]byte, lastUsed map[string]time.Time, reasons []string) error {
	var entries []byte
	for _, l := range lines {
		entries = append(append(entries, l...), '\n')
	}
	if lastUsed == nil {
		lastUsed = map[string]time.Time{}
	}
	const maxReasons = 20 // a document's reasons stay readable, and small
	if len(reasons) > maxReasons {
		reasons = append(reasons[:maxReasons:maxReasons], fmt.Sprintf("and %d more", len(reasons)-maxReasons))
	}
	data := map[string]any{
		"createdAt": b.CreatedAt, "count": len(lines), "entries": entries, "lastUsed": lastUsed, "format": format,
		"invalidReason": strings.Join(reasons, "; "), "setAsideAt": firestore.ServerTimestamp,
	}
	aside := f.Client.Collection(ref.Parent.ID + "Invalid").Doc(ref.ID)
	err := f.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if err := tx.Set(aside, data); err != nil {
			return err
		}
		return tx.Delete(ref)
	})
	if err != nil {
		return fmt.Errorf("set aside part of request log batch %s: %w", ref.ID, err)
	}
	return nil
}
