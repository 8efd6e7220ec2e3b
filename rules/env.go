package rules

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
)

// This file declares the one CEL environment every rule is compiled in.
// Every import of cel-go stays inside package rules.

// AggKind is the function of a window aggregate.
type AggKind uint8

// Window aggregate functions.
const (
	Count AggKind = iota + 1
	Sum
	Min
	Max
	Avg
	Distinct
	Since
)

func (k AggKind) String() string {
	if int(k) < len(aggNames) && k > 0 {
		return aggNames[k]
	}
	return fmt.Sprintf("AggKind(%d)", k)
}

var aggNames = [...]string{"", "count", "sum", "min", "max", "avg", "distinct", "since"}

// windowFunc describes one window function of the rule language.
type windowFunc struct {
	kind   AggKind
	name   string
	params []string // names of the parameters, for error messages
	result *cel.Type
}

var windowFuncs = []windowFunc{
	{Count, "count", []string{"type", "window"}, cel.IntType},
	{Sum, "sum", []string{"type", "attr", "window"}, cel.DoubleType},
	{Min, "min", []string{"type", "attr", "window"}, cel.DoubleType},
	{Max, "max", []string{"type", "attr", "window"}, cel.DoubleType},
	{Avg, "avg", []string{"type", "attr", "window"}, cel.DoubleType},
	{Distinct, "distinct", []string{"type", "attr", "window"}, cel.IntType},
	{Since, "since", []string{"type"}, cel.DurationType},
}

func windowFuncByName(name string) (windowFunc, bool) {
	for _, f := range windowFuncs {
		if f.name == name {
			return f, true
		}
	}
	return windowFunc{}, false
}

// contactFunc describes one contact-history function of the rule language.
// Both return int.
type contactFunc struct {
	name   string
	params []string // names of the parameters, for error messages
}

var contactFuncs = []contactFunc{
	{"contacts", []string{"window"}},
	{"offers", []string{"rule_id", "window"}},
}

func contactFuncByName(name string) (contactFunc, bool) {
	for _, f := range contactFuncs {
		if f.name == name {
			return f, true
		}
	}
	return contactFunc{}, false
}

const (
	eventTypeName = "kairos.Event"
	// windowsVar is the activation name of the per-event window reader. It is
	// not declared to the checker, so rule text cannot name it.
	windowsVar = "__kairos_windows"
	// contactsVar is the activation name of the contact-history reader,
	// hidden like windowsVar.
	contactsVar = "__kairos_contacts"
	// inputSizeBound is what cost estimation assumes for the size of input
	// lists, maps and strings (profile and event attributes).
	inputSizeBound = 1000
)

var eventObjType = types.NewObjectType(eventTypeName)

// eventFields are the fields of the event variable, in declaration order.
var eventFields = []string{"id", "customer_id", "type", "ts", "attrs"}

var eventFieldTypes = map[string]*types.FieldType{
	"id":          {Type: types.StringType, IsSet: isSet, GetFrom: func(o any) (any, error) { return types.String(o.(*eventVal).ev.ID), nil }},
	"customer_id": {Type: types.StringType, IsSet: isSet, GetFrom: func(o any) (any, error) { return types.String(o.(*eventVal).ev.CustomerID), nil }},
	"type":        {Type: types.StringType, IsSet: isSet, GetFrom: func(o any) (any, error) { return types.String(o.(*eventVal).ev.Type), nil }},
	"ts":          {Type: types.TimestampType, IsSet: isSet, GetFrom: func(o any) (any, error) { return o.(*eventVal).ts, nil }},
	"attrs": {Type: types.NewMapType(types.StringType, types.DynType), IsSet: isSet, GetFrom: func(o any) (any, error) {
		if a := o.(*eventVal).ev.Attrs; a != nil {
			return a, nil
		}
		return emptyMap, nil
	}},
}

var emptyMap = map[string]any{}

func isSet(any) bool { return true }

// provider adds the event object type to CEL's default type registry.
type provider struct {
	*types.Registry
}

