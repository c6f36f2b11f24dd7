package upstream

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A stdio upstream is code the proxy did not write (an npm or PyPI
// package) running next to a process that holds the database URL and the
// encryption key of every tenant. What keeps it from them:
//
//   - its environment is StdioEnv's, not the proxy's;
//   - the proxy makes itself non-dumpable before it starts the first
//     one: the kernel then lets no other process without CAP_SYS_PTRACE
//     read its /proc environ, maps, mem or fds, attach to it, or use
//     process_vm_readv on it, even one of the same user;
//   - when the proxy runs as root (which has CAP_SYS_PTRACE, and would
//     pass it on), its stdio upstreams run as another user (nobody,
//     65534, by default) without capabilities, in a home folder of their
//     own; and none starts while that user could read one of the
//     proxy's secret files.
//
// When the proxy does not run as root, its stdio upstreams run as its
// own user and can read the files it reads its secrets from; the pool
// says so in the log once. What holds in each case, and what no process
// boundary in the container stops (the metadata server), is in the
// docs/configuration.md, "Stdio upstreams and the proxy's secrets".

// DefaultStdioID is the user and group ID stdio upstreams run as when
// the proxy runs as root: nobody and nogroup on Debian and Ubuntu.
const DefaultStdioID = 65534

// isolation starts stdio upstreams apart from the proxy's secrets. Its
// zero value is not usable; newIsolation makes one.
type isolation struct {
	asOther     bool // the proxy is root: children run as uid:gid
	uid, gid    uint32
	secretFiles []string
	log         *slog.Logger

	once sync.Once
	home string // the children's HOME and TMPDIR when asOther
	err  error  // why no stdio upstream may start
}

func newIsolation(opts PoolOptions, log *slog.Logger) *isolation {
	iso := &isolation{asOther: os.Geteuid() == 0, uid: DefaultStdioID, gid: DefaultStdioID,
		secretFiles: opts.SecretFiles, log: log}
	if opts.StdioUID > 0 {
		iso.uid = uint32(opts.StdioUID)
	}
	if opts.StdioGID > 0 {
		iso.gid = uint32(opts.StdioGID)
	}
	return iso
}

// defaultIsolation serves the stdio upstreams started without a pool
// (Transport, Connect, Discover); its home folder lasts as long as the
// process.
var defaultIsolation = sync.OnceValue(func() *isolation {
	return newIsolation(PoolOptions{}, slog.New(slog.DiscardHandler))
})

// prepare runs once, before the first stdio upstream starts; its error
// is returned for every one.
func (iso *isolation) prepare() error {
	iso.once.Do(func() {
		// Dumpability belongs to the whole process (its memory map),
		// not to the calling thread, and only exec resets it.
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			iso.err = fmt.Errorf("stdio upstreams disabled: make the proxy non-dumpable: %w", err)
			return
		}
		if !iso.asOther {
			if len(iso.secretFiles) > 0 {
				iso.log.Warn("stdio upstreams run as the proxy's own user and can read the files it reads its secrets from: run only trusted stdio servers (docs/configuration.md: stdio upstreams and the proxy's secrets)",
					"uid", os.Geteuid(), "secretFiles", iso.secretFiles)
			}
			return
		}
		for _, f := range iso.secretFiles {
			readable, err := readableBy(f, iso.uid, iso.gid)
			if err != nil {
				iso.err = fmt.Errorf("stdio upstreams disabled: %w", err)
				return
			}
			if readable {
				iso.err = fmt.Errorf("stdio upstreams disabled: the secret file %s is readable by uid %d, which they run as (make it readable by its owner only)", f, iso.uid)
				return
			}
		}
		home, err := os.MkdirTemp("", "mcp-stdio-home-")
		if err == nil {
			err = os.Chown(home, int(iso.uid), int(iso.gid))
		}
		if err != nil {
			iso.err = fmt.Errorf("stdio upstreams disabled: their home folder: %w", err)
			return
		}
		iso.home = home
	})
	return iso.err
}

// apply makes cmd run as the stdio user, when the proxy is root.
func (iso *isolation) apply(cmd *exec.Cmd) {
	if !iso.asOther {
		return
	}
	// An empty Groups drops the proxy's supplementary groups. Leaving
	// root for another user clears every capability, and exec gives
	// none back (no ambient ones are set).
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: iso.uid, Gid: iso.gid, Groups: []uint32{}}
	// npx and uvx keep caches under HOME; the proxy's may not be
	// writable, or even searchable, by the stdio user. The config's own
	// HOME, if any, comes later in Env and wins.
	cmd.Env = append([]string{"HOME=" + iso.home, "TMPDIR=" + iso.home}, cmd.Env...)
	cmd.Dir = iso.home
}

// startError explains a stdio upstream that could not be started as the
// stdio user: exec fails with EACCES when the command, or a folder above
// it (a checkout under /root, say), is closed to that user.
func (iso *isolation) startError(command string, err error) error {
	if !iso.asOther || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return fmt.Errorf("command %s cannot be run by uid %d, which stdio upstreams run as when the proxy is root: it, or a folder above it, is closed to that user: %w",
		quoteName(command), iso.uid, err)
}

// close removes the children's home folder; they have ended.
func (iso *isolation) close() {
	if iso.home != "" {
		os.RemoveAll(iso.home)
	}
}

// readableBy reports whether uid:gid, without supplementary groups, may
// read path, by the mode bits of the file and of every folder above it.
// ACLs are not looked at (neither Secret Manager volumes nor the usual
// secret files carry any); symbolic links are followed.
func readableBy(path string, uid, gid uint32) (bool, error) {
	real, err := filepath.EvalSymlinks(path)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return false, fmt.Errorf("secret file: %w", err)
	}
	need := uint32(4) // read, for the file; search, for the folders
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return false, fmt.Errorf("secret file: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false, errors.New("secret file " + p + ": no owner to check")
		}
		perm := uint32(fi.Mode().Perm())
		switch {
		case st.Uid == uid:
			perm >>= 6
		case st.Gid == gid:
			perm >>= 3
		}
		if perm&need == 0 {
			return false, nil
		}
		if p == "/" {
			return true, nil
		}
		need = 1
	}
}
