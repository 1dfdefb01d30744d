package health

// The samples must be what the operator writes, or the mapping tests prove nothing. These tests
// hold them to the CRDs' schema (crds/crds.yaml), to the operator's reasons
// (crates/ispcert/src/controller/reasons.rs) and to the rules its status code follows: settle.rs
// for certificates, issuer.rs for issuers.

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	crdsFile    = "../../crds/crds.yaml"
	reasonsFile = "../../crates/ispcert/src/controller/reasons.rs"
)

// Samples that show objects as an operator from before the Stalled condition left them.
var olderOperator = map[string]bool{"certificate-older-operator.yaml": true}

func TestSamplesFitTheCRDs(t *testing.T) {
	schemas := crdSchemas(t)
	for _, name := range sampleFiles(t) {
		obj := load(t, name)
		if obj.GetAPIVersion() != "ispcert.dev/v1alpha1" {
			t.Errorf("%s: apiVersion %q", name, obj.GetAPIVersion())
			continue
		}
		schema, ok := schemas[obj.GetKind()]
		if !ok {
			t.Errorf("%s: kind %q has no CRD", name, obj.GetKind())
			continue
		}
		body := map[string]any{}
		for k, v := range obj.Object {
			if k != "apiVersion" && k != "kind" && k != "metadata" {
				body[k] = v
			}
		}
		for _, p := range conform("", body, schema) {
			t.Errorf("%s: %s", name, p)
		}
		if obj.GetName() == "" || obj.GetUID() == "" || obj.GetGeneration() < 1 || obj.GetCreationTimestamp().Time.IsZero() {
			t.Errorf("%s: metadata needs name, uid, generation and creationTimestamp, as the API server returns them", name)
		}
		if (obj.GetNamespace() == "") != (obj.GetKind() == "ClusterIspIssuer") {
			t.Errorf("%s: namespace %q for a %s", name, obj.GetNamespace(), obj.GetKind())
		}
	}
}

func TestSamplesUseTheOperatorsReasons(t *testing.T) {
	src, err := os.ReadFile(reasonsFile)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`pub const [A-Z_]+: &str = "([A-Za-z]+)";`).FindAllStringSubmatch(string(src), -1) {
		known[m[1]] = true
	}
	if !known["Ready"] || !known["Stalled"] || !known["Pending"] {
		t.Fatalf("read no reasons from %s: has its layout changed?", reasonsFile)
	}
	for _, name := range sampleFiles(t) {
		for _, c := range conditionsOf(t, name) {
			if !known[c.Type] || !known[c.Reason] {
				t.Errorf("%s: condition %s with reason %s: not among the operator's words", name, c.Type, c.Reason)
			}
		}
	}
}

func TestCertificateSamplesFollowSettle(t *testing.T) {
	readyReasons := []string{"Issued", "SecretWritten", "SecretRestored", "RenewalScheduled"}
	for _, name := range sampleFiles(t) {
		obj := load(t, name)
		if obj.GetKind() != "IspCertificate" || obj.Object["status"] == nil {
			continue
		}
		fail := func(format string, args ...any) { t.Errorf(name+": "+format, args...) }
		status := obj.Object["status"].(map[string]any)
		conds := byType(conditionsOf(t, name))
		if len(conds) == 0 {
			// Only the order intent, written before the first order: no settle has run yet.
			if _, ok := status["orderAttempt"]; !ok || status["observedGeneration"] != nil {
				fail("a status without conditions only holds an order attempt")
			}
			continue
		}
		observed, _ := status["observedGeneration"].(int64)
		if observed < 1 || observed > obj.GetGeneration() {
			fail("status.observedGeneration %d for generation %d", observed, obj.GetGeneration())
		}
		types := []string{"Ready", "Issuing", "Stalled"}
		if olderOperator[name] {
			types = types[:2]
		}
		if got := sortedKeys(conds); !slices.Equal(got, sorted(types)) {
			fail("conditions %v, want %v", got, types)
			continue
		}
		ready, issuing, stalled := conds["Ready"], conds["Issuing"], conds["Stalled"]
		if obj.GetDeletionTimestamp() != nil {
			// cleanup.rs writes Ready alone, for the generation deletion made; the rest is older.
			if ready.Generation != obj.GetGeneration() || observed != obj.GetGeneration() || ready.Status != "False" {
				fail("a blocked deletion marks Ready False for generation %d", obj.GetGeneration())
			}
			continue
		}
		for _, c := range conds {
			if c.Generation != observed {
				fail("%s has observedGeneration %d, the status %d: settle writes them together", c.Type, c.Generation, observed)
			}
		}
		if stalled == nil {
			stalled = &condition{Status: "False"}
		} else if stalled.Reason != issuing.Reason || (stalled.Status == "True") != (ready.Status == "False" && issuing.Status == "False") {
			fail("Stalled must be True exactly when neither Ready nor Issuing is, with the stop's reason")
		}
		if (issuing.Message == "") != (issuing.Status == "False") || (stalled.Message == "") != (stalled.Status == "False") {
			fail("Issuing and Stalled carry a message exactly when True")
		}
		switch ready.Status {
		case "True":
			if !slices.Contains(readyReasons, ready.Reason) || ready.Message == "" || status["notAfter"] == nil {
				fail("a Ready certificate has a Ready reason, a message and a notAfter")
			}
		case "False":
			if ready.Reason != issuing.Reason || (ready.Message != issuing.Message && issuing.Status == "True") {
				fail("a certificate that is not Ready says why under Ready and Issuing alike")
			}
		}
		// A success clears failedAttempts but keeps the time of the last failure.
		if status["failedAttempts"] != nil && status["lastFailureTime"] == nil {
			fail("failedAttempts comes with lastFailureTime")
		}
	}
}

