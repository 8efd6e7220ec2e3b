package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"
)

// TestComposeClusterStack checks deploy/compose/docker-compose.cluster.yml:
// three NATS nodes of one cluster (their configuration loads with
// nats-server's parser, with each node's name from its environment), three
// Kairos instances in cluster mode with distinct ids and addresses, on a
// configuration that validates and knows every NATS node, and a Prometheus
// that scrapes each instance.
func TestComposeClusterStack(t *testing.T) {
	dir := opsRepoFile("deploy", "compose")
	compose := opsYAMLDocs(t, filepath.Join(dir, "docker-compose.cluster.yml"))[0]
	services, _ := dig(compose, "services").(map[string]any)
	for name, s := range services {
		for _, v := range opsList(dig(s, "volumes")) {
			str, _ := v.(string)
			if host, _, _ := strings.Cut(str, ":"); strings.HasPrefix(host, ".") {
				if _, err := os.Stat(filepath.Join(dir, host)); err != nil {
					t.Errorf("service %s mounts %s, which does not exist", name, host)
				}
			}
		}
		for _, p := range opsList(dig(s, "ports")) {
			if !strings.HasPrefix(p.(string), "127.0.0.1:") {
				t.Errorf("service %s publishes %s beyond the loopback address", name, p)
			}
		}
	}
	// The NATS nodes: one configuration file, the name from the environment.
	names := map[string]bool{}
	for i := 1; i <= 3; i++ {
		svc := services["nats-"+itoa(i)]
		if svc == nil {
			t.Fatalf("no service nats-%d", i)
		}
		name := digStr(svc, "environment", "SERVER_NAME")
		t.Setenv("SERVER_NAME", name)
		o, err := server.ProcessConfigFile(filepath.Join(dir, "nats-cluster.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if o.ServerName != name || names[name] || !o.JetStream || !o.SyncAlways || o.Cluster.Name == "" || len(o.Routes) != 3 {
			t.Errorf("nats-%d: name %q (repeated %v), jetstream %v, sync always %v, cluster %q, %d routes", i, o.ServerName, names[name], o.JetStream, o.SyncAlways, o.Cluster.Name, len(o.Routes))
		}
		names[name] = true
	}
	// The Kairos instances.
	kcfg, err := os.ReadFile(filepath.Join(dir, "kairos-cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := opsCheckKairosYAML(t, "compose kairos-cluster.yaml", string(kcfg))
	if !cfg.Cluster.Enabled || cfg.Streams.Replicas != 3 {
		t.Errorf("cluster enabled %v, replicas %d: want cluster mode on R3 streams", cfg.Cluster.Enabled, cfg.Streams.Replicas)
	}
	for i := 1; i <= 3; i++ {
		if !strings.Contains(cfg.NATS.URL, "nats-"+itoa(i)+":4222") {
			t.Errorf("nats.url %q does not list nats-%d", cfg.NATS.URL, i)
		}
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	for i := 1; i <= 3; i++ {
		svc := services["kairos-"+itoa(i)]
		if svc == nil {
			t.Fatalf("no service kairos-%d", i)
		}
		args := opsList(dig(svc, "command"))
		flag := func(name string) string {
			for j, a := range args {
				if a == name && j+1 < len(args) {
					return args[j+1].(string)
				}
			}
			return ""
		}
		id, adv := flag("--instance"), flag("--advertise")
		if id == "" || adv == "" || ids[id] || addrs[adv] {
			t.Errorf("kairos-%d: --instance %q --advertise %q: want both, distinct", i, id, adv)
		}
		ids[id], addrs[adv] = true, true
		// The advertised address is the port published for the instance.
		_, port, _ := strings.Cut(adv, ":")
		var published bool
		for _, p := range opsList(dig(svc, "ports")) {
			published = published || strings.HasPrefix(p.(string), "127.0.0.1:"+port+":")
		}
		if !published {
			t.Errorf("kairos-%d advertises %s, which it does not publish", i, adv)
		}
	}
	prom := opsYAMLDocs(t, filepath.Join(dir, "prometheus-cluster.yml"))[0]
	var targets []string
	for _, sc := range opsList(dig(prom, "scrape_configs")) {
		if digStr(sc, "job_name") == "kairos" {
			for _, tg := range opsList(dig(sc, "static_configs", 0, "targets")) {
				targets = append(targets, tg.(string))
			}
		}
	}
	for i := 1; i <= 3; i++ {
		if !slices.Contains(targets, "kairos-"+itoa(i)+":9464") {
			t.Errorf("Prometheus does not scrape kairos-%d (targets %v)", i, targets)
		}
	}
}

// TestKubernetesClusterOverlay renders deploy/k8s-cluster with kubectl's
// kustomize (skipped without kubectl) and checks it: several replicas, each
// with its pod name as instance id and its stable DNS name as address, a
// configuration in cluster mode that validates, and a disruption budget
// that lets one pod go at a time.
func TestKubernetesClusterOverlay(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: cannot render the kustomize overlay")
	}
	out, err := exec.Command(kubectl, "kustomize", opsRepoFile("deploy", "k8s-cluster")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	byKind := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	for {
		var d map[string]any
		if dec.Decode(&d) != nil {
			break
		}
		if digStr(d, "kind") == "ConfigMap" && digStr(d, "metadata", "name") != "kairos-config" {
			continue
		}
		byKind[digStr(d, "kind")] = d
	}
	sts := byKind["StatefulSet"]
	if r, _ := dig(sts, "spec", "replicas").(int); r < 2 {
		t.Errorf("replicas %v: the overlay scales out", dig(sts, "spec", "replicas"))
	}
	ctr := dig(sts, "spec", "template", "spec", "containers", 0)
	args := strings.Join(func() (s []string) {
		for _, a := range opsList(dig(ctr, "args")) {
			s = append(s, a.(string))
		}
		return s
	}(), " ")
	if !strings.Contains(args, "--instance $(POD_NAME)") || !strings.Contains(args, "--advertise $(POD_NAME)."+digStr(sts, "spec", "serviceName")+":") {
		t.Errorf("args %q: want --instance $(POD_NAME) --advertise $(POD_NAME).<service>:<port>", args)
	}
	var podName bool
	for _, e := range opsList(dig(ctr, "env")) {
		podName = podName || digStr(e, "name") == "POD_NAME" && digStr(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name"
	}
	if !podName {
		t.Errorf("no POD_NAME from metadata.name in the container's env")
	}
	cfg := opsCheckKairosYAML(t, "overlay kairos.yaml", digStr(byKind["ConfigMap"], "data", "kairos.yaml"))
	if !cfg.Cluster.Enabled || cfg.Streams.Replicas != 3 {
		t.Errorf("cluster enabled %v, replicas %d: want cluster mode on R3 streams", cfg.Cluster.Enabled, cfg.Streams.Replicas)
	}
	pdb := byKind["PodDisruptionBudget"]
	if dig(pdb, "spec", "maxUnavailable") != 1 || dig(pdb, "spec", "minAvailable") != nil {
		t.Errorf("PodDisruptionBudget %v: want maxUnavailable 1 only", dig(pdb, "spec"))
	}
}
