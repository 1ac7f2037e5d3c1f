// Command csi-registrar registers a CSI driver with kubelet: the part of a
// CSI node plugin that kubelet's plugin watcher talks to. It serves kubelet's
// plugin-registration API (k8s.io/kubelet/pkg/apis/pluginregistration/v1) on
// <plugin-registration-dir>/<driver-name>-reg.sock; kubelet finds the socket,
// asks GetInfo for the driver's name and CSI endpoint, then reports the
// outcome through NotifyRegistrationStatus. A failed registration makes the
// registrar exit non-zero, so that its pod restarts and registers again.
//
// It stands in for the upstream csi-node-driver-registrar in the bpfman
// DaemonSet that bpfman-operator deploys (the container named
// node-driver-registrar, args --v=5 --csi-address=/csi/csi.sock
// --kubelet-registration-path=/var/lib/kubelet/plugins/csi-bpfman/csi.sock).
// Unlike upstream it does not ask the CSI driver for its name: --driver-name
// says it (csi.bpfman.io by default).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// supportedVersions are the CSI spec versions announced to kubelet.
var supportedVersions = []string{"1.0.0"}

type config struct {
	driverName              string
	csiAddress              string
	kubeletRegistrationPath string
	registrationDir         string
	csiWait                 time.Duration
	verbosity               int
	version                 bool
}

// parseFlags reads the command line; with flag.ExitOnError, -h prints the
// help and exits 0, and an unknown flag exits 2.
func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	var c config
	fs.StringVar(&c.driverName, "driver-name", "csi.bpfman.io",
		"name of the CSI driver, as kubelet and CSIDriver objects know it; also names the registration socket")
	fs.StringVar(&c.csiAddress, "csi-address", "/csi/csi.sock",
		"the CSI driver's socket as this process sees it; registration waits until it exists (\"\": do not wait)")
	fs.DurationVar(&c.csiWait, "csi-wait-timeout", 0,
		"give up (exit 1) if --csi-address does not exist after this long (0: wait forever)")
	fs.StringVar(&c.kubeletRegistrationPath, "kubelet-registration-path", "/var/lib/kubelet/plugins/csi-bpfman/csi.sock",
		"the CSI driver's socket as kubelet (the host) sees it: the endpoint GetInfo returns")
	fs.StringVar(&c.registrationDir, "plugin-registration-dir", "/registration",
		"directory kubelet's plugin watcher scans (the host's /var/lib/kubelet/plugins_registry mounted here); the registration socket <driver-name>-reg.sock is created in it")
	fs.IntVar(&c.verbosity, "v", 0,
		"log verbosity, accepted for the upstream registrar's arguments; 5 or more also logs every request in full")
	fs.BoolVar(&c.version, "version", false, "print the version and the kubelet API it serves, then exit")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s [flags]\n\n", fs.Name())
		fmt.Fprintf(out, "Registers a CSI driver with kubelet through the plugin-registration API (pluginregistration.k8s.io/v1):\n")
		fmt.Fprintf(out, "serves <plugin-registration-dir>/<driver-name>-reg.sock, answers GetInfo with type %s,\n", registerapi.CSIPlugin)
		fmt.Fprintf(out, "name <driver-name>, endpoint <kubelet-registration-path>, versions %s, and exits 1 if kubelet\n", strings.Join(supportedVersions, ","))
		fmt.Fprintf(out, "reports a failed registration. SIGTERM or SIGINT removes the socket and exits 0.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.driverName == "" || strings.ContainsRune(c.driverName, '/') {
		return c, fmt.Errorf("--driver-name %q: want a non-empty name without '/'", c.driverName)
	}
	if c.kubeletRegistrationPath == "" {
		return c, errors.New("--kubelet-registration-path is empty")
	}
	return c, nil
}

// socketPath is where kubelet's plugin watcher looks for the driver.
func (c config) socketPath() string {
	return filepath.Join(c.registrationDir, c.driverName+"-reg.sock")
}

