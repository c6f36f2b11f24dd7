package credentials

import (
	"context"
	"fmt"

	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"
)

// idToken returns a Google ID token for audience, from one source per
// audience that keeps it until shortly before it expires.
func (p *Presenter) idToken(upstream, audience string) (*oauth2.Token, error) {
	p.idMu.Lock()
	ts := p.idSources[audience]
	if ts == nil {
		// The source outlives this request: it gets a context of its own.
		src, err := p.opts.IDTokenSource(context.Background(), audience)
		if err != nil {
			p.idMu.Unlock()
			return nil, &Error{upstream, fmt.Errorf("make a Google ID token source for %s: %w", audience, err)}
		}
		ts = oauth2.ReuseTokenSourceWithExpiry(nil, src, refreshMargin)
		p.idSources[audience] = ts
	}
	p.idMu.Unlock()
	tok, err := ts.Token()
	if err != nil {
		return nil, &Error{upstream, fmt.Errorf("get a Google ID token for %s: %w", audience, err)}
	}
	return tok, nil
}

func defaultIDTokenSource(ctx context.Context, audience string) (oauth2.TokenSource, error) {
	return idtoken.NewTokenSource(ctx, audience)
}
