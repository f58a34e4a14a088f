package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// run executes the stowage command tree with args and returns its stdout and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errOut, err := runWithStderr(args...)
	if err != nil && errOut != "" {
		t.Errorf("stowage %s printed to stderr besides returning %v (main prints errors): %s", strings.Join(args, " "), err, errOut)
	}
	return out, err
}

func runWithStderr(args ...string) (stdout, stderr string, err error) {
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestSubcommandsRegistered(t *testing.T) {
	var got []string
	for _, c := range newRootCommand().Commands() {
		got = append(got, c.Name())
	}
	for _, want := range []string{"catalog", "simulate", "version"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("subcommand %q is not registered; have %v", want, got)
		}
	}
}

func TestUsageErrorsNameTheFlag(t *testing.T) {
	for _, env := range gcpProjectEnv {
		t.Setenv(env, "") // the gcp case needs the project unset
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"simulate", "--nope"}, "unknown flag: --nope"},
		{[]string{"simulate"}, "-f/--filename: required"},
		{[]string{"simulate", "-f", "x", "-o", "yaml"}, `-o/--output: want table or json, got "yaml"`},
		{[]string{"catalog", "--catalog", "aws"}, `--catalog: want cloud/region such as aws/us-east-1, got "aws"`},
		{[]string{"catalog", "--catalog", "aws/us-east-1", "--cloud", "aws"}, "--catalog: use either --catalog or --cloud and --region, not both"},
		{[]string{"catalog", "--cloud", "aws"}, "--region: required with --cloud"},
		{[]string{"catalog", "--region", "us-east-1"}, "--cloud: required with --region"},
		{[]string{"catalog", "--cloud", "ibm", "--region", "x"}, `--cloud: unknown cloud "ibm": want one of aws, azure, gcp`},
		{[]string{"catalog", "--catalog", "gcp/us-central1", "--endpoint", "http://127.0.0.1:1"}, "--endpoint: a live GCP catalog needs the project"},
		{[]string{"catalog", "--catalog", "aws/mars-1"}, `unknown catalog "aws/mars-1"`},
		{[]string{"version", "extra"}, `unknown command "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := run(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	oldVersion, oldCommit := version, commit
	t.Cleanup(func() { version, commit = oldVersion, oldCommit })
	version, commit = "v1.2.3", "abc123"
	out, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("stowage v1.2.3 (commit abc123,", strings.SplitAfter(out, ",")[0]); diff != "" {
		t.Errorf("version output (-want +got):\n%s", diff)
	}
}