func (p provider) FindStructType(name string) (*types.Type, bool) {
	if name == eventTypeName {
		return types.NewTypeTypeWithParam(eventObjType), true
	}
	return p.Registry.FindStructType(name)
}

func (p provider) FindStructFieldNames(name string) ([]string, bool) {
	if name == eventTypeName {
		return eventFields, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if name == eventTypeName {
		ft, ok := eventFieldTypes[field]
		return ft, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

func (p provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if name == eventTypeName {
		return types.NewErr("%s cannot be constructed in a rule", eventTypeName)
	}
	return p.Registry.NewValue(name, fields)
}

// eventVal is the runtime value of the event variable.
type eventVal struct {
	ev *Event
	ts ref.Val
}

func (e *eventVal) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to %v", eventTypeName, typeDesc)
}

func (e *eventVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return eventObjType
	}
	return types.NewErr("type conversion error from %s to %s", eventTypeName, t.TypeName())
}

func (e *eventVal) Equal(other ref.Val) ref.Val {
	o, ok := other.(*eventVal)
	return types.Bool(ok && o.ev == e.ev)
}

func (e *eventVal) Type() ref.Type { return eventObjType }
func (e *eventVal) Value() any     { return e }

// IsSet and Get let the event be used where CEL treats it as a generic object.
func (e *eventVal) IsSet(field ref.Val) ref.Val {
	s, ok := field.(types.String)
	_, known := eventFieldTypes[string(s)]
	return types.Bool(ok && known)
}

func (e *eventVal) Get(field ref.Val) ref.Val {
	s, ok := field.(types.String)
	if ft, known := eventFieldTypes[string(s)]; ok && known {
		v, _ := ft.GetFrom(e)
		return types.DefaultTypeAdapter.NativeToValue(v)
	}
	return types.NewErr("no such field %v on %s", field, eventTypeName)
}

// env returns the one CEL environment of the rule language, built once.
var env = sync.OnceValues(func() (*cel.Env, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	prov := provider{reg}
	opts := []cel.EnvOption{
		cel.CustomTypeAdapter(reg),
		cel.CustomTypeProvider(prov),
		cel.Variable("event", eventObjType),
		cel.Variable("profile", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		ext.Strings(),
	}
	for _, f := range windowFuncs {
		opts = append(opts, plannedFunc(f.name, len(f.params), f.result))
	}
	for _, f := range contactFuncs {
		opts = append(opts, plannedFunc(f.name, len(f.params), cel.IntType))
	}
	return cel.NewEnv(opts...)
})

// plannedFunc declares a function of n string arguments that the compiler's
// decorator replaces when it plans a program; the binding is never called.
func plannedFunc(name string, n int, result *cel.Type) cel.EnvOption {
	args := make([]*cel.Type, n)
	for i := range args {
		args[i] = cel.StringType
	}
	id := "kairos_" + name
	return cel.Function(name, cel.Overload(id, args, result,
		cel.FunctionBinding(func(...ref.Val) ref.Val {
			return types.NewErr("%s: bound when a rule set is compiled", id)
		})))
}

// estimator bounds input sizes for static cost estimation and prices the
// window functions (a binary search and a scan of the window) and the
// contact functions (a count over a short history). The set's lists have
// their own sizes.
type estimator struct {
	sizes map[string]uint64 // list name to length
}

func (e estimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if p := n.Path(); len(p) == 1 {
		if size, ok := e.sizes[p[0]]; ok {
			return &checker.SizeEstimate{Min: size, Max: size}
		}
	}
	return &checker.SizeEstimate{Min: 0, Max: inputSizeBound}
}

func (estimator) EstimateCallCost(function, _ string, _ *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if _, ok := windowFuncByName(function); ok {
		return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 20}}
	}
	if _, ok := contactFuncByName(function); ok {
		return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 20}}
	}
	return nil
}

// maxDuration is what since() returns when there is no previous event.
const maxDuration = time.Duration(math.MaxInt64)

var errNoWindows = errors.New("window functions need the customer's windows")
