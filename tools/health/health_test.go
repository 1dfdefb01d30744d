package health

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

const (
	scriptsDir = "../../deploy/argocd/health"
	samplesDir = "../../deploy/argocd/testdata"
)

// expect is what each tool concludes about one sample.
type expect struct {
	// What Argo CD shows.
	argo Health
	// What the script itself answers, when Argo CD does not ask it (an object being deleted).
	script *Health
	// What kstatus, and so Flux, concludes.
	flux status.Status
	// What a GitOps user needs from kstatus where it concludes otherwise: a misreading, reported
	// in docs/gitops.md. Empty when kstatus is right.
	fluxNeeds status.Status
}

const (
	readyWWW  = "certificate is valid until 2027-12-01 09:02 UTC; Secret www-example-com-tls is up to date"
	issuerOK  = "credentials for a…@example.com accepted by https://api.ispmanager.com/billmgr"
	firstWait = "waiting for the operator's first report on this certificate"
	placing   = "placing the order at the billing"
	unreached = "polling the billing: billing unreachable or broken: HTTP 502"
)

func progressing(m string) Health { return Health{"Progressing", m} }
func healthy(m string) Health     { return Health{"Healthy", m} }
func degraded(m string) Health    { return Health{"Degraded", m} }

var (
	current    = status.CurrentStatus
	inProgress = status.InProgressStatus
	failed     = status.FailedStatus
)

// Every sample in deploy/argocd/testdata, and what Argo CD and kstatus make of it.
var expected = map[string]expect{
	"certificate-new.yaml":      {argo: progressing(firstWait), flux: current, fluxNeeds: inProgress},
	"certificate-ordering.yaml": {argo: progressing(placing), flux: inProgress},
	// The order intent replaces the conditions, so an earlier Stalled no longer shows.
	"certificate-ordering-after-stall.yaml": {argo: progressing(placing), flux: inProgress},
	"certificate-pending-order.yaml": {
		argo: progressing("order 4127 is Requested from the certificate authority at the billing"), flux: inProgress},
	"certificate-awaiting-approval.yaml": {
		argo: progressing("order 4127 is Awaiting validation at the billing"), flux: inProgress},
	"certificate-order-outcome-unknown.yaml": {argo: progressing("the billing's answer to the order was lost (billing unreachable or broken: HTTP 502); the order is looked for in the list before anything is ordered again"), flux: inProgress},
	"certificate-billing-unreachable.yaml":   {argo: progressing(unreached), flux: inProgress},
	// Retried until someone tops up the account: a person must act, yet nothing says Stalled.
	"certificate-not-enough-money.yaml": {argo: progressing("the billing account cannot pay for alphassl: the order costs 3450.00 RUB, the balance is 1200.00 RUB, top up at least 2250.00 RUB. The order is retried until the balance allows it"), flux: inProgress, fluxNeeds: failed},
	"certificate-ready.yaml":            {argo: healthy(readyWWW), flux: current},
	// Once the old certificate expires the resource is not Ready, whatever is under way.
	"certificate-expired-renewal-pending.yaml": {argo: progressing("order 4127 is Awaiting validation at the billing"), flux: inProgress},
	"certificate-renewal-awaiting-approval.yaml": {
		argo: healthy(readyWWW + " (meanwhile: order 4127 is Awaiting validation at the billing)"), flux: current},
	"certificate-renewal-billing-unreachable.yaml": {argo: healthy(readyWWW + " (meanwhile: " + unreached + ")"), flux: current},
	// Serves until its renewal; the missing issuer is visible only in reasons and failedAttempts.
	"certificate-serving-issuer-deleted.yaml": {argo: healthy(readyWWW), flux: current},
	"certificate-stalled-invalid-spec.yaml": {
		argo: degraded("fix the spec (1 problem): contacts.admin is required for an order: set it in the certificate or its issuer"), flux: failed},
	"certificate-stalled-secret-in-use.yaml": {
		argo: degraded("Secret www-example-com-tls is already written by IspCertificate www (created first); choose another secretName. Nothing is ordered meanwhile"), flux: failed},
	"certificate-stalled-issuer-not-found.yaml": {
		argo: degraded("IspIssuer billing in namespace shop does not exist; create it or fix spec.issuerRef. Nothing is ordered meanwhile"), flux: failed},
	"certificate-stalled-order-rejected.yaml": {
		argo: degraded("the billing refused the order: the billing rejected the value of `phone`: Invalid phone number format"), flux: failed},
	"certificate-stalled-order-failed.yaml": {
		argo: degraded("the CA refused to issue order 4127; check the approver mailboxes and the order in the billing panel"), flux: failed},
	"certificate-stalled-order-not-found.yaml": {
		argo: degraded("order 4127 is no longer among the account's certificates (deleted at the billing?). Nothing is ordered again automatically: delete and re-create this IspCertificate to buy a new one"), flux: failed},
	"certificate-stalled-certificate-mismatch.yaml": {
		argo: degraded("order 5310 has additional domains that the spec no longer lists; a reissue cannot remove all of them: keep at least one in altNames, or create a new IspCertificate for shop.example.com alone"), flux: failed},
	"certificate-deletion-blocked.yaml": {
		argo:   progressing("Pending deletion"),
		script: &Health{"Degraded", "deleting order 4127 at the billing failed: billing unreachable or broken: HTTP 503; retrying, or to finish without deleting at the billing: kubectl annotate ispcert www -n shop ispcert.dev/skip-billing-cleanup=true"},
		flux:   status.TerminatingStatus},
	"certificate-old-generation.yaml": {
		argo: progressing("the operator has not acted on generation 2 yet (it last acted on 1)"), flux: inProgress},
	// Flux waits for its timeout, then fails; the current operator rewrites such a status at once.
	"certificate-older-operator.yaml": {
		argo: degraded("fix the spec (1 problem): contacts.admin is required for an order: set it in the certificate or its issuer"), flux: inProgress, fluxNeeds: failed},

	"issuer-new.yaml":   {argo: progressing("waiting for the operator to check the credentials"), flux: current, fluxNeeds: inProgress},
	"issuer-ready.yaml": {argo: healthy(issuerOK), flux: current},
	"issuer-refused.yaml": {
		argo: degraded("the billing refused the login a…@example.com: fix the email or password in Secret billing-credentials; checked again when the Secret changes"), flux: failed},
	"issuer-access-denied.yaml": {
		argo: degraded("the billing refused access (authinfo): Access denied: the account allows API access only from listed IP addresses or requires two-factor login (is this machine's IP on the account's allow-list, and is two-factor login off for API use?)"), flux: failed},
	"issuer-unreachable.yaml": {
		argo: progressing("billing unreachable or broken: connection failed: error sending request at https://api.ispmanager.com/billmgr"), flux: inProgress},
	"issuer-old-generation.yaml": {
		argo: progressing("the operator has not acted on generation 2 yet (it last acted on 1)"), flux: inProgress},

	"clusterissuer-new.yaml":   {argo: progressing("waiting for the operator to check the credentials"), flux: current, fluxNeeds: inProgress},
	"clusterissuer-ready.yaml": {argo: healthy(issuerOK), flux: current},
	"clusterissuer-credentials-not-found.yaml": {
		argo: degraded("Secret ispcert-system/billing-credentials not found"), flux: failed},
	"clusterissuer-unreachable.yaml": {
		argo: progressing("billing unreachable or broken: connection failed: error sending request at https://api.ispmanager.com/billmgr"), flux: inProgress},
	"clusterissuer-old-generation.yaml": {
		argo: progressing("the operator has not acted on generation 2 yet (it last acted on 1)"), flux: inProgress},
}

