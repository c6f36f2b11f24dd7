// Command hostile-upstream runs the hostile MCP upstream of package
// hostile as a process: over stdio, or over Streamable HTTP on an address.
//
//	hostile-upstream --mode nulls                    # stdio
//	hostile-upstream --mode good --addr 127.0.0.1:0  # HTTP; prints its URL
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"mcpproxy.dev/mcpproxy/internal/hostile"
)

func main() {
	mode := flag.String("mode", string(hostile.Good), "list behaviour: good, nulls, malformed, endless or bloated")
	addr := flag.String("addr", "", "serve Streamable HTTP on this address instead of stdio")
	flag.Parse()
	s := &hostile.Server{Mode: hostile.Mode(*mode)}
	if *addr == "" {
		if err := s.ServeStdio(os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s/mcp\n", l.Addr())
	log.Fatal(http.Serve(l, s))
}
