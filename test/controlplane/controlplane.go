//go:build unix

// Package controlplane runs a real local Kubernetes control plane (etcd,
// kube-apiserver and, on request, kube-controller-manager, kube-scheduler and
// kwok as the fake kubelet) from binaries built by `make controlplane`. Tests,
// benchmarks and `stowage demo` all start the cluster through this one helper.
//
// Every process dies with the caller: children run in their own process group
// with a parent-death signal, and Stop kills the groups and removes the
// temporary directory. A crashed run's leftover directories are swept on the
// next Start.
package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Binary names expected in Options.BinDir.
const (
	BinEtcd              = "etcd"
	BinAPIServer         = "kube-apiserver"
	BinControllerManager = "kube-controller-manager"
	BinScheduler         = "kube-scheduler"
	BinKwok              = "kwok"
)

// EnvBinDir overrides the default binary directory.
const EnvBinDir = "STOWAGE_CONTROLPLANE_BIN"

// KwokNodeAnnotation marks the Nodes kwok manages (acts as their kubelet for).
const (
	KwokNodeAnnotation      = "kwok.x-k8s.io/node"
	KwokNodeAnnotationValue = "fake"
)

const (
	modulePath   = "github.com/stowage-k8s/stowage"
	tempPrefix   = "stowage-controlplane-"
	ownerPIDFile = "owner.pid"
	stopGrace    = 10 * time.Second
	readyTimeout = 2 * time.Minute
)

// Options selects what to run.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kwok. Default: $STOWAGE_CONTROLPLANE_BIN, else
	// <module root>/bin/controlplane.
	BinDir string
	// ControllerManager, Scheduler and Kwok choose the components run besides
	// etcd and kube-apiserver. Pods only run when all three are on.
	ControllerManager, Scheduler, Kwok bool
	// CRDs installs every CustomResourceDefinition in pkg/apis/crds and waits
	// until they are established.
	CRDs bool
	// Log receives the components' output, each line prefixed with the
	// component name. Default: one file per component in the temporary
	// directory, whose tails StartT prints when the test fails.
	Log io.Writer
}

// ControlPlane is a running local cluster.
type ControlPlane struct {
	// Config authenticates as an admin (group system:masters).
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file for Config, for kubectl and the
	// other components. It lives until Stop.
	KubeconfigPath string
	// Scheme knows client-go's types, apiextensions, stowage.dev/v1 and
	// autoscaling.x-k8s.io/v1 ProvisioningRequests.
	Scheme *kruntime.Scheme
	// Client is an uncached client for Config and Scheme.
	Client client.Client
	// Dir is the temporary directory holding data, certificates and logs.
	Dir string

	env      *envtest.Environment
	children []*child
	logs     []string   // log file paths, empty when Options.Log was set
	files    []*os.File // open log files, closed by Stop

	stopOnce sync.Once
	stopErr  error
}

// MissingBinariesError says `make controlplane` has not been run.
type MissingBinariesError struct {
	Dir   string
	Names []string
}

func (e *MissingBinariesError) Error() string {
	return fmt.Sprintf("control plane binaries missing from %s: %s: run `make controlplane`",
		e.Dir, strings.Join(e.Names, ", "))
}

// NewScheme returns the scheme ControlPlane.Client uses.
func NewScheme() (*kruntime.Scheme, error) {
	s := kruntime.NewScheme()
	for _, add := range []func(*kruntime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1.AddToScheme, provreqv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building scheme: %w", err)
		}
	}
	return s, nil
}

// StartT starts a control plane for a test and stops it in t.Cleanup. When
// the test fails, the components' log tails are printed first. A missing
// binary fails the test with instructions to run `make controlplane`.
func StartT(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout+time.Minute)
	defer cancel()
	cp, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting local control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs (last lines):\n%s", cp.logTails(40))
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping local control plane: %v", err)
		}
	})
	return cp
}

