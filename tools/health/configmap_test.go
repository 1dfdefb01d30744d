package health

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const configMapFile = "../../deploy/argocd/argocd-cm.yaml"

// The argocd-cm patch users apply embeds exactly the tested scripts, byte for byte.
func TestConfigMapEmbedsTheScripts(t *testing.T) {
	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Metadata   struct{ Name, Namespace string }
		Data       map[string]string
	}
	if err := yaml.UnmarshalStrict([]byte(read(t, configMapFile)), &cm); err != nil {
		t.Fatalf("%s: %v", configMapFile, err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" || cm.Metadata.Namespace != "argocd" {
		t.Errorf("%s: not a patch of ConfigMap argocd/argocd-cm", configMapFile)
	}
	var want []string
	for _, file := range scriptFiles(t) {
		key := "resource.customizations.health." + strings.TrimSuffix(file, ".lua")
		want = append(want, key)
		if cm.Data[key] != read(t, filepath.Join(scriptsDir, file)) {
			t.Errorf("%s: %s differs from %s; run hack/argocd-cm", configMapFile, key, file)
		}
	}
	got := sortedKeys(cm.Data)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s: keys %v, want %v; run hack/argocd-cm", configMapFile, got, want)
	}
}
