package proxy

import (
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// view is an instance prepared for routing: each upstream with its unique
// namespace and the set of tools its tool group allows. It is built once
// per load and cached with the instance.
type view struct {
	inst *tenant.Instance
	ups  []*upstreamView // in the instance's order
	byNS map[string]*upstreamView
}

type upstreamView struct {
	ns      string
	up      tenant.Upstream
	key     string // upstream.Key(up), the tools cache's key
	allowed map[string]bool
}

func newView(inst *tenant.Instance) *view {
	v := &view{inst: inst, byNS: map[string]*upstreamView{}}
	for i, ns := range namespaces(inst.Upstreams) {
		u := &upstreamView{ns: ns, up: inst.Upstreams[i], key: upstream.Key(inst.Upstreams[i]), allowed: map[string]bool{}}
		for _, t := range u.up.Tools {
			u.allowed[t] = true
		}
		v.ups = append(v.ups, u)
		v.byNS[ns] = u
	}
	return v
}

// prefix is what this upstream's tool names start with on the aggregated
// route.
func (u *upstreamView) prefix() string { return u.ns + separator }