// Start brings up the control plane and waits until each requested component
// does its job. ctx bounds the start-up only; call Stop to end the cluster.
// Progress is printed to stderr.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, retErr error) {
	began := time.Now()
	binDir, err := resolveBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	if err := checkBinaries(binDir, opts); err != nil {
		return nil, err
	}
	sweepStaleDirs()

	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating control plane directory: %w", err)
	}
	cp := &ControlPlane{Dir: dir}
	defer func() {
		if retErr != nil {
			tails := cp.logTails(30)
			if err := cp.Stop(); err != nil {
				retErr = errors.Join(retErr, err)
			}
			if tails != "" {
				retErr = fmt.Errorf("%w\ncomponent logs (last lines):\n%s", retErr, tails)
			}
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerPIDFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", ownerPIDFile, err)
	}
	logOut := func(name string) (io.Writer, error) { return cp.componentLog(opts.Log, name) }

	if cp.Scheme, err = NewScheme(); err != nil {
		return nil, err
	}

	progress("starting etcd and kube-apiserver from %s", binDir)
	etcdPath, apiPath, err := wrapForPdeathsig(dir, binDir)
	if err != nil {
		return nil, err
	}
	etcdLog, err := logOut(BinEtcd)
	if err != nil {
		return nil, err
	}
	apiLog, err := logOut(BinAPIServer)
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			Etcd: &envtest.Etcd{Path: etcdPath, DataDir: filepath.Join(dir, "etcd"), Out: etcdLog, Err: etcdLog},
			APIServer: &envtest.APIServer{
				Path: apiPath, CertDir: filepath.Join(dir, "pki"), Out: apiLog, Err: apiLog,
			},
		},
		Scheme:                   cp.Scheme,
		UseExistingCluster:       ptr.To(false),
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if opts.CRDs {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		env.CRDDirectoryPaths = []string{filepath.Join(root, "pkg", "apis", "crds")}
		env.ErrorIfCRDPathMissing = true
	}
	for _, d := range []string{env.ControlPlane.Etcd.DataDir, env.ControlPlane.APIServer.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if _, err := env.Start(); err != nil {
		// envtest may have started etcd before the apiserver failed.
		_ = env.Stop()
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	cp.env = env

	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}},
		&rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		return nil, fmt.Errorf("creating admin user: %w", err)
	}
	cp.Config = admin.Config()
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("rendering kubeconfig: %w", err)
	}
	cp.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.KubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	if cp.Client, err = client.New(cp.Config, client.Options{Scheme: cp.Scheme}); err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	progress("kube-apiserver ready at %s (%s)", cp.Config.Host, time.Since(began).Round(100*time.Millisecond))

	type component struct {
		on   bool
		name string
		args []string
	}
	kc := "--kubeconfig=" + cp.KubeconfigPath
	components := []component{
		{opts.ControllerManager, BinControllerManager, []string{
			kc, "--leader-elect=false", "--secure-port=0", "--authentication-skip-lookup=true",
			// Tokens need a signing key the test cluster does not have.
			"--controllers=*,-serviceaccount-token",
		}},
		{opts.Scheduler, BinScheduler, []string{
			kc, "--leader-elect=false", "--secure-port=0", "--authentication-skip-lookup=true",
		}},
	}
	if opts.Kwok {
		stages, err := writeKwokStages(binDir, dir)
		if err != nil {
			return nil, err
		}
		components = append(components, component{true, BinKwok, []string{
			kc, "--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=" + KwokNodeAnnotationValue,
			"--server-address=127.0.0.1:0", "--config=" + stages,
		}})
	}
	for _, c := range components {
		if !c.on {
			continue
		}
		out, err := logOut(c.name)
		if err != nil {
			return nil, err
		}
		ch, err := startChild(c.name, filepath.Join(binDir, c.name), c.args, out)
		if err != nil {
			return nil, err
		}
		cp.children = append(cp.children, ch)
	}

	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := cp.waitReady(readyCtx, opts); err != nil {
		return nil, err
	}
	progress("control plane ready in %s (kubeconfig %s)", time.Since(began).Round(100*time.Millisecond), cp.KubeconfigPath)
	return cp, nil
}

