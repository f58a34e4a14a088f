// Package mototest starts (or finds) a moto_server on loopback for the AWS
// contract tests and builds real SDK clients pointed at it.
package mototest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// EnvEndpoint names a moto_server CI already runs.
const EnvEndpoint = "STOWAGE_MOTO_ENDPOINT"

// Region is the region every contract test uses.
const Region = "us-east-1"

// Server is a running moto_server.
type Server struct {
	Endpoint string
	// Log is moto's output when this process started it.
	Log string
	cmd *exec.Cmd
}

// Start returns the server named by STOWAGE_MOTO_ENDPOINT, or starts
// moto_server on a free loopback port. A missing moto_server is an error, not
// a skip: these tests are the provider's contract.
func Start() (*Server, error) {
	if ep := os.Getenv(EnvEndpoint); ep != "" {
		return &Server{Endpoint: ep}, waitReady(ep, 30*time.Second)
	}
	return StartPrivate()
}

// StartPrivate always starts a moto_server of this process's own, for tests
// that change server-wide settings such as IAM enforcement.
func StartPrivate() (*Server, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not found (install moto[server] 5.x or set %s): %w", EnvEndpoint, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// moto logs every request and stack trace; keep that out of test output.
	logFile, err := os.CreateTemp("", "stowage-moto-*.log")
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, Log: logFile.Name()}
	if err := waitReady(s.Endpoint, 60*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Stop ends a moto_server this process started.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls moto's health endpoint. Start-up time is not asserted;
// the deadline only bounds a broken install.
func waitReady(endpoint string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("moto_server at %s not reachable: %w", endpoint, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Config is an SDK config for the server with static test credentials.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:           Region,
		Credentials:      credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint:     aws.String(s.Endpoint),
		RetryMaxAttempts: 1,
		// A new connection per request: with one attempt, a keep-alive
		// connection moto closed just as it was reused failed the call
		// ("use of closed network connection") under load.
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

// EC2 is a real EC2 client talking to moto.
func (s *Server) EC2() *ec2.Client { return ec2.NewFromConfig(s.Config()) }

// IAM is a real IAM client talking to moto.
func (s *Server) IAM() *iam.Client { return iam.NewFromConfig(s.Config()) }

// SQS is a real SQS client talking to moto.
func (s *Server) SQS() *sqs.Client { return sqs.NewFromConfig(s.Config()) }

// CABundle is base64 of a freshly made self-signed PEM certificate: a cluster
// CA as `aws eks describe-cluster` prints it, for join settings in tests.
func CABundle() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// SSM is a real SSM client talking to moto.
func (s *Server) SSM() *ssm.Client { return ssm.NewFromConfig(s.Config()) }

// EnforceIAM makes the server check every later request against the
// caller's IAM policies (moto checks actions; it ignores Resource and most
// Condition keys). Only for a server from StartPrivate.
func (s *Server) EnforceIAM() error {
	if s.cmd == nil {
		return fmt.Errorf("IAM enforcement is server-wide: use StartPrivate, not the shared server at %s", s.Endpoint)
	}
	resp, err := http.Post(s.Endpoint+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil {
		return fmt.Errorf("enabling IAM enforcement: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("enabling IAM enforcement: %s", resp.Status)
	}
	return nil
}

// ConfigFor is an SDK config for the server with the given credentials.
func (s *Server) ConfigFor(accessKey, secret string) aws.Config {
	c := s.Config()
	c.Credentials = credentials.NewStaticCredentialsProvider(accessKey, secret, "")
	return c
}
