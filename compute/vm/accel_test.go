package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAccel(t *testing.T) {
	tests := []struct {
		name     string
		files    []string // created under the fake root
		want     string
		inReason string
	}{
		{"no kvm device", nil, "tcg", "no /dev/kvm"},
		{"real kvm", []string{"dev/kvm"}, "kvm", "usable"},
		{"nested pvm", []string{"dev/kvm", "sys/module/kvm_pvm/"}, "tcg", "kvm_pvm"},
		{"pvm module without device", []string{"sys/module/kvm_pvm/"}, "tcg", "kvm_pvm"},
		{"kvm module only", []string{"dev/kvm", "sys/module/kvm/", "sys/module/kvm_intel/"}, "kvm", "usable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				if f[len(f)-1] == '/' {
					if err := os.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := detectAccel(root)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tt.want || !strings.Contains(got.Reason, tt.inReason) {
				t.Errorf("detectAccel = %+v, want %s with a reason mentioning %q", got, tt.want, tt.inReason)
			}
		})
	}
}

// TestAccelHost checks the real host answers, and on a kvm_pvm host (as the
// development machines are) that it picks tcg.
func TestAccelHost(t *testing.T) {
	a, err := Accel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("this host: %s (%s)", a.Name, a.Reason)
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil && a.Name != "tcg" {
		t.Errorf("kvm_pvm is loaded but Accel chose %s", a.Name)
	}
}

func ExampleAccel() {
	a, err := Accel()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("VMs run with -accel %s: %s\n", a.Name, a.Reason)
}