// Stop ends every component, waits for them to exit and removes the
// temporary directory. It is safe to call more than once.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		// Reverse start order: clients of the apiserver go first.
		for i := len(c.children) - 1; i >= 0; i-- {
			if err := c.children[i].stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if c.env != nil {
			if err := c.env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
			}
		}
		if c.Dir != "" {
			if pids := killStragglers(c.Dir); len(pids) > 0 {
				progress("killed processes %v that outlived Stop", pids)
			}
		}
		for _, f := range c.files {
			_ = f.Close()
		}
		if c.Dir != "" {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", c.Dir, err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// PIDs returns the process IDs of the components started as direct children
// (kube-controller-manager, kube-scheduler, kwok).
func (c *ControlPlane) PIDs() map[string]int {
	out := map[string]int{}
	for _, ch := range c.children {
		out[ch.name] = ch.cmd.Process.Pid
	}
	return out
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[controlplane] "+format+"\n", args...)
}

// componentLog returns where a component writes: the shared writer with a
// name prefix, or its own file in the temporary directory.
func (c *ControlPlane) componentLog(shared io.Writer, name string) (io.Writer, error) {
	if shared != nil {
		return &prefixWriter{prefix: []byte(name + ": "), w: shared}, nil
	}
	path := filepath.Join(c.Dir, name+".log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating log for %s: %w", name, err)
	}
	// Passed as an *os.File, the file becomes the child's stdout directly, so
	// no goroutine copies output and late lines are never lost.
	c.logs = append(c.logs, path)
	c.files = append(c.files, f)
	return f, nil
}

// logTails returns the last n lines of each component's log file.
func (c *ControlPlane) logTails(n int) string {
	var b strings.Builder
	for _, path := range c.logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(path), strings.Join(lines, "\n"))
	}
	return b.String()
}

// prefixWriter prefixes each line with the component name. Writers share the
// underlying writer, so writes are serialised.
type prefixWriter struct {
	prefix []byte
	w      io.Writer
	buf    []byte
}

var sharedLogMu sync.Mutex

func (p *prefixWriter) Write(b []byte) (int, error) {
	sharedLogMu.Lock()
	defer sharedLogMu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := append(append([]byte{}, p.prefix...), p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
		if _, err := p.w.Write(line); err != nil {
			return len(b), err
		}
	}
	return len(b), nil
}

func resolveBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(EnvBinDir)
	}
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", fmt.Errorf("finding the control plane binaries (set %s or Options.BinDir): %w", EnvBinDir, err)
		}
		dir = filepath.Join(root, "bin", "controlplane")
	}
	return filepath.Abs(dir)
}

func checkBinaries(dir string, opts Options) error {
	names := []string{BinEtcd, BinAPIServer}
	if opts.ControllerManager {
		names = append(names, BinControllerManager)
	}
	if opts.Scheduler {
		names = append(names, BinScheduler)
	}
	if opts.Kwok {
		names = append(names, BinKwok)
	}
	var missing []string
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return &MissingBinariesError{Dir: dir, Names: missing}
	}
	return nil
}

// moduleRoot finds the Stowage module: from the working directory upwards
// (tests run in their package directory), else from this file's location.
func moduleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("module "+modulePath+"\n")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no go.mod for module %s above the working directory", modulePath)
}

// wrapForPdeathsig writes tiny launchers for etcd and kube-apiserver, which
// envtest starts itself and so cannot be given a parent-death signal
// directly. Without setpriv the real binaries are used as they are.
func wrapForPdeathsig(dir, binDir string) (etcd, apiserver string, err error) {
	etcd, apiserver = filepath.Join(binDir, BinEtcd), filepath.Join(binDir, BinAPIServer)
	prefix := pdeathsigWrapper()
	if len(prefix) == 0 {
		return etcd, apiserver, nil
	}
	wrapDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(wrapDir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating %s: %w", wrapDir, err)
	}
	wrap := func(real string) (string, error) {
		path := filepath.Join(wrapDir, filepath.Base(real))
		script := "#!/bin/sh\nexec " + shellQuote(append(prefix, real)) + ` "$@"` + "\n"
		if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
			return "", fmt.Errorf("writing launcher %s: %w", path, err)
		}
		return path, nil
	}
	if etcd, err = wrap(etcd); err != nil {
		return "", "", err
	}
	if apiserver, err = wrap(apiserver); err != nil {
		return "", "", err
	}
	return etcd, apiserver, nil
}

func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

var lookPath = exec.LookPath

// sweepStaleDirs removes temporary directories left by runs whose process is
// gone (a crashed test cannot run Stop).
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, ownerPIDFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}
