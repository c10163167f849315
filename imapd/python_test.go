package imapd

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

const pyScript = `
import imaplib, os, ssl, sys
host, port = "127.0.0.1", int(os.environ["IMAP_PORT"])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
M = imaplib.IMAP4(host, port)
try:
    M.login("alice", "secret")
    print("FAIL plaintext login accepted"); sys.exit(1)
except imaplib.IMAP4.error as e:
    assert "TLS" in str(e) or "PRIVACYREQUIRED" in str(e), e
M.starttls(ssl_context=ctx)
typ, _ = M.login("alice", "secret"); assert typ == "OK"
typ, boxes = M.list(); assert typ == "OK" and any(b"INBOX" in b for b in boxes), boxes
typ, data = M.select("INBOX"); assert typ == "OK" and data[0] == b"3", data
typ, data = M.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[HEADER])")
assert typ == "OK", data
hdrs = [d[1] for d in data if isinstance(d, tuple)]
assert len(hdrs) == 3 and b"Subject: hello 2" in hdrs[1], hdrs
typ, data = M.search(None, "SUBJECT", "hello 3"); assert data == [b"3"], data
typ, data = M.store("1", "+FLAGS", "(\\Seen)"); assert typ == "OK" and b"\\Seen" in data[0], data
typ, data = M.search(None, "SEEN"); assert data == [b"1"], data
typ, _ = M.create("Archive"); assert typ == "OK"
typ, _ = M.copy("1", "Archive"); assert typ == "OK"
typ, data = M.uid("MOVE", "2", "Archive"); assert typ == "OK", data
typ, _ = M.store("1", "+FLAGS", "(\\Deleted)")
typ, data = M.expunge(); assert typ == "OK" and data[-1] == b"1", data  # imaplib also keeps the MOVE EXPUNGE
typ, data = M.append("Archive", "(\\Seen)", None, b"Subject: appended\r\n\r\nhi\r\n"); assert typ == "OK", data
typ, data = M.status("Archive", "(MESSAGES)"); assert b"MESSAGES 3" in data[0], data
typ, data = M.select("../bob"); assert typ == "NO", data
try:
    typ, data = M.append("../bob", None, None, b"Subject: x\r\n\r\nx\r\n")
    assert typ == "NO", data
except imaplib.IMAP4.error:
    pass
M.logout()
print("PYTHON-OK")
`

func TestPythonImaplib(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		testenv.Missing(t, "%s", "no /usr/bin/python3")
	}
	e := newEnv(t, false)
	deliver(t, e.mailbox(t, "alice"), 3)
	e.mailbox(t, "bob")
	_, port, _ := strings.Cut(e.srv.Addr(), ":")
	cmd := exec.Command(py, "-c", pyScript)
	cmd.Env = append(os.Environ(), "IMAP_PORT="+port)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PYTHON-OK") {
		t.Fatalf("python imaplib: %v\n%s", err, out)
	}
}
