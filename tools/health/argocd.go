// Package health runs ispcert's Argo CD health checks (deploy/argocd/health/*.lua) the way Argo CD
// does, and kstatus (what Flux uses) on the same sample objects; its tests hold the mapping of
// every state. See docs/gitops.md.
package health

import (
	"context"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Health is what a check answers: an Argo CD health status code and a message.
type Health struct {
	Status  string
	Message string
}

func (h Health) String() string { return h.Status + ": " + h.Message }

// The codes Argo CD accepts from a script; any other becomes Unknown.
var validCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// ArgoCD is the health Argo CD shows for obj with the health check script: an object being deleted
// is "Progressing: Pending deletion" before any custom check is asked (gitops-engine's rule), and
// every other object gets the script's answer.
func ArgoCD(script string, obj *unstructured.Unstructured) (Health, error) {
	if obj.GetDeletionTimestamp() != nil {
		return Health{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	return Script(script, obj)
}

// Script runs a health check as Argo CD runs one configured in argocd-cm: a fresh gopher-lua VM
// with only the package, base and table libraries (no string, math or io: Argo CD opens its
// standard libraries only for built-in checks or with useOpenLibs), the object as the global `obj`,
// a one-second limit, and the table the chunk returns read as {status, message}.
func Script(script string, obj *unstructured.Unstructured) (Health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return Health{}, fmt.Errorf("opening Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return Health{}, fmt.Errorf("running the health script: %w", err)
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("the health script returned %s, not a table", l.Get(-1).Type())
	}
	var h Health
	for field, into := range map[string]*string{"status": &h.Status, "message": &h.Message} {
		switch v := table.RawGetString(field).(type) {
		case lua.LString:
			*into = string(v)
		case *lua.LNilType:
		default:
			// Argo CD decodes the table as JSON into string fields: anything else is an error there.
			return Health{}, fmt.Errorf("the health script returned %s %s, not a string", field, v.Type())
		}
	}
	if !validCodes[h.Status] {
		return Health{}, fmt.Errorf("the health script returned status %q, which Argo CD shows as Unknown", h.Status)
	}
	return h, nil
}

// toLua converts a decoded Kubernetes object as Argo CD does: maps become tables with string keys,
// lists become sequences from 1, numbers (int64 from the API's JSON) become Lua numbers, and
// anything else is nil.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	default:
		return lua.LNil
	}
}
