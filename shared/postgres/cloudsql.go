package postgres

import (
	"context"
	"net"

	"cloud.google.com/go/cloudsqlconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Dialer opens connections to a Cloud SQL instance; *cloudsqlconn.Dialer
// is the one used outside tests.
type Dialer interface {
	Dial(ctx context.Context, instance string, opts ...cloudsqlconn.DialOption) (net.Conn, error)
}

// UseDialer makes every connection of the pool go through d to the Cloud
// SQL instance ("project:region:instance"). The URL's host and port are
// then ignored, and so is its TLS setting: the connector encrypts the
// connection itself (mutual TLS with a certificate bound to the caller's
// identity), and with IAM authentication it also supplies the password.
func UseDialer(cfg *pgxpool.Config, d Dialer, instance string) {
	cc := cfg.ConnConfig
	cc.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.Dial(ctx, instance)
	}
	cc.TLSConfig = nil
	cc.Fallbacks = nil
}

// cloudSQLDialer makes the Cloud SQL connector with IAM database
// authentication. Lazy refresh fetches the instance's certificate when a
// connection needs it rather than in a background loop, which Cloud
// Functions would starve of CPU between requests.
func cloudSQLDialer(ctx context.Context) (*cloudsqlconn.Dialer, error) {
	return cloudsqlconn.NewDialer(ctx, cloudsqlconn.WithIAMAuthN(), cloudsqlconn.WithLazyRefresh())
}