func TestArgoCDHealth(t *testing.T) {
	for _, name := range sampleFiles(t) {
		want := expected[name]
		obj := load(t, name)
		script := scriptFor(t, obj)
		got, err := ArgoCD(script, obj)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != want.argo {
			t.Errorf("%s: Argo CD shows\n  %s\nwant\n  %s", name, got, want.argo)
		}
		if want.script != nil {
			own, err := Script(script, obj)
			if err != nil || own != *want.script {
				t.Errorf("%s: the script answers\n  %s (%v)\nwant\n  %s", name, own, err, *want.script)
			}
		}
	}
}

func TestKstatus(t *testing.T) {
	for _, name := range sampleFiles(t) {
		want := expected[name]
		res, err := Kstatus(load(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if res.Status != want.flux {
			t.Errorf("%s: kstatus says %s (%s), want %s", name, res.Status, res.Message, want.flux)
		}
		if want.fluxNeeds != "" {
			if want.fluxNeeds == want.flux {
				t.Errorf("%s: fluxNeeds is for a misreading; kstatus already says %s", name, want.flux)
			}
			t.Logf("%s: kstatus says %s, a GitOps user needs %s (docs/gitops.md)", name, res.Status, want.fluxNeeds)
		}
	}
}

// Every sample has expectations, and every expectation a sample.
func TestEverySampleIsExpected(t *testing.T) {
	files := sampleFiles(t)
	for _, name := range files {
		if _, ok := expected[name]; !ok {
			t.Errorf("%s: add what Argo CD and kstatus should conclude to `expected`", name)
		}
	}
	for name := range expected {
		if !slices.Contains(files, name) {
			t.Errorf("%s: expected, but not in %s", name, samplesDir)
		}
	}
}

// Each `return health("<code>", ...)` of a script is reached by some sample whose expectation pins
// it: with its code changed to any other, some sample's result must change. A branch no sample
// reaches, or one whose result no test looks at, fails here.
func TestEveryBranchIsPinned(t *testing.T) {
	codes := []string{"Healthy", "Progressing", "Degraded"}
	for _, file := range scriptFiles(t) {
		text := read(t, filepath.Join(scriptsDir, file))
		kind := strings.TrimSuffix(strings.TrimPrefix(file, "ispcert.dev_"), ".lua")
		var samples []string
		for _, name := range sampleFiles(t) {
			if load(t, name).GetKind() == kind {
				samples = append(samples, name)
			}
		}
		const call = `health("`
		var starts []int
		for i := strings.Index(text, call); i >= 0; i = next(text, call, i) {
			starts = append(starts, i+len(call))
		}
		if len(starts) < 3 {
			t.Fatalf("%s: found %d branches; has the script's shape changed?", file, len(starts))
		}
		for n, start := range starts {
			end := start + strings.Index(text[start:], `"`)
			code := text[start:end]
			for _, other := range codes {
				if other != code && !detected(t, text[:start]+other+text[end:], samples) {
					t.Errorf("%s: branch %d (%s) changed to %s goes unnoticed by the %s samples", file, n+1, code, other, kind)
				}
			}
		}
	}
}

// next finds the occurrence of sub after the one at i, or -1.
func next(s, sub string, i int) int {
	j := strings.Index(s[i+1:], sub)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// detected tells whether some sample's result under the script differs from its expectation.
func detected(t *testing.T, script string, samples []string) bool {
	for _, name := range samples {
		obj := load(t, name)
		want := expected[name].argo
		got, err := ArgoCD(script, obj)
		if expected[name].script != nil {
			want = *expected[name].script
			got, err = Script(script, obj)
		}
		if err != nil || got != want {
			return true
		}
	}
	return false
}

// The two issuer kinds mean the same; their scripts must not drift apart.
func TestIssuerScriptsAreOne(t *testing.T) {
	if read(t, filepath.Join(scriptsDir, "ispcert.dev_IspIssuer.lua")) != read(t, filepath.Join(scriptsDir, "ispcert.dev_ClusterIspIssuer.lua")) {
		t.Error("ispcert.dev_IspIssuer.lua and ispcert.dev_ClusterIspIssuer.lua differ; keep them one script")
	}
}

// A script that returns nothing usable must fail here, not show Unknown in Argo CD.
func TestHarnessRefusesWhatArgoCDWouldNot(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	for script, why := range map[string]string{
		`return { status = "Fine" }`:                  "an unknown status",
		`return "Healthy"`:                            "not a table",
		`return { status = "Healthy", message = 3 }`:  "a message that is no string",
		`return { status = string.upper("healthy") }`: "the string library, which Argo CD does not open",
		`while true do end`:                           "a script that never ends",
	} {
		if h, err := Script(script, obj); err == nil {
			t.Errorf("%s: accepted (%s)", why, h)
		}
	}
}

func scriptFor(t *testing.T, obj *unstructured.Unstructured) string {
	t.Helper()
	group := strings.Split(obj.GetAPIVersion(), "/")[0]
	return read(t, filepath.Join(scriptsDir, group+"_"+obj.GetKind()+".lua"))
}

func scriptFiles(t *testing.T) []string {
	t.Helper()
	return list(t, scriptsDir, ".lua")
}

func sampleFiles(t *testing.T) []string {
	t.Helper()
	return list(t, samplesDir, ".yaml")
}

func list(t *testing.T, dir, suffix string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), suffix) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatalf("no %s files in %s", suffix, dir)
	}
	return names
}