// registrar answers kubelet's plugin watcher.
type registrar struct {
	registerapi.UnimplementedRegistrationServer
	info      *registerapi.PluginInfo
	verbosity int
	// failed receives kubelet's error when it reports a failed registration.
	failed chan string
}

func newRegistrar(c config) *registrar {
	return &registrar{
		info: &registerapi.PluginInfo{
			Type:              registerapi.CSIPlugin,
			Name:              c.driverName,
			Endpoint:          c.kubeletRegistrationPath,
			SupportedVersions: supportedVersions,
		},
		verbosity: c.verbosity,
		failed:    make(chan string, 1),
	}
}

func (r *registrar) GetInfo(_ context.Context, req *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	log.Printf("GetInfo: %s plugin %s at %s, versions %v", r.info.Type, r.info.Name, r.info.Endpoint, r.info.SupportedVersions)
	if r.verbosity >= 5 {
		log.Printf("GetInfo request %v", req)
	}
	return r.info, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.PluginRegistered {
		log.Printf("kubelet registered %s", r.info.Name)
	} else {
		log.Printf("kubelet failed to register %s: %s", r.info.Name, st.Error)
		msg := st.Error
		if msg == "" {
			msg = "no error given"
		}
		select {
		case r.failed <- msg:
		default: // already failing
		}
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// waitForSocket returns once path is a socket, or with an error when ctx is
// done or timeout (if non-zero) has passed.
func waitForSocket(ctx context.Context, path string, timeout time.Duration) error {
	start := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Time{}
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		if timeout > 0 && time.Since(start) >= timeout {
			return fmt.Errorf("CSI socket %s: not there after %s", path, timeout)
		}
		if time.Since(lastLog) >= 30*time.Second {
			log.Printf("waiting for the CSI socket %s", path)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// removeSocket removes a socket left by an earlier run; anything else at
// that path is an error rather than something to delete.
func removeSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket (%s)", path, fi.Mode())
	}
	return os.Remove(path)
}

// serve listens on sock and answers kubelet until ctx is done (nil) or
// kubelet reports a failed registration (an error). The socket is removed
// in both cases. ready, if not nil, is closed once the socket accepts.
func serve(ctx context.Context, sock string, r *registrar, ready chan<- struct{}) error {
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return err
	}
	if err := removeSocket(sock); err != nil {
		return fmt.Errorf("stale registration socket: %w", err)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, r)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Printf("serving the registration of %s on %s", r.info.Name, sock)
	if ready != nil {
		close(ready)
	}
	var result error
	select {
	case <-ctx.Done():
		log.Printf("stopping: %v", context.Cause(ctx))
	case msg := <-r.failed:
		result = fmt.Errorf("kubelet failed to register %s: %s", r.info.Name, msg)
	case err := <-served:
		return fmt.Errorf("serving %s: %w", sock, err)
	}
	// GracefulStop lets a NotifyRegistrationStatus in progress reply; the
	// timeout covers a client that never lets go.
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-served
	return result
}

// version is the kubelet module the API comes from, per the build info.
func version() string {
	v := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/kubelet" {
				v = d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
			}
		}
	}
	return fmt.Sprintf("csi-registrar: kubelet plugin registration API pluginregistration.k8s.io/v1 from k8s.io/kubelet %s; CSI versions %s",
		v, strings.Join(supportedVersions, ","))
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(filepath.Base(os.Args[0]), flag.ExitOnError)
	c, err := parseFlags(fs, args)
	if err != nil {
		fs.Usage()
		return err
	}
	if c.version {
		fmt.Fprintln(stdout, version())
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if c.csiAddress != "" {
		if err := waitForSocket(ctx, c.csiAddress, c.csiWait); err != nil {
			if ctx.Err() != nil {
				return nil // signalled while waiting: nothing to clean up
			}
			return err
		}
		log.Printf("CSI socket %s is there", c.csiAddress)
	}
	return serve(ctx, c.socketPath(), newRegistrar(c), nil)
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	if err := run(os.Args[1:], os.Stdout); err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}
