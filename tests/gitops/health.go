package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type healthAnswer struct {
	Name           string `json:"name"`
	KStatus        string `json:"kstatus"`
	KStatusMessage string `json:"kstatusMessage"`
	Argo           string `json:"argo"`
	ArgoMessage    string `json:"argoMessage"`
}

// health reads a JSON array of objects as the API server returns them.
func health(luaFile string, in io.Reader) ([]healthAnswer, error) {
	script, err := os.ReadFile(luaFile)
	if err != nil {
		return nil, err
	}
	var objects []map[string]any
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	// Plain json (float64/int64 via unstructured) as client-go decodes it.
	if err := json.Unmarshal(raw, &objects); err != nil {
		return nil, fmt.Errorf("objects: %w", err)
	}
	var out []healthAnswer
	for _, o := range objects {
		u := &unstructured.Unstructured{}
		b, _ := json.Marshal(o)
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("object: %w", err)
		}
		ks, err := status.Compute(u)
		if err != nil {
			return nil, fmt.Errorf("kstatus on %s: %w", u.GetName(), err)
		}
		argo, msg, err := argoHealth(u, string(script))
		if err != nil {
			return nil, fmt.Errorf("argo health on %s: %w", u.GetName(), err)
		}
		out = append(out, healthAnswer{
			Name:           u.GetName(),
			KStatus:        ks.Status.String(),
			KStatusMessage: ks.Message,
			Argo:           argo,
			ArgoMessage:    msg,
		})
	}
	return out, nil
}

// argoHealth follows gitops-engine's GetResourceHealth and argo-cd's
// util/lua VM: a deleting object is answered before any script; scripts run
// with only the package, base, table and (safe) os libraries, under a 1 s
// deadline, with the object as the global `obj`.
func argoHealth(u *unstructured.Unstructured, script string) (string, string, error) {
	if u.GetDeletionTimestamp() != nil {
		return "Progressing", "Pending deletion", nil
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, u.Object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("script returned %s, not a table", l.Get(-1).Type())
	}
	st := lua.LVAsString(ret.RawGetString("status"))
	switch st {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		return "", "", fmt.Errorf("script returned health status %q, which Argo CD rejects", st)
	}
	return st, lua.LVAsString(ret.RawGetString("message")), nil
}

// decodeValue is argo-cd's util/lua decodeValue: maps and slices become
// tables, numbers LNumber.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(string(v))
	case []any:
		t := l.NewTable()
		for _, e := range v {
			t.Append(decodeValue(l, e))
		}
		return t
	case map[string]any:
		t := l.NewTable()
		for k, e := range v {
			t.RawSetString(k, decodeValue(l, e))
		}
		return t
	default:
		return lua.LNil
	}
}
