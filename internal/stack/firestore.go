package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mcpproxy.dev/mcpproxy/internal/procgroup"
	"mcpproxy.dev/mcpproxy/internal/relay"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// FirestoreOptions configure StartFirestore.
type FirestoreOptions struct {
	// Dir holds the emulator's log and, when Restartable, its exports.
	Dir string
	// Project is the project whose documents a restart keeps; the
	// clients' GOOGLE_CLOUD_PROJECT.
	Project string
	// Restartable makes Stop and Start keep the documents, as a real
	// Firestore outage would: the emulator keeps them only in memory, so
	// Stop exports them and Start imports the export. Clients then reach
	// the emulator through a relay that Stop cuts first, so that no write
	// is acknowledged between the export and the shutdown.
	Restartable bool
	Logf        Logf
}

// Firestore is the Firestore emulator.
type Firestore struct {
	opts    FirestoreOptions
	gcloud  string
	host    string // what clients dial: the relay's address when Restartable
	emuHost string // the emulator's own address
	log     string
	proc    *procgroup.Process
	relay   *relay.Relay
	export  string // the .overall_export_metadata file of the last Stop
	exports int
}

// StartFirestore starts the emulator on a free loopback port and waits
// until it answers.
func StartFirestore(ctx context.Context, opts FirestoreOptions) (*Firestore, error) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return nil, errors.New("gcloud not found: install the Google Cloud CLI with its Firestore emulator (Debian: apt-get install google-cloud-cli google-cloud-cli-firestore-emulator)")
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	opts.Dir = abs
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	f := &Firestore{opts: opts, gcloud: gcloud, emuHost: fmt.Sprintf("127.0.0.1:%d", port),
		log: filepath.Join(abs, fmt.Sprintf("firestore-%d.log", port))}
	f.host = f.emuHost
	if opts.Restartable {
		if f.relay, err = relay.Listen(f.emuHost); err != nil {
			return nil, err
		}
		f.relay.Cut() // until the emulator answers
		f.host = f.relay.Addr()
	}
	if err := f.Start(ctx); err != nil {
		f.Close()
		return nil, err
	}
	opts.Logf.printf("firestore emulator on %s", f.host)
	return f, nil
}

// Host is the emulator's host:port for FIRESTORE_EMULATOR_HOST, the same
// after a restart.
func (f *Firestore) Host() string { return f.host }

// Start starts the emulator, with the documents of the last Stop when
// Restartable, and lets clients reach it.
func (f *Firestore) Start(ctx context.Context) error {
	if f.proc != nil && !f.proc.Exited() {
		return errors.New("the emulator is running")
	}
	logFile, err := os.OpenFile(f.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"emulators", "firestore", "start", "--host-port=" + f.emuHost, "--quiet"}
	if f.export != "" {
		args = append(args, "--import-data="+f.export)
	}
	cmd := exec.Command(f.gcloud, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: killing the gcloud wrapper alone would leave
	// the emulator's Java process running.
	if f.proc, err = procgroup.Start(cmd); err != nil {
		return fmt.Errorf("start the firestore emulator: %w", err)
	}
	client := http.Client{Timeout: time.Second}
	if err := wait.Until(ctx, 60*time.Second, func() bool {
		if f.proc.Exited() {
			return false
		}
		resp, err := client.Get("http://" + f.emuHost + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		if strings.Contains(readFile(f.log), "not installed") {
			return errors.New("the Firestore emulator component is not installed (gcloud components install cloud-firestore-emulator, or Debian: apt-get install google-cloud-cli-firestore-emulator)")
		}
		return fmt.Errorf("the firestore emulator did not become ready (log: %s): %w", f.log, err)
	}
	if f.relay != nil {
		f.relay.Restore()
	}
	return nil
}

// Stop makes the emulator unreachable, and when Restartable exports its
// documents first, then shuts it down. It fails when the export did not
// happen: a restart would then lose documents.
func (f *Firestore) Stop(ctx context.Context) error {
	if f.proc == nil || f.proc.Exited() {
		return errors.New("the emulator is not running")
	}
	if f.relay != nil {
		f.relay.Cut()
		// gcloud's --export-on-exit fails in this emulator ("Database name
		// projects/p/databases/ has invalid trailing /"): the export is
		// asked for through the emulator's API instead.
		file, err := f.exportData(ctx)
		if err != nil {
			return err
		}
		f.export = file
	}
	f.stopProcess()
	return nil
}

func (f *Firestore) exportData(ctx context.Context) (string, error) {
	f.exports++
	dir := filepath.Join(f.opts.Dir, fmt.Sprintf("firestore-export-%d", f.exports))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	body, _ := json.Marshal(map[string]string{
		"database":         "projects/" + f.opts.Project + "/databases/(default)",
		"export_directory": dir,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+f.emuHost+"/emulator/v1/projects/"+f.opts.Project+":export", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("export the emulator's documents: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("export the emulator's documents: %s: %s", resp.Status, msg)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.overall_export_metadata"))
	if len(files) != 1 {
		return "", fmt.Errorf("export the emulator's documents: want one .overall_export_metadata file in %s, found %d", dir, len(files))
	}
	return files[0], nil
}

func (f *Firestore) stopProcess() {
	c := http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Post("http://"+f.emuHost+"/shutdown", "text/plain", nil); err == nil {
		resp.Body.Close()
	}
	f.proc.Stop(syscall.SIGTERM, 5*time.Second)
}

// Close stops the emulator (without export) and its relay.
func (f *Firestore) Close() {
	if f.relay != nil {
		f.relay.Close()
	}
	if f.proc != nil && !f.proc.Exited() {
		f.stopProcess()
	}
}
