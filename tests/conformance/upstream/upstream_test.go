// The upstream Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance)
// run through its own options API, with one change: the base manifests.
//
// The suite's Setup applies base/manifests.yaml and waits until every Gateway
// in it is Accepted and Programmed. Those Gateways have only HTTP and HTTPS
// listeners, which an L4-only implementation never programs, so Setup would
// wait until it times out (gateway-api#2403). The suite skips that readiness
// check for a Gateway annotated gateway-api/skip-this-for-readiness: "true".
// TestConformance therefore applies a copy of upstream's file in which each
// Gateway without a TCP or UDP listener carries that annotation. The copy is
// derived when the test starts from the file the conformance module embeds
// in this binary, so it always matches the module version in go.mod; nothing
// is copied by hand. Flags, profiles, skips and reports are the suite's own.
//
// Build: tests/deps/cluster.sh (`make deps-cluster`) runs `go test -c`.
// TestBaseManifestsForL4 and TestListUpstreamTests need no cluster.
package upstream_test

import (
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
	"sigs.k8s.io/gateway-api/pkg/consts"
	"sigs.k8s.io/yaml"
)

const (
	// upstreamBaseManifests is the suite's default BaseManifests.
	upstreamBaseManifests = "base/manifests.yaml"
	// l4BaseManifests serves the annotated copy. It must not reuse the
	// upstream path: the suite concatenates same-named files across all of
	// its ManifestFS entries, so both copies would be applied.
	l4BaseManifests = "blixt-l4/manifests.yaml"
)

// The Gateways that upstream v1.6.1's base manifests define, none with a TCP
// or UDP listener. A release that changes them fails TestBaseManifestsForL4.
var wantAnnotated = []string{
	"gateway-conformance-infra/same-namespace",
	"gateway-conformance-infra/same-namespace-with-https-listener",
	"gateway-conformance-infra/all-namespaces",
	"gateway-conformance-infra/backend-namespaces",
}

func TestConformance(t *testing.T) {
	derived, _, err := baseManifestsForL4()
	if err != nil {
		t.Fatalf("deriving the L4 base manifests: %v", err)
	}
	opts := conformance.DefaultOptions(t)
	opts.BaseManifests = l4BaseManifests
	overlay := fstest.MapFS{l4BaseManifests: &fstest.MapFile{Data: derived, Mode: 0o444}}
	opts.ManifestFS = append([]fs.FS{overlay}, opts.ManifestFS...)
	conformance.RunConformanceWithOptions(t, opts)
}

// TestBaseManifestsForL4 checks the derivation against the module this binary
// was built from and logs the annotated Gateways (run with -test.v).
func TestBaseManifestsForL4(t *testing.T) {
	upstream, err := fs.ReadFile(conformance.Manifests, upstreamBaseManifests)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(splitDocuments(string(upstream)), ""); got != string(upstream) {
		t.Fatal("splitting the upstream file into documents does not give it back unchanged")
	}
	derived, annotated, err := baseManifestsForL4()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(annotated, wantAnnotated) {
		t.Fatalf("annotated Gateways %v, want %v: upstream's base manifests changed, check them again", annotated, wantAnnotated)
	}
	if n, m := len(splitDocuments(string(derived))), len(splitDocuments(string(upstream))); n != m {
		t.Fatalf("derived file has %d documents, upstream %d", n, m)
	}
	for _, g := range annotated {
		t.Logf("annotated %s with %s: \"true\"", g, kubernetes.GatewayExcludedFromReadinessChecks)
	}
}

