package envfile

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type config struct {
	URL   string `env:"ENVFILE_TEST_URL"`
	Key   string `env:"ENVFILE_TEST_KEY, default=none"`
	Level string `env:"ENVFILE_TEST_LEVEL, default=INFO"`
}

func TestProcess(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	if err := os.WriteFile(urlFile, []byte("postgres://from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		env       map[string]string
		want      config
		wantFiles []string
		wantErr   string
	}{
		{name: "values", env: map[string]string{"ENVFILE_TEST_URL": "postgres://from-env", "ENVFILE_TEST_KEY": "k"},
			want: config{URL: "postgres://from-env", Key: "k", Level: "INFO"}},
		{name: "file", env: map[string]string{"ENVFILE_TEST_URL_FILE": urlFile},
			want: config{URL: "postgres://from-the-file", Key: "none", Level: "INFO"}, wantFiles: []string{urlFile}},
		{name: "empty value and a file", env: map[string]string{"ENVFILE_TEST_URL": "", "ENVFILE_TEST_URL_FILE": urlFile},
			want: config{URL: "postgres://from-the-file", Key: "none", Level: "INFO"}, wantFiles: []string{urlFile}},
		{name: "both", env: map[string]string{"ENVFILE_TEST_URL": "x", "ENVFILE_TEST_URL_FILE": urlFile},
			wantErr: "both ENVFILE_TEST_URL and ENVFILE_TEST_URL_FILE"},
		{name: "missing file", env: map[string]string{"ENVFILE_TEST_KEY_FILE": filepath.Join(dir, "nope")},
			wantErr: "ENVFILE_TEST_KEY_FILE: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"ENVFILE_TEST_URL", "ENVFILE_TEST_KEY", "ENVFILE_TEST_URL_FILE", "ENVFILE_TEST_KEY_FILE"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c config
			files, err := Process(context.Background(), &c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c != tc.want {
				t.Errorf("got %+v; want %+v", c, tc.want)
			}
			if !slices.Equal(files, tc.wantFiles) {
				t.Errorf("files = %v; want %v", files, tc.wantFiles)
			}
		})
	}
}
