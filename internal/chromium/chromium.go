// Package chromium drives Debian's headless Chromium (/usr/bin/chromium,
// installed by scripts/ensure-tools.sh) through the DevTools protocol,
// for the tests that go through the OAuth consent page as a user does.
package chromium

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is where Debian's chromium package puts the browser.
const Path = "/usr/bin/chromium"

// Browser is one headless Chromium process, ended when the test ends.
type Browser struct {
	ctx context.Context
}

// Start starts Chromium; the test fails when it is not installed.
func Start(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Fatalf("headless Chromium is missing (%v): make tools installs Debian's chromium package", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(Path),
		chromedp.NoSandbox, // tests run as root in containers, where the sandbox cannot start
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(900, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return &Browser{ctx: ctx}
}

// Consent opens an authorization URL, pastes key into the consent page
// and allows the client; it returns the URL the browser was sent back
// to. When screenshot is not "", the filled page is saved there as PNG
// before it is submitted.
func (b *Browser) Consent(authURL, key, screenshot string) (string, error) {
	ctx, cancel := chromedp.NewContext(b.ctx) // a tab of its own
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 30*time.Second)
	defer cancelTimeout()
	err := chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("api_key")),
		chromedp.SendKeys(chromedp.ID("api_key"), key),
	)
	if err != nil {
		return "", fmt.Errorf("consent page at %s: %w", authURL, err)
	}
	return allow(ctx, screenshot)
}

// ConsentSignIn opens an authorization URL, signs in through the
// consent page's OpenID Connect provider (a login form with #username
// and #password, as zitadel/oidc's example provider shows), picks the
// first instance offered and allows the client; it returns the URL the
// browser was sent back to.
func (b *Browser) ConsentSignIn(authURL, username, password, screenshot string) (string, error) {
	ctx, cancel := chromedp.NewContext(b.ctx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 30*time.Second)
	defer cancelTimeout()
	err := chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
	)
	if err != nil {
		return "", fmt.Errorf("consent page at %s: %w", authURL, err)
	}
	if err := waitFor(ctx, `#username`); err != nil {
		return "", fmt.Errorf("provider's login page: %w", err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	)
	if err != nil {
		return "", fmt.Errorf("sign in at the provider: %w", err)
	}
	// Back on the consent page: the instance picker, or an error.
	if err := waitFor(ctx, `input[name=instance]`); err != nil {
		return "", fmt.Errorf("instance picker: %w", err)
	}
	return allow(ctx, screenshot)
}

// allow takes a screenshot of the consent page into the file screenshot
// (none for ""), allows the client, and returns the URL the browser was
// sent back to.
func allow(ctx context.Context, screenshot string) (string, error) {
	if screenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			return "", fmt.Errorf("screenshot: %w", err)
		}
		if err := os.WriteFile(screenshot, png, 0o644); err != nil {
			return "", err
		}
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value=allow]`))); err != nil {
		return "", fmt.Errorf("allow: %w", err)
	}
	return waitLeft(ctx)
}

// waitLeft waits until the tab leaves the consent page for the client's
// redirect URI, and returns that URL.
func waitLeft(ctx context.Context) (string, error) {
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			return "", fmt.Errorf("after allowing: %w", err)
		}
		if !strings.Contains(loc, "/oauth/") && loc != "about:blank" {
			return loc, nil
		}
		errText, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('[role=alert]')||{}).textContent||''`))
		if errText != "" {
			return "", fmt.Errorf("the consent page refused: %s", errText)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor waits until the tab shows an element matching the CSS
// selector, or a page's alert (an error the consent page shows).
func waitFor(ctx context.Context, selector string) error {
	for {
		found, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector(`+strconv.Quote(selector)+`)`))
		if found {
			return nil
		}
		errText, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('[role=alert]')||{}).textContent||''`))
		if errText != "" {
			return fmt.Errorf("the page says: %s", errText)
		}
		if ctx.Err() != nil {
			loc, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
			text, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 300) : ''`))
			return fmt.Errorf("no %s at %s (%q): %w", selector, loc, text, ctx.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
