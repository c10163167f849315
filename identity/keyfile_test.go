package identity_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/identity"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestGenerate(t *testing.T) {
	a, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != ed25519.PrivateKeySize {
		t.Fatalf("key is %d bytes", len(a))
	}
	if a.Equal(b) || identity.PublicOf(a) == identity.PublicOf(b) {
		t.Fatal("two generated keys are equal")
	}
	if pa := identity.PublicOf(a); !bytes.Equal(pa[:], a.Public().(ed25519.PublicKey)) {
		t.Fatal("PublicOf disagrees with crypto/ed25519")
	}
}

func TestWriteReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.key")
	key := seededKey(7)
	if err := identity.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", perm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("key file is not a PKCS#8 PEM:\n%s", raw)
	}
	got, err := identity.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) {
		t.Fatal("read key differs from the written key")
	}

	// It refuses to replace a key, and leaves the old one intact.
	if err := identity.WriteKeyFile(path, seededKey(8)); err == nil {
		t.Fatal("WriteKeyFile overwrote an existing key")
	} else if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite error %v is not fs.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(after, raw) {
		t.Fatalf("refused overwrite changed the file (%v)", err)
	}

	// Nor any other existing file, nor through a directory that is missing.
	other := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(other, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKeyFile(other, key); err == nil {
		t.Fatal("WriteKeyFile replaced an existing file")
	}
	if b, _ := os.ReadFile(other); string(b) != "keep me" {
		t.Fatalf("existing file changed to %q", b)
	}
	if err := identity.WriteKeyFile(filepath.Join(dir, "no", "such", "k.key"), key); err == nil {
		t.Fatal("WriteKeyFile succeeded in a missing directory")
	}
	// A symlink to a missing file is an existing name: not followed, not replaced.
	link := filepath.Join(dir, "link.key")
	target := filepath.Join(dir, "target.key")
	if err := os.Symlink(target, link); err != nil {
		testenv.Missing(t, "symlink: %v", err)
	}
	if err := identity.WriteKeyFile(link, key); err == nil {
		t.Fatal("WriteKeyFile wrote through a dangling symlink")
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("symlink target was created (%v)", err)
	}
}

func TestReadKeyFilePermissions(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root reads anything, but the mode check is ours, not the kernel's, so
		// the test is still meaningful.
		t.Log("running as root")
	}
	cases := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o700, true},
		{0o644, false},
		{0o640, false},
		{0o604, false},
		{0o620, false},
		{0o602, false},
		{0o660, false},
		{0o666, false},
	}
	for _, tc := range cases {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.key")
			if err := identity.WriteKeyFile(path, seededKey(7)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			k, err := identity.ReadKeyFile(path)
			if tc.ok {
				if err != nil || !k.Equal(seededKey(7)) {
					t.Fatalf("ReadKeyFile at %#o: %v", tc.mode, err)
				}
				return
			}
			errContains(t, err, "too open")
			if k != nil {
				t.Fatal("refused ReadKeyFile returned a key")
			}
		})
	}
	_, err := identity.ReadKeyFile(filepath.Join(t.TempDir(), "missing.key"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseKey(t *testing.T) {
	key := seededKey(7)
	edDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}

	good := pemBlock("PRIVATE KEY", edDER)
	k, err := identity.ParseKey(good)
	if err != nil || !k.Equal(key) {
		t.Fatalf("ParseKey(good) = %v", err)
	}
	// Text around the block (as openssl and editors leave it) is tolerated.
	k, err = identity.ParseKey(append([]byte("comment\n"), append(good, "\n\n"...)...))
	if err != nil || !k.Equal(key) {
		t.Fatalf("ParseKey(with surrounding text) = %v", err)
	}

	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, `not a PEM "PRIVATE KEY" block`},
		{"not PEM", []byte("hello"), `not a PEM "PRIVATE KEY" block`},
		{"raw DER", edDER, `not a PEM "PRIVATE KEY" block`},
		{"public key block", pemBlock("PUBLIC KEY", pubDER), `not a PEM "PRIVATE KEY" block`},
		{"PKCS#1 RSA block", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), `not a PEM "PRIVATE KEY" block`},
		{"encrypted block", pemBlock("ENCRYPTED PRIVATE KEY", edDER), `not a PEM "PRIVATE KEY" block`},
		{"RSA PKCS#8", pemBlock("PRIVATE KEY", rsaDER), "*rsa.PrivateKey is not an Ed25519 key"},
		{"ECDSA PKCS#8", pemBlock("PRIVATE KEY", ecDER), "*ecdsa.PrivateKey is not an Ed25519 key"},
		{"garbage DER", pemBlock("PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01}), "parse key:"},
		{"truncated DER", pemBlock("PRIVATE KEY", edDER[:len(edDER)-1]), "parse key:"},
		{"public DER as private", pemBlock("PRIVATE KEY", pubDER), "parse key:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := identity.ParseKey(tc.in)
			errContains(t, err, tc.want)
			if k != nil {
				t.Fatal("refused ParseKey returned a key")
			}
		})
	}

	// ReadKeyFile passes the parse error on.
	path := filepath.Join(t.TempDir(), "rsa.key")
	if err := os.WriteFile(path, pemBlock("PRIVATE KEY", rsaDER), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = identity.ReadKeyFile(path)
	errContains(t, err, "not an Ed25519 key")
}

// needOpenssl returns the openssl binary, or skips (fails under
// NEXUS_REQUIRE_ALL=1) when there is none.
func needOpenssl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		testenv.Missing(t, "openssl is not available (%v)", err)
	}
	return p
}

// opensslPublic returns the raw public key of the private key file at path, as
// openssl computes it.
func opensslPublic(t *testing.T, openssl, path string) []byte {
	t.Helper()
	out, err := exec.Command(openssl, "pkey", "-in", path, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl pkey: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(out)
	if err != nil {
		t.Fatalf("parse openssl public key: %v", err)
	}
	ep, ok := pub.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("openssl public key is %T", pub)
	}
	return ep
}

func TestReadOpensslKey(t *testing.T) {
	openssl := needOpenssl(t)
	path := filepath.Join(t.TempDir(), "openssl.key")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", path).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	// openssl may create the file with the umask's mode; a key file must be 0600.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := identity.ReadKeyFile(path)
	if err != nil {
		t.Fatalf("ReadKeyFile(openssl key): %v", err)
	}
	want := opensslPublic(t, openssl, path)
	if got := identity.PublicOf(key); !bytes.Equal(got[:], want) {
		t.Fatalf("public key %x, openssl says %x", got, want)
	}
	// And the key works.
	sig, err := identity.Sign(key, identity.ContextAction, []byte("m"))
	if err != nil || !identity.Verify(identity.PublicOf(key), identity.ContextAction, []byte("m"), sig) {
		t.Fatalf("openssl key does not sign: %v", err)
	}
}

func TestOpensslReadsWrittenKey(t *testing.T) {
	openssl := needOpenssl(t)
	path := filepath.Join(t.TempDir(), "nexus.key")
	key := seededKey(7)
	if err := identity.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	want := identity.PublicOf(key)
	if got := opensslPublic(t, openssl, path); !bytes.Equal(got, want[:]) {
		t.Fatalf("openssl reads public key %x, want %x", got, want)
	}
	out, err := exec.Command(openssl, "pkey", "-in", path, "-noout", "-text").Output()
	if err != nil {
		t.Fatalf("openssl pkey -text: %v", err)
	}
	if !strings.Contains(string(out), "ED25519 Private-Key") {
		t.Fatalf("openssl does not see an Ed25519 key:\n%s", out)
	}
}