var loaded = map[string]*unstructured.Unstructured{}

// load reads a sample once; callers must not change it.
func load(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	if obj, ok := loaded[name]; ok {
		return obj
	}
	obj, err := Load(filepath.Join(samplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	loaded[name] = obj
	return obj
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A status default of observedGeneration 0 in the CRDs (proposed in docs/gitops.md) makes a new
// object InProgress for kstatus; the scripts read it as no report yet.
func TestStatusDefaultProposal(t *testing.T) {
	for name, want := range map[string]Health{
		"certificate-new.yaml":   progressing(firstWait),
		"issuer-new.yaml":        progressing("waiting for the operator to check the credentials"),
		"clusterissuer-new.yaml": progressing("waiting for the operator to check the credentials"),
	} {
		obj := load(t, name).DeepCopy()
		obj.Object["status"] = map[string]any{"observedGeneration": int64(0)}
		if got, err := ArgoCD(scriptFor(t, obj), obj); err != nil || got != want {
			t.Errorf("%s with the status default: Argo CD shows %s (%v), want %s", name, got, err, want)
		}
		if res, err := Kstatus(obj); err != nil || res.Status != inProgress {
			t.Errorf("%s with the status default: kstatus says %v (%v), want InProgress", name, res, err)
		}
	}
}
