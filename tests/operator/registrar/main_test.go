package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

func testConfig(t *testing.T, args ...string) config {
	t.Helper()
	fs := flag.NewFlagSet("csi-registrar", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := parseFlags(fs, args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start serves c's registration socket until the test ends; the returned
// channel yields serve's result.
func start(t *testing.T, ctx context.Context, c config) (registerapi.RegistrationClient, <-chan error) {
	t.Helper()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c.socketPath(), newRegistrar(c), ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start")
	}
	conn, err := grpc.NewClient("unix://"+c.socketPath(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registerapi.NewRegistrationClient(conn), done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
		return nil
	}
}

func TestDefaults(t *testing.T) {
	c := testConfig(t)
	if c.socketPath() != "/registration/csi.bpfman.io-reg.sock" {
		t.Errorf("socket %s", c.socketPath())
	}
	if c.kubeletRegistrationPath != "/var/lib/kubelet/plugins/csi-bpfman/csi.sock" || c.csiAddress != "/csi/csi.sock" {
		t.Errorf("defaults %+v", c)
	}
	// The arguments bpfman-operator's DaemonSet gives the registrar container.
	c = testConfig(t, "--v=5", "--csi-address=/csi/csi.sock", "--kubelet-registration-path=/var/lib/kubelet/plugins/csi-bpfman/csi.sock")
	if c.verbosity != 5 {
		t.Errorf("verbosity %d", c.verbosity)
	}
	fs := flag.NewFlagSet("csi-registrar", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseFlags(fs, []string{"--driver-name=a/b"}); err == nil {
		t.Error("a driver name with '/' accepted")
	}
}

func TestRegistration(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, "--plugin-registration-dir="+dir, "--driver-name=csi.example.io",
		"--kubelet-registration-path=/var/lib/kubelet/plugins/example/csi.sock")
	// A socket left by an earlier run is replaced.
	stale, err := net.Listen("unix", c.socketPath())
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, done := start(t, ctx, c)

	info, err := client.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != registerapi.CSIPlugin || info.Name != "csi.example.io" ||
		info.Endpoint != "/var/lib/kubelet/plugins/example/csi.sock" || !slices.Equal(info.SupportedVersions, []string{"1.0.0"}) {
		t.Errorf("GetInfo: %v", info)
	}
	if _, err := client.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	// Still serving after a successful registration.
	if _, err := client.GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		t.Fatal(err)
	}

	cancel() // what SIGTERM does
	if err := result(t, done); err != nil {
		t.Errorf("stopped with %v", err)
	}
	if _, err := os.Stat(c.socketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestFailedRegistrationStops(t *testing.T) {
	c := testConfig(t, "--plugin-registration-dir="+t.TempDir())
	client, done := start(t, context.Background(), c)
	if _, err := client.NotifyRegistrationStatus(context.Background(),
		&registerapi.RegistrationStatus{PluginRegistered: false, Error: "version mismatch"}); err != nil {
		t.Fatal(err)
	}
	err := result(t, done)
	if err == nil || !strings.Contains(err.Error(), "version mismatch") {
		t.Errorf("serve returned %v", err)
	}
	if _, err := os.Stat(c.socketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestRefusesToRemoveAFile(t *testing.T) {
	c := testConfig(t, "--plugin-registration-dir="+t.TempDir())
	if err := os.WriteFile(c.socketPath(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := serve(context.Background(), c.socketPath(), newRegistrar(c), nil); err == nil {
		t.Error("served over a regular file")
	}
}

func TestWaitForSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "csi.sock")
	if err := waitForSocket(context.Background(), path, 600*time.Millisecond); err == nil {
		t.Fatal("no error for a missing socket")
	}
	listening := make(chan net.Listener, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Error(err)
		}
		listening <- l
	}()
	if err := waitForSocket(context.Background(), path, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if l := <-listening; l != nil {
		l.Close()
	}
}
