package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
)

// readPassword prompts on a terminal (without echo), or reads one line from
// standard input for scripts.
func readPassword(fromStdin bool) (string, error) {
	if !fromStdin && term.IsTerminal(int(os.Stdin.Fd())) {
		fmt.Fprint(os.Stderr, "password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

// hashPassword makes the argon2id hash on the user's side: the plaintext never
// leaves this process.
func hashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return mailbox.Hash(pw, salt), nil
}

func cmdMail(e *env) *cobra.Command {
	c := &cobra.Command{Use: "mail", Short: "Mailboxes of an IMVU"}
	var (
		ident    string
		withPass bool
		stdin    bool
		sg       signing
	)
	add := &cobra.Command{
		Use:   "add ADDRESS --key OWNER_KEY [--identity PUBKEY] [--password [--password-stdin]]",
		Short: "Create a mailbox bound to an identity of the IMVU (the owner's by default)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, domain, err := mailbox.SplitAddress(args[0])
			if err != nil {
				return err
			}
			imvu, err := e.owningIMVU(cmd, domain)
			if err != nil {
				return err
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			p := mailbox.AddParams{Address: args[0], Identity: identity.PublicOf(k)}
			if ident != "" {
				if p.Identity, err = readPublic(ident); err != nil {
					return fmt.Errorf("--identity: %w", err)
				}
			}
			if withPass || stdin {
				pw, err := readPassword(stdin)
				if err != nil {
					return err
				}
				if p.Password, err = hashPassword(pw); err != nil {
					return err
				}
			}
			return e.submit(cmd, &sg, k, mailbox.KindAdd, imvu, p)
		},
	}
	add.Flags().StringVar(&ident, "identity", "", "the mailbox user's public key or key file (a member of the IMVU)")
	add.Flags().BoolVar(&withPass, "password", false, "set a password now (prompted)")
	add.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from standard input")
	sg.flags(add)

	var (
		pstdin bool
		psg    signing
	)
	passwd := &cobra.Command{
		Use:   "passwd ADDRESS --key KEY [--password-stdin]",
		Short: "Set a mailbox's password (hashed with argon2id here; the owner's or the mailbox user's key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, domain, err := mailbox.SplitAddress(args[0])
			if err != nil {
				return err
			}
			pw, err := readPassword(pstdin)
			if err != nil {
				return err
			}
			h, err := hashPassword(pw)
			if err != nil {
				return err
			}
			return e.submitFor(cmd, &psg, domain, mailbox.KindPasswd, mailbox.PasswdParams{Address: args[0], Password: h})
		},
	}
	passwd.Flags().BoolVar(&pstdin, "password-stdin", false, "read the password from standard input")
	psg.flags(passwd)

	ls := &cobra.Command{
		Use:   "ls IMVU --key KEY",
		Short: "List an IMVU's mailboxes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var m struct {
				Resources struct {
					Mail mailbox.Mail `json:"mail"`
				} `json:"resources"`
			}
			if err := e.query(cmd, api.QueryIMVU, args[0], nil, &m); err != nil {
				return err
			}
			mail := m.Resources.Mail
			return e.print(mail, func(w io.Writer) {
				rows := [][]string{{"ADDRESS", "IDENTITY", "LOGIN"}}
				for _, a := range mail.Addresses() {
					b := mail.Boxes[a]
					login := "no password yet"
					if b.Password != "" {
						login = "password set"
					}
					rows = append(rows, []string{a, b.Identity.String(), login})
				}
				printLines(w, rows)
			})
		},
	}

	var (
		selector string
		rsg      signing
	)
	rotate := &cobra.Command{
		Use:   "rotate DOMAIN --selector S --key OWNER_KEY",
		Short: "Make a new DKIM selector active: the node makes its keys, the owner signs their public halves, the zone publishes them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			imvu, err := e.owningIMVU(cmd, args[0])
			if err != nil {
				return err
			}
			var keys mailbox.DKIM
			if err := e.query(cmd, mailbox.QueryKeys, imvu, mailbox.KeysParams{Domain: args[0], Selector: selector}, &keys); err != nil {
				return err
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &rsg, k, mailbox.KindRotate, imvu, mailbox.RotateParams{Domain: args[0], Selector: selector, Ed25519: keys.Ed25519, RSA: keys.RSA})
		},
	}
	rotate.Flags().StringVar(&selector, "selector", "", "the new selector, e.g. s2")
	rsg.flags(rotate)
	dkim := &cobra.Command{Use: "dkim", Short: "DKIM keys of mail domains"}
	dkim.AddCommand(rotate)
	c.AddCommand(add, passwd, ls, dkim)
	return c
}