func TestIssuerSamplesFollowTheIssuerReconcile(t *testing.T) {
	transient := []string{"BillingUnreachable", "BillingError", "KubernetesError"}
	for _, name := range sampleFiles(t) {
		obj := load(t, name)
		if !strings.HasSuffix(obj.GetKind(), "IspIssuer") || obj.Object["status"] == nil {
			continue
		}
		fail := func(format string, args ...any) { t.Errorf(name+": "+format, args...) }
		status := obj.Object["status"].(map[string]any)
		conds := byType(conditionsOf(t, name))
		if got := sortedKeys(conds); !slices.Equal(got, []string{"Ready", "Stalled"}) {
			fail("conditions %v, want Ready and Stalled", got)
			continue
		}
		ready, stalled := conds["Ready"], conds["Stalled"]
		observed, _ := status["observedGeneration"].(int64)
		if ready.Generation != observed || stalled.Generation != observed || observed > obj.GetGeneration() {
			fail("the conditions and the status speak of one generation, at most the object's")
		}
		if ready.Reason != stalled.Reason || status["lastCheckTime"] == nil {
			fail("Ready and Stalled carry the check's reason; lastCheckTime is set")
		}
		wantStalled := ready.Status == "False" && !slices.Contains(transient, ready.Reason)
		if (stalled.Status == "True") != wantStalled || (stalled.Message == "") != !wantStalled {
			fail("Stalled is True, with Ready's message, exactly for a refusal")
		}
		if ready.Status == "True" && ready.Reason != "CredentialsVerified" {
			fail("a Ready issuer's reason is CredentialsVerified")
		}
	}
}

// condition is what the tests read of a status condition.
type condition struct {
	Type, Status, Reason, Message string
	Generation                    int64
}

// conditionsOf reads a sample's conditions, checking that each has what the operator writes.
func conditionsOf(t *testing.T, name string) []*condition {
	t.Helper()
	list, _, err := unstructured.NestedSlice(load(t, name).Object, "status", "conditions")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []*condition
	for _, item := range list {
		m := item.(map[string]any)
		c := &condition{}
		c.Type, _ = m["type"].(string)
		c.Status, _ = m["status"].(string)
		c.Reason, _ = m["reason"].(string)
		c.Message, _ = m["message"].(string)
		c.Generation, _ = m["observedGeneration"].(int64)
		if c.Generation == 0 || m["lastTransitionTime"] == nil || (c.Status != "True" && c.Status != "False") {
			t.Errorf("%s: condition %s: the operator writes True or False, observedGeneration and lastTransitionTime", name, c.Type)
		}
		if len(c.Message) > 1000 {
			t.Errorf("%s: condition %s: the operator clips messages at 1000 bytes", name, c.Type)
		}
		out = append(out, c)
	}
	return out
}

func byType(list []*condition) map[string]*condition {
	m := map[string]*condition{}
	for _, c := range list {
		m[c.Type] = c
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// crdSchemas reads the openAPIV3Schema of each kind's v1alpha1 from crds/crds.yaml.
func crdSchemas(t *testing.T) map[string]map[string]any {
	t.Helper()
	data, err := os.ReadFile(crdsFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var crd struct {
			Spec struct {
				Names    struct{ Kind string }
				Versions []struct {
					Name   string
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &crd); err != nil {
			t.Fatalf("%s: %v", crdsFile, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Name == "v1alpha1" {
				out[crd.Spec.Names.Kind] = v.Schema.OpenAPIV3Schema
			}
		}
	}
	if len(out) != 3 {
		t.Fatalf("%s: found schemas for %v, want the three kinds", crdsFile, sortedKeys(out))
	}
	return out
}

// conform lists where v breaks the structural schema s: unknown fields, wrong types, missing
// required fields, values outside an enum, timestamps that are not RFC 3339. CEL rules are the
// API server's business and are not checked.
func conform(path string, v any, s map[string]any) []string {
	if v == nil {
		if s["nullable"] == true {
			return nil
		}
		return []string{path + ": null where the schema allows none"}
	}
	var problems []string
	bad := func(format string, args ...any) []string {
		return append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return bad("%v is not one of %v", v, enum)
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("want an object")
		}
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		for _, k := range sortedKeys(m) {
			switch sub, ok := props[k].(map[string]any); {
			case ok:
				problems = append(problems, conform(path+"."+k, m[k], sub)...)
			case extra != nil:
				problems = append(problems, conform(path+"."+k, m[k], extra)...)
			default:
				problems = bad("unknown field %q", k)
			}
		}
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := m[r.(string)]; !ok {
				problems = bad("missing required field %q", r)
			}
		}
	case "array":
		list, ok := v.([]any)
		if !ok {
			return bad("want a list")
		}
		items, _ := s["items"].(map[string]any)
		for i, item := range list {
			problems = append(problems, conform(fmt.Sprintf("%s[%d]", path, i), item, items)...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return bad("want a string")
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				return bad("%q is not an RFC 3339 time", str)
			}
		}
	case "integer":
		if _, ok := v.(int64); !ok {
			return bad("want an integer")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("want a boolean")
		}
	}
	return problems
}
