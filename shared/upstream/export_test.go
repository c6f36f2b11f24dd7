package upstream

import "mcpproxy.dev/mcpproxy/shared/tenant"

// Direct reports to the tests outside the package whether the pool posts
// tools/call to up itself (direct).
func (p *Pool) Direct(up tenant.Upstream) bool { return p.direct(up) }
