package engine

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/kairos-engine/kairos/rules"
)

// opsTLSFiles writes a self-signed CA and key under dir with the names the
// NATS configurations use, so that nats-server can load them.
func opsTLSFiles(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kairos-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kpem := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	for name, data := range map[string][]byte{"ca.pem": cert, "server.pem": cert, "route.pem": cert, "server-key.pem": kpem, "route-key.pem": kpem} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNATSConfigsLoad loads the NATS configurations of deploy/nats with
// nats-server's own parser and checks what Kairos relies on: JetStream with
// fsync on every write, and for the cluster three distinctly named nodes of
// one cluster that route to each other.
func TestNATSConfigsLoad(t *testing.T) {
	t.Run("single node", func(t *testing.T) {
		o, err := server.ProcessConfigFile(opsRepoFile("deploy", "nats", "single-node.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if !o.JetStream || !o.SyncAlways {
			t.Errorf("jetstream %v, sync always %v: want both", o.JetStream, o.SyncAlways)
		}
	})
	t.Run("three-node cluster", func(t *testing.T) {
		// The configurations name /etc/nats/tls: load copies pointing at test certificates.
		tmp := t.TempDir()
		opsTLSFiles(t, tmp)
		src := opsRepoFile("deploy", "nats", "cluster")
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.ReplaceAll(b, []byte("/etc/nats/tls"), []byte(tmp))
			if err := os.WriteFile(filepath.Join(tmp, e.Name()), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		names := map[string]bool{}
		for i := 1; i <= 3; i++ {
			f := filepath.Join(tmp, "nats-"+string(rune('0'+i))+".conf")
			o, err := server.ProcessConfigFile(f)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			if !o.JetStream || !o.SyncAlways {
				t.Errorf("%s: jetstream %v, sync always %v: want both", filepath.Base(f), o.JetStream, o.SyncAlways)
			}
			if o.Cluster.Name != "kairos" || len(o.Routes) != 3 || o.Cluster.TLSConfig == nil || o.TLSConfig == nil {
				t.Errorf("%s: cluster %q, %d routes, route TLS %v, client TLS %v", filepath.Base(f), o.Cluster.Name, len(o.Routes), o.Cluster.TLSConfig != nil, o.TLSConfig != nil)
			}
			if o.HTTPPort != 8222 {
				t.Errorf("%s: monitoring port %d, want 8222", filepath.Base(f), o.HTTPPort)
			}
			if names[o.ServerName] || o.ServerName == "" {
				t.Errorf("%s: server name %q is empty or repeated", filepath.Base(f), o.ServerName)
			}
			names[o.ServerName] = true
		}
	})
}

// systemdUnit parses a unit file into section -> key -> values.
func systemdUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string]map[string][]string{}
	sec := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			sec = strings.Trim(line, "[]")
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	return u
}

// TestSystemdUnitIsHardened checks deploy/systemd/kairos.service: a
// dedicated user, the state directory, the sandboxing a bank's review asks
// for, a stop timeout longer than the engine's graceful stop; and runs
// `systemd-analyze verify` on it when systemd-analyze is installed.
func TestSystemdUnitIsHardened(t *testing.T) {
	path := opsRepoFile("deploy", "systemd", "kairos.service")
	u := systemdUnit(t, path)
	svc := u["Service"]
	want := map[string]string{
		"User": "kairos", "Group": "kairos", "StateDirectory": "kairos", "ConfigurationDirectory": "kairos",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
		"MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "", "Restart": "on-failure",
		"KillSignal": "SIGTERM", "UMask": "0027",
	}
	for k, v := range want {
		if got := svc[k]; len(got) == 0 || got[len(got)-1] != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	execStart := strings.Join(svc["ExecStart"], " ")
	if !strings.Contains(execStart, "kairos run") || !strings.Contains(execStart, "--config /etc/kairos/kairos.yaml") {
		t.Errorf("ExecStart %q does not run kairos with /etc/kairos/kairos.yaml", execStart)
	}
	if ts := svc["TimeoutStopSec"]; len(ts) == 0 {
		t.Errorf("no TimeoutStopSec")
	} else if d, err := time.ParseDuration(ts[0]); err != nil || d <= 30*time.Second {
		t.Errorf("TimeoutStopSec %s must exceed engine.shutdown_timeout (30s)", ts[0])
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	// verify wants the binary to exist: check a copy whose ExecStart names
	// an executable that does.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "kairos.service")
	b = bytes.ReplaceAll(b, []byte("/usr/local/bin/kairos"), []byte(self))
	if err := os.WriteFile(unit, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := opsRun(t, nil, analyze, "verify", "--man=no", unit)
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// Without systemd as PID 1 (a container), verify also reports the
		// host's own units and its missing bus; only lines about ours count.
		if strings.Contains(line, "kairos.service") {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 || (err != nil && len(problems) == 0 && !strings.Contains(out, "bus")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// opsYAMLDocs decodes every document of a YAML file.
func opsYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// dig walks a decoded YAML/JSON value by keys (string) and indexes (int).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func digStr(v any, path ...any) string { s, _ := dig(v, path...).(string); return s }

// opsCheckKairosYAML loads a kairos.yaml shipped in deploy/ strictly and
// validates it, with the files it names replaced by temporary ones (they
// are secrets the operator provides).
func opsCheckKairosYAML(t *testing.T, name, text string) Config {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "kairos.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	sub := func(s *string, content string) {
		if *s != "" {
			f := filepath.Join(dir, filepath.Base(*s))
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			*s = f
		}
	}
	sub(&cfg.HTTP.TokenFile, opsToken)
	sub(&cfg.NATS.Creds, "creds")
	sub(&cfg.NATS.NKeySeed, "seed")
	sub(&cfg.NATS.TLS.CA, "ca")
	sub(&cfg.NATS.TLS.Cert, "cert")
	sub(&cfg.NATS.TLS.Key, "key")
	sub(&cfg.Policy.SuppressionFile, "")
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if cfg.HTTP.Listen != "off" && !loopbackListen(cfg.HTTP.Listen) && cfg.HTTP.TokenFile == "" && cfg.HTTP.Token == "" {
		t.Errorf("%s: http.listen %s is not loopback and has no token", name, cfg.HTTP.Listen)
	}
	return cfg
}

// TestKubernetesManifests checks deploy/k8s: one Kairos replica with its
// Badger volume mounted at the configured data path, non-root with a
// read-only root filesystem, probes on /healthz and /readyz, a config and
// rules that load, and a Service, ServiceMonitor and PodDisruptionBudget
// that select it.
func TestKubernetesManifests(t *testing.T) {
	dir := opsRepoFile("deploy", "k8s")
	kust := opsYAMLDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	byKind := map[string][]map[string]any{}
	var files []string
	for _, r := range dig(kust, "resources").([]any) {
		files = append(files, r.(string))
		for _, d := range opsYAMLDocs(t, filepath.Join(dir, r.(string))) {
			byKind[digStr(d, "kind")] = append(byKind[digStr(d, "kind")], d)
		}
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range all {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(files, b) {
			t.Errorf("%s is not listed in kustomization.yaml", b)
		}
	}
	for _, k := range []string{"StatefulSet", "Service", "ServiceMonitor", "PodDisruptionBudget", "ConfigMap"} {
		if len(byKind[k]) == 0 {
			t.Fatalf("no %s in deploy/k8s", k)
		}
	}
	sts := byKind["StatefulSet"][0]
	if r, _ := dig(sts, "spec", "replicas").(int); r != 1 {
		t.Errorf("StatefulSet replicas %v: Kairos is a single consumer with its own state, run exactly 1", dig(sts, "spec", "replicas"))
	}
	pod := dig(sts, "spec", "template")
	podLabels := dig(pod, "metadata", "labels").(map[string]any)
	if !opsSelects(dig(sts, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("StatefulSet selector does not match its pod labels")
	}
	var ctr any
	for _, c := range dig(pod, "spec", "containers").([]any) {
		if digStr(c, "name") == "kairos" {
			ctr = c
		}
	}
	if ctr == nil {
		t.Fatal("no container named kairos")
	}

	// The configuration it runs with.
	args := dig(ctr, "args").([]any)
	var cfgPath string
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			cfgPath = args[i+1].(string)
		}
	}
	mounts := map[string]string{} // mount path -> volume name
	for _, m := range dig(ctr, "volumeMounts").([]any) {
		mounts[digStr(m, "mountPath")] = digStr(m, "name")
	}
	cms := map[string]map[string]any{}
	for _, cm := range byKind["ConfigMap"] {
		cms[digStr(cm, "metadata", "name")] = cm
	}
	vols := map[string]any{}
	for _, v := range dig(pod, "spec", "volumes").([]any) {
		vols[digStr(v, "name")] = v
	}
	cfgVol := vols[mounts[filepath.Dir(cfgPath)]]
	cfgCM := cms[digStr(cfgVol, "configMap", "name")]
	if cfgCM == nil {
		t.Fatalf("--config %s is not in a mounted ConfigMap", cfgPath)
	}
	cfg := opsCheckKairosYAML(t, "ConfigMap "+digStr(cfgCM, "metadata", "name"), digStr(cfgCM, "data", filepath.Base(cfgPath)))

	// The data volume is the claim template, mounted where the config keeps its data.
	claims := dig(sts, "spec", "volumeClaimTemplates").([]any)
	if len(claims) != 1 {
		t.Fatalf("%d volumeClaimTemplates, want 1 (the data volume)", len(claims))
	}
	if mounts[cfg.Data] != digStr(claims[0], "metadata", "name") {
		t.Errorf("data %s is not mounted from the volume claim %s (mounts %v)", cfg.Data, digStr(claims[0], "metadata", "name"), mounts)
	}
	// The rules: mounted from a ConfigMap at rules.dir, and they compile.
	rulesCM := cms[digStr(vols[mounts[cfg.Rules.Dir]], "configMap", "name")]
	if rulesCM == nil {
		t.Fatalf("rules.dir %s is not mounted from a ConfigMap", cfg.Rules.Dir)
	}
	rdir := t.TempDir()
	for name, text := range dig(rulesCM, "data").(map[string]any) {
		os.WriteFile(filepath.Join(rdir, name), []byte(text.(string)), 0o644)
	}
	if _, err := rules.Load(rules.Options{Horizon: mustDuration(cfg.Rules.Horizon), CostLimit: cfg.Rules.CostLimit}, rdir); err != nil {
		t.Errorf("the rules ConfigMap does not load: %v", err)
	}
	// The token file comes from a Secret.
	if !loopbackListen(cfg.HTTP.Listen) {
		orig := digStr(opsYAMLKairos(t, cfgCM, cfgPath), "http", "token_file")
		var fromSecret bool
		for mp, name := range mounts {
			if orig != "" && strings.HasPrefix(orig, mp+"/") && dig(vols[name], "secret") != nil {
				fromSecret = true
			}
		}
		if !fromSecret {
			t.Errorf("http.listen %s is not loopback and http.token_file %q is not mounted from a Secret", cfg.HTTP.Listen, orig)
		}
	}

	// Non-root, read-only root filesystem, no privilege escalation.
	psc := dig(pod, "spec", "securityContext")
	csc := dig(ctr, "securityContext")
	if dig(psc, "runAsNonRoot") != true || dig(csc, "readOnlyRootFilesystem") != true || dig(csc, "allowPrivilegeEscalation") != false {
		t.Errorf("pod securityContext %v, container securityContext %v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation", psc, csc)
	}
	if uid, _ := dig(psc, "runAsUser").(int); uid == 0 {
		t.Errorf("runAsUser %v: want a non-zero uid", dig(psc, "runAsUser"))
	}
	if caps := dig(csc, "capabilities", "drop"); !slices.Contains(caps.([]any), any("ALL")) {
		t.Errorf("capabilities drop %v, want ALL", caps)
	}
	// Probes and the port the Service and ServiceMonitor use.
	if p := digStr(ctr, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe %q, want /readyz", p)
	}
	if p := digStr(ctr, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe %q, want /healthz", p)
	}
	var httpPort int
	for _, p := range dig(ctr, "ports").([]any) {
		if digStr(p, "name") == "http" {
			httpPort, _ = dig(p, "containerPort").(int)
		}
	}
	if !strings.HasSuffix(cfg.HTTP.Listen, ":"+itoa(httpPort)) {
		t.Errorf("container port http %d is not http.listen %s", httpPort, cfg.HTTP.Listen)
	}
	if g, _ := dig(pod, "spec", "terminationGracePeriodSeconds").(int); time.Duration(g)*time.Second <= mustDuration(cfg.Engine.ShutdownTimeout) {
		t.Errorf("terminationGracePeriodSeconds %d must exceed engine.shutdown_timeout %s", g, cfg.Engine.ShutdownTimeout)
	}

	svc := byKind["Service"][0]
	if !opsSelects(dig(svc, "spec", "selector"), podLabels) {
		t.Errorf("Service selector %v does not select the pod (%v)", dig(svc, "spec", "selector"), podLabels)
	}
	var svcPort bool
	for _, p := range dig(svc, "spec", "ports").([]any) {
		if digStr(p, "name") == "http" && (dig(p, "targetPort") == "http" || dig(p, "targetPort") == httpPort) {
			svcPort = true
		}
	}
	if !svcPort {
		t.Errorf("Service has no port named http to the container's")
	}
	sm := byKind["ServiceMonitor"][0]
	if !opsSelects(dig(sm, "spec", "selector", "matchLabels"), dig(svc, "metadata", "labels").(map[string]any)) {
		t.Errorf("ServiceMonitor does not select the Service")
	}
	if ep := dig(sm, "spec", "endpoints", 0); digStr(ep, "port") != "http" || digStr(ep, "path") != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v, want port http, path /metrics", ep)
	}
	pdb := byKind["PodDisruptionBudget"][0]
	if !opsSelects(dig(pdb, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("PodDisruptionBudget does not select the pod")
	}
}

func opsYAMLKairos(t *testing.T, cm map[string]any, cfgPath string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(digStr(cm, "data", filepath.Base(cfgPath))), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// opsSelects tells whether a selector (label map) selects labels.
func opsSelects(selector any, labels map[string]any) bool {
	sel, ok := selector.(map[string]any)
	if !ok || len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestComposeStack checks deploy/compose/docker-compose.yml: the five
// services, every file it mounts exists (the Grafana dashboard among
// them), Kairos' configuration loads, its HTTP port is published on the
// loopback address only, and Prometheus scrapes the services by the names
// and ports compose gives them.
func TestComposeStack(t *testing.T) {
	dir := opsRepoFile("deploy", "compose")
	compose := opsYAMLDocs(t, filepath.Join(dir, "docker-compose.yml"))[0]
	services, _ := dig(compose, "services").(map[string]any)
	for _, s := range []string{"nats", "nats-exporter", "kairos", "prometheus", "grafana"} {
		if services[s] == nil {
			t.Errorf("no service %s", s)
		}
	}
	mounted := map[string]string{} // host path (cleaned) -> container path
	for name, s := range services {
		for _, v := range opsList(dig(s, "volumes")) {
			str, ok := v.(string)
			if !ok {
				continue
			}
			parts := strings.Split(str, ":")
			if !strings.HasPrefix(parts[0], ".") {
				continue // a named volume
			}
			host := filepath.Join(dir, parts[0])
			if _, err := os.Stat(host); err != nil {
				t.Errorf("service %s mounts %s, which does not exist", name, parts[0])
			}
			mounted[filepath.Clean(host)] = parts[1]
		}
	}
	dash := filepath.Clean(opsRepoFile("deploy", "grafana", "kairos.json"))
	var dashMounted bool
	for host := range mounted {
		if host == dash || host == filepath.Dir(dash) {
			dashMounted = true
		}
	}
	if !dashMounted {
		t.Errorf("the Grafana dashboard %s is not mounted (mounts %v)", dash, mounted)
	}
	// Grafana's dashboard provider reads the directory the dashboard is mounted in.
	prov := opsYAMLDocs(t, filepath.Join(dir, "grafana", "dashboards.yml"))[0]
	provPath := digStr(dig(prov, "providers", 0), "options", "path")
	inContainer := mounted[filepath.Dir(dash)]
	if f := mounted[dash]; f != "" {
		inContainer = filepath.Dir(f)
	}
	if provPath == "" || provPath != inContainer {
		t.Errorf("the dashboard provider reads %q, the dashboard is mounted in %q", provPath, inContainer)
	}
	// Kairos' configuration.
	kcfg, err := os.ReadFile(filepath.Join(dir, "kairos.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := opsCheckKairosYAML(t, "compose kairos.yaml", string(kcfg))
	for _, p := range opsList(dig(services["kairos"], "ports")) {
		if s := p.(string); !strings.HasPrefix(s, "127.0.0.1:") {
			t.Errorf("kairos publishes %s beyond the loopback address", s)
		}
	}
	if digStr(services["kairos"], "build", "context") != "../.." {
		t.Errorf("kairos is not built from the repository's Dockerfile")
	}
	// Prometheus scrapes the compose services.
	prom := opsYAMLDocs(t, opsRepoFile("deploy", "prometheus", "prometheus.yml"))[0]
	targets := map[string][]string{}
	for _, sc := range opsList(dig(prom, "scrape_configs")) {
		for _, st := range opsList(dig(sc, "static_configs")) {
			for _, tg := range opsList(dig(st, "targets")) {
				targets[digStr(sc, "job_name")] = append(targets[digStr(sc, "job_name")], tg.(string))
			}
		}
	}
	_, port, _ := strings.Cut(cfg.HTTP.Listen, ":")
	if !slices.Contains(targets["kairos"], "kairos:"+port) {
		t.Errorf("job kairos scrapes %v, want kairos:%s", targets["kairos"], port)
	}
	if !slices.Contains(targets["nats"], "nats-exporter:7777") {
		t.Errorf("job nats scrapes %v, want nats-exporter:7777", targets["nats"])
	}
	if cfg.NATS.URL == "" || !strings.Contains(cfg.NATS.URL, "nats:4222") {
		t.Errorf("compose Kairos uses NATS %q, want the nats service", cfg.NATS.URL)
	}
}

func opsList(v any) []any { l, _ := v.([]any); return l }

// TestDockerfile checks the image: built in a separate stage as a static
// binary, run as a non-root user from a minimal base, with /data a volume
// and the data path of its default command.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(opsRepoFile("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, users, volumes []string
	var final, build strings.Builder
	stage := 0
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, line)
			stage++
			users = nil
		case "USER":
			users = append(users, f[1])
		case "VOLUME":
			volumes = append(volumes, strings.Join(f[1:], " "))
		}
		if stage == 1 {
			build.WriteString(line + "\n")
		}
		final.WriteString(line + "\n")
	}
	if len(froms) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(froms))
	}
	if !strings.Contains(build.String(), "CGO_ENABLED=0") || !strings.Contains(build.String(), "./cmd/kairos") {
		t.Errorf("the build stage does not build ./cmd/kairos with CGO_ENABLED=0")
	}
	last := froms[len(froms)-1]
	if !regexp.MustCompile(`distroless/static|scratch`).MatchString(last) {
		t.Errorf("runtime stage %q: want a static base (distroless/static or scratch)", last)
	}
	if len(users) == 0 || regexp.MustCompile(`^(root|0)(:|$)`).MatchString(users[len(users)-1]) {
		t.Errorf("the image runs as %v: want a non-root USER in the last stage", users)
	}
	if !slices.ContainsFunc(volumes, func(v string) bool { return strings.Contains(v, "/data") }) {
		t.Errorf("VOLUME %v: want /data", volumes)
	}
	if !strings.Contains(final.String(), `"--data", "/data"`) {
		t.Errorf("the default command does not keep its data in /data")
	}
	if _, err := os.Stat(opsRepoFile("Dockerfile.dockerignore")); err != nil {
		t.Errorf("no Dockerfile.dockerignore: the build context would carry data/ and bin/")
	}
}