// TestListUpstreamTests prints the Gateway API release this binary was built
// with (the suite requires the installed CRDs' bundle-version to equal it),
// then one line per conformance test: the names that the suite's -run-test
// and -skip-tests flags take.
func TestListUpstreamTests(t *testing.T) {
	fmt.Printf("gateway-api-bundle-version %s\n", consts.BundleVersion)
	lines := make([]string, 0, len(tests.ConformanceTests))
	for _, ct := range tests.ConformanceTests {
		features := make([]string, 0, len(ct.Features))
		for _, f := range ct.Features {
			features = append(features, string(f))
		}
		lines = append(lines, fmt.Sprintf("upstream-test %s provisional=%t features=%s",
			ct.ShortName, ct.Provisional, strings.Join(features, ",")))
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}

// baseManifestsForL4 returns upstream's base manifests with every Gateway
// that has no TCP or UDP listener annotated to be skipped by the suite's
// readiness check, and the namespace/name of each Gateway it annotated.
// Every other document is passed through byte for byte.
func baseManifestsForL4() ([]byte, []string, error) {
	upstream, err := fs.ReadFile(conformance.Manifests, upstreamBaseManifests)
	if err != nil {
		return nil, nil, err
	}
	var out strings.Builder
	var annotated []string
	for i, doc := range splitDocuments(string(upstream)) {
		var m manifest
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i, err)
		}
		if m.Kind != "Gateway" || m.hasL4Listener() {
			out.WriteString(doc)
			continue
		}
		name := m.Metadata.Namespace + "/" + m.Metadata.Name
		changed, err := annotate(doc, m)
		if err != nil {
			return nil, nil, fmt.Errorf("Gateway %s: %w", name, err)
		}
		if err := sameButAnnotation(doc, changed); err != nil {
			return nil, nil, fmt.Errorf("Gateway %s: %w", name, err)
		}
		out.WriteString(changed)
		annotated = append(annotated, name)
	}
	return []byte(out.String()), annotated, nil
}

type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Listeners []struct {
			Protocol string `json:"protocol"`
		} `json:"listeners"`
	} `json:"spec"`
}

func (m manifest) hasL4Listener() bool {
	for _, l := range m.Spec.Listeners {
		if l.Protocol == "TCP" || l.Protocol == "UDP" {
			return true
		}
	}
	return false
}

// splitDocuments cuts a multi-document YAML file before each "---" line; the
// pieces concatenate back to the input.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimRight(line, " \r\n") == "---" && cur.Len() > 0 {
			docs = append(docs, cur.String())
			cur.Reset()
		}
		cur.WriteString(line)
	}
	if cur.Len() > 0 {
		docs = append(docs, cur.String())
	}
	return docs
}

// annotate inserts the annotation as the first key under the document's
// top-level "metadata:", indented like the key that follows it. Text is
// edited rather than re-serialized so that the rest of the document,
// including the suite's "{GATEWAY_CLASS_NAME}" placeholder, stays as it is.
func annotate(doc string, m manifest) (string, error) {
	if len(m.Metadata.Annotations) > 0 {
		return "", fmt.Errorf("already has annotations %v; extend annotate() to merge", m.Metadata.Annotations)
	}
	lines := strings.SplitAfter(doc, "\n")
	for i, line := range lines {
		if strings.TrimRight(line, " \r\n") != "metadata:" || i+1 >= len(lines) {
			continue
		}
		next := lines[i+1]
		indent := next[:len(next)-len(strings.TrimLeft(next, " "))]
		if indent == "" {
			return "", fmt.Errorf("cannot tell the indentation under metadata")
		}
		insert := fmt.Sprintf("%sannotations:\n%s%s%s: \"true\"\n",
			indent, indent, indent, kubernetes.GatewayExcludedFromReadinessChecks)
		return strings.Join(lines[:i+1], "") + insert + strings.Join(lines[i+1:], ""), nil
	}
	return "", fmt.Errorf("no top-level metadata: line")
}

// sameButAnnotation checks that changed parses to the original document plus
// exactly the readiness annotation.
func sameButAnnotation(orig, changed string) error {
	var a, b map[string]any
	if err := yaml.Unmarshal([]byte(orig), &a); err != nil {
		return err
	}
	if err := yaml.Unmarshal([]byte(changed), &b); err != nil {
		return fmt.Errorf("annotated document does not parse: %w", err)
	}
	meta, _ := b["metadata"].(map[string]any)
	want := map[string]any{kubernetes.GatewayExcludedFromReadinessChecks: "true"}
	if !reflect.DeepEqual(meta["annotations"], want) {
		return fmt.Errorf("annotations after editing are %v, want %v", meta["annotations"], want)
	}
	delete(meta, "annotations")
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("editing changed more than the annotations")
	}
	return nil
}
