package charts_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/caravan-gitops/caravan/charts"
)

// assertHardened checks the security settings every pod of the charts has.
func assertHardened(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	require.NotNil(t, pod.SecurityContext)
	assert.Equal(t, ptr.To(true), pod.SecurityContext.RunAsNonRoot)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type)
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		require.NotNil(t, sc, c.Name)
		assert.Equal(t, ptr.To(false), sc.AllowPrivilegeEscalation, c.Name)
		assert.Equal(t, ptr.To(true), sc.ReadOnlyRootFilesystem, c.Name)
		assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, c.Name)
	}
}

func envNamed(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func TestAgentDefaults(t *testing.T) {
	r := render(t, charts.Agent, agentRelease, agentValues(nil))

	d := decode[appsv1.Deployment](r, "Deployment", "caravan-agent")
	assert.Equal(t, charts.AgentNamespace, d.Namespace)
	assert.Equal(t, ptr.To[int32](2), d.Spec.Replicas)
	pod := d.Spec.Template.Spec
	assert.Equal(t, "system-cluster-critical", pod.PriorityClassName)
	assert.Equal(t, "caravan-agent", pod.ServiceAccountName)
	assertHardened(t, pod)
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.Equal(t, "ghcr.io/caravan-gitops/caravan-agent:v0.1.0", c.Image, "the tag is the chart's appVersion")
	assert.Equal(t, []string{"--cluster-id=" + testClusterID, "--log-level=info", "--enable-leader-election"}, c.Args)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, intstr.FromString("health"), c.LivenessProbe.HTTPGet.Port)
	assert.Equal(t, []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8080}, {Name: "health", ContainerPort: 9440}}, c.Ports)
	assert.Equal(t, "128Mi", c.Resources.Requests.Memory().String())
	assert.Equal(t, "256Mi", c.Resources.Limits.Memory().String())
	token := envNamed(c, "CARAVAN_REGISTRY_TOKEN")
	require.NotNil(t, token)
	assert.Equal(t, "caravan-agent", token.ValueFrom.SecretKeyRef.Name)
	assert.Equal(t, "registry-token", token.ValueFrom.SecretKeyRef.Key)
	assert.Equal(t, "caravan-agent", c.EnvFrom[0].ConfigMapRef.Name)

	settings := decode[corev1.ConfigMap](r, "ConfigMap", "caravan-agent")
	assert.Equal(t, map[string]string{"CARAVAN_REGISTRY_URL": testRegistryURL, "AWS_REGION": "eu-central-1"}, settings.Data,
		"the region comes from the cluster id; no git Secret for a public repo")

	role := decode[rbacv1.ClusterRole](r, "ClusterRole", "caravan-agent")
	assert.Equal(t, []rbacv1.PolicyRule{
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}},
	}, role.Rules, "cluster-admin rights by default")
	binding := decode[rbacv1.ClusterRoleBinding](r, "ClusterRoleBinding", "caravan-agent")
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "caravan-agent", Namespace: charts.AgentNamespace}}, binding.Subjects)

	pdb := decode[policyv1.PodDisruptionBudget](r, "PodDisruptionBudget", "caravan-agent")
	assert.Equal(t, ptr.To(intstr.FromInt32(1)), pdb.Spec.MaxUnavailable)
	assert.Equal(t, d.Spec.Selector, pdb.Spec.Selector)

	sa := decode[corev1.ServiceAccount](r, "ServiceAccount", "caravan-agent")
	assert.Empty(t, sa.Annotations, "no IRSA role unless given")
	crd := decode[apiextensionsv1.CustomResourceDefinition](r, "CustomResourceDefinition", "clusterconfigs.caravan.io")
	assert.Equal(t, "caravan.io", crd.Spec.Group)

	for _, kind := range []string{"Secret", "NetworkPolicy", "ServiceMonitor", "Service", "Role"} {
		for _, u := range r.objects {
			assert.NotEqual(t, kind, u.GetKind(), "%s %s is off by default", kind, u.GetName())
		}
	}
}

func TestAgentSettingsFromValues(t *testing.T) {
	r := render(t, charts.Agent, agentRelease, agentValues(map[string]any{
		"registry": map[string]any{"url": testRegistryURL, "token": "cvn_secret", "tokenSecret": map[string]any{"name": "agent-token", "key": "token"}},
		"git":      map[string]any{"credentialsSecret": "config-repo"},
		"aws":      map[string]any{"region": "us-east-1", "roleARN": "arn:aws:iam::123456789012:role/caravan-agent"},
		"logLevel": "debug",
		"image":    map[string]any{"tag": "v9.9.9"},
		"extraEnv": []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}},
	}))

	secret := decode[corev1.Secret](r, "Secret", "agent-token")
	assert.Equal(t, "cvn_secret", string(secret.Data["token"]))
	c := decode[appsv1.Deployment](r, "Deployment", "caravan-agent").Spec.Template.Spec.Containers[0]
	assert.Equal(t, "ghcr.io/caravan-gitops/caravan-agent:v9.9.9", c.Image)
	assert.Contains(t, c.Args, "--log-level=debug")
	assert.Equal(t, "agent-token", envNamed(c, "CARAVAN_REGISTRY_TOKEN").ValueFrom.SecretKeyRef.Name)
	assert.Equal(t, "http://proxy:3128", envNamed(c, "HTTPS_PROXY").Value)
	settings := decode[corev1.ConfigMap](r, "ConfigMap", "caravan-agent")
	assert.Equal(t, "config-repo", settings.Data["CARAVAN_GIT_SECRET"])
	assert.Equal(t, "us-east-1", settings.Data["AWS_REGION"])
	sa := decode[corev1.ServiceAccount](r, "ServiceAccount", "caravan-agent")
	assert.Equal(t, "arn:aws:iam::123456789012:role/caravan-agent", sa.Annotations["eks.amazonaws.com/role-arn"])
}

func TestAgentSettingsChangeRestartsThePods(t *testing.T) {
	checksum := func(url string) string {
		v := agentValues(map[string]any{"registry": map[string]any{"url": url}})
		return decode[appsv1.Deployment](render(t, charts.Agent, agentRelease, v), "Deployment", "caravan-agent").Spec.Template.Annotations["checksum/settings"]
	}
	assert.NotEqual(t, checksum("https://a.example.org"), checksum("https://b.example.org"))
}

func TestAgentRestrictedRBAC(t *testing.T) {
	appsRule := map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"get", "list", "watch", "create", "patch", "delete"}}
	r := render(t, charts.Agent, agentRelease, agentValues(map[string]any{
		"rbac": map[string]any{"clusterAdmin": false, "rules": []any{appsRule}},
		"git":  map[string]any{"credentialsSecret": "config-repo"},
	}))

	role := decode[rbacv1.ClusterRole](r, "ClusterRole", "caravan-agent")
	for _, rule := range role.Rules {
		assert.NotContains(t, rule.Resources, "*")
		assert.NotContains(t, rule.Verbs, "*")
		assert.Empty(t, rule.NonResourceURLs)
	}
	assert.Contains(t, role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}})
	assert.Contains(t, role.Rules, rbacv1.PolicyRule{APIGroups: []string{"caravan.io"}, Resources: []string{"clusterconfigs/status"}, Verbs: []string{"get", "update", "patch"}})
	assert.Equal(t, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch", "create", "patch", "delete"}},
		role.Rules[len(role.Rules)-1], "the user's rules come last")

	ns := decode[rbacv1.Role](r, "Role", "caravan-agent")
	assert.Equal(t, charts.AgentNamespace, ns.Namespace)
	assert.Contains(t, ns.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"},
		ResourceNames: []string{"caravan-last-assignment", "config-repo"}, Verbs: []string{"get", "update", "patch"}})
	binding := decode[rbacv1.RoleBinding](r, "RoleBinding", "caravan-agent")
	assert.Equal(t, "caravan-agent", binding.RoleRef.Name)
}

func TestAgentNetworkPolicy(t *testing.T) {
	r := render(t, charts.Agent, agentRelease, agentValues(map[string]any{"networkPolicy": map[string]any{
		"enabled":   true,
		"registry":  map[string]any{"cidrs": []any{"192.0.2.10/32"}, "ports": []any{8443}},
		"git":       map[string]any{"cidrs": []any{"198.51.100.0/24"}},
		"aws":       map[string]any{"cidrs": []any{"0.0.0.0/0"}},
		"apiServer": map[string]any{"cidrs": []any{"10.0.0.0/16"}},
	}}))

	np := decode[networkingv1.NetworkPolicy](r, "NetworkPolicy", "caravan-agent")
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes)
	assert.Equal(t, "caravan-agent", np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"])
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(protocol *corev1.Protocol, n int) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: protocol, Port: ptr.To(intstr.FromInt(n))}
	}
	to := func(cidr string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr}}}
	}
	require.Len(t, np.Spec.Egress, 5)
	assert.Equal(t, networkingv1.NetworkPolicyEgressRule{To: to("192.0.2.10/32"), Ports: []networkingv1.NetworkPolicyPort{port(&tcp, 8443)}}, np.Spec.Egress[0])
	assert.Equal(t, networkingv1.NetworkPolicyEgressRule{To: to("198.51.100.0/24"), Ports: []networkingv1.NetworkPolicyPort{port(&tcp, 443), port(&tcp, 22)}}, np.Spec.Egress[1])
	assert.Equal(t, to("0.0.0.0/0"), np.Spec.Egress[2].To)
	assert.Equal(t, networkingv1.NetworkPolicyEgressRule{To: to("10.0.0.0/16"), Ports: []networkingv1.NetworkPolicyPort{port(&tcp, 443), port(&tcp, 6443)}}, np.Spec.Egress[3])
	dns := np.Spec.Egress[4]
	assert.Equal(t, "kube-dns", dns.To[0].PodSelector.MatchLabels["k8s-app"])
	assert.Equal(t, "kube-system", dns.To[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
	assert.Equal(t, []networkingv1.NetworkPolicyPort{port(&udp, 53), port(&tcp, 53)}, dns.Ports)
}

func TestAgentServiceMonitor(t *testing.T) {
	r := render(t, charts.Agent, agentRelease, agentValues(map[string]any{
		"serviceMonitor": map[string]any{"enabled": true, "interval": "15s", "labels": map[string]any{"release": "prometheus"}},
	}))

	svc := decode[corev1.Service](r, "Service", "caravan-agent-metrics")
	assert.Equal(t, intstr.FromString("metrics"), svc.Spec.Ports[0].TargetPort)
	sm := r.find("ServiceMonitor", "caravan-agent")
	assert.Equal(t, "monitoring.coreos.com/v1", sm.GetAPIVersion())
	assert.Equal(t, "prometheus", sm.GetLabels()["release"])
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range selector {
		assert.Equal(t, v, svc.Labels[k], "the ServiceMonitor selects the metrics Service by %s", k)
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	require.Len(t, endpoints, 1)
	assert.Equal(t, map[string]any{"port": "metrics", "path": "/metrics", "interval": "15s"}, endpoints[0])
}

func TestCentralDefaultsToSQLite(t *testing.T) {
	r := render(t, charts.Central, centralRelease, map[string]any{})

	d := decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central")
	assert.Equal(t, ptr.To[int32](1), d.Spec.Replicas)
	assert.Equal(t, appsv1.RecreateDeploymentStrategyType, d.Spec.Strategy.Type)
	pod := d.Spec.Template.Spec
	assertHardened(t, pod)
	assert.Equal(t, ptr.To(false), pod.AutomountServiceAccountToken)
	c := pod.Containers[0]
	assert.Equal(t, "ghcr.io/caravan-gitops/caravan-central:v0.1.0", c.Image)
	assert.Equal(t, []string{"serve", "--listen=0.0.0.0:8080", "--log-level=info", "--insecure-http", "--admin-token-file=/etc/caravan/admin-token/token"}, c.Args)
	assert.Equal(t, "sqlite:///data/caravan.db", envNamed(c, "CARAVAN_DATABASE").Value)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, corev1.URISchemeHTTP, c.ReadinessProbe.HTTPGet.Scheme)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Contains(t, c.VolumeMounts, corev1.VolumeMount{Name: "data", MountPath: "/data"})

	pvc := decode[corev1.PersistentVolumeClaim](r, "PersistentVolumeClaim", "caravan-caravan-central-data")
	assert.Equal(t, "keep", pvc.Annotations["helm.sh/resource-policy"], "the database outlives an uninstall")
	assert.Equal(t, "1Gi", pvc.Spec.Resources.Requests.Storage().String())
	svc := decode[corev1.Service](r, "Service", "caravan-caravan-central")
	assert.Equal(t, int32(80), svc.Spec.Ports[0].Port)
	assert.Nil(t, r.lookup("Ingress", "caravan-caravan-central"))

	for _, u := range r.objects {
		assert.NotContains(t, []string{"Job", "Role", "RoleBinding"}, u.GetKind(), "no hook and no rights in the namespace: %s", u.GetName())
	}
}

// adminTokenVolume is the Deployment's volume of the first admin token.
func adminTokenVolume(t *testing.T, d *appsv1.Deployment) *corev1.SecretVolumeSource {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	assert.Contains(t, c.Args, "--admin-token-file=/etc/caravan/admin-token/token")
	assert.Contains(t, c.VolumeMounts, corev1.VolumeMount{Name: "admin-token", MountPath: "/etc/caravan/admin-token", ReadOnly: true})
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "admin-token" {
			require.NotNil(t, v.Secret)
			assert.Equal(t, []corev1.KeyToPath{{Key: "token", Path: "token"}}, v.Secret.Items)
			return v.Secret
		}
	}
	t.Fatal("no admin-token volume")
	return nil
}

func TestCentralMakesTheFirstAdminToken(t *testing.T) {
	var tokens []string
	for range 2 {
		r := render(t, charts.Central, centralRelease, map[string]any{})
		secret := decode[corev1.Secret](r, "Secret", "caravan-caravan-central-admin-token")
		assert.Equal(t, "keep", secret.Annotations["helm.sh/resource-policy"], "the token outlives an uninstall, like the database")
		assert.Regexp(t, `^cvn_[A-Za-z0-9]{40}$`, string(secret.Data["token"]))
		tokens = append(tokens, string(secret.Data["token"]))
		volume := adminTokenVolume(t, decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central"))
		assert.Equal(t, secret.Name, volume.SecretName)
	}
	assert.NotEqual(t, tokens[0], tokens[1], "random where no Secret exists yet")

	r := render(t, charts.Central, centralRelease, map[string]any{"adminToken": map[string]any{"secretName": "first-admin"}})
	r.find("Secret", "first-admin")
	assert.Equal(t, "first-admin", adminTokenVolume(t, decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central")).SecretName)
}

func TestCentralTakesAnExistingAdminTokenSecret(t *testing.T) {
	r := render(t, charts.Central, centralRelease, map[string]any{"adminToken": map[string]any{"existingSecret": "my-admin-token"}})
	for _, u := range r.objects {
		assert.NotEqual(t, "Secret", u.GetKind(), "the chart makes no Secret: %s", u.GetName())
	}
	assert.Equal(t, "my-admin-token", adminTokenVolume(t, decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central")).SecretName)
}

func TestCentralOnPostgreSQL(t *testing.T) {
	r := render(t, charts.Central, centralRelease, map[string]any{
		"replicas": 3,
		"storage":  map[string]any{"type": "postgres", "postgres": map[string]any{"urlSecret": map[string]any{"name": "db", "key": "dsn"}}},
	})

	d := decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central")
	assert.Equal(t, ptr.To[int32](3), d.Spec.Replicas)
	assert.Equal(t, appsv1.RollingUpdateDeploymentStrategyType, d.Spec.Strategy.Type)
	assert.Equal(t, ptr.To(intstr.FromInt(0)), d.Spec.Strategy.RollingUpdate.MaxUnavailable)
	c := d.Spec.Template.Spec.Containers[0]
	db := envNamed(c, "CARAVAN_DATABASE")
	assert.Equal(t, &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "dsn"}, db.ValueFrom.SecretKeyRef)
	assert.Nil(t, r.lookup("PersistentVolumeClaim", "caravan-caravan-central-data"))
	for _, v := range d.Spec.Template.Spec.Volumes {
		assert.Nil(t, v.PersistentVolumeClaim, "no volume with PostgreSQL")
	}
}

func TestCentralIngressTLSAndGit(t *testing.T) {
	r := render(t, charts.Central, centralRelease, map[string]any{
		"ingress":        map[string]any{"enabled": true, "className": "nginx", "host": "caravan.example.org", "tls": map[string]any{"secretName": "caravan-cert"}},
		"tls":            map[string]any{"secretName": "central-serving"},
		"git":            map[string]any{"auth": "basic", "credentialsSecret": "config-repo"},
		"repositoryURL":  "https://git.example.org/config.git",
		"serviceMonitor": map[string]any{"enabled": true},
	})

	ing := decode[networkingv1.Ingress](r, "Ingress", "caravan-caravan-central")
	assert.Equal(t, ptr.To("nginx"), ing.Spec.IngressClassName)
	assert.Equal(t, []networkingv1.IngressTLS{{Hosts: []string{"caravan.example.org"}, SecretName: "caravan-cert"}}, ing.Spec.TLS)
	assert.Equal(t, "caravan.example.org", ing.Spec.Rules[0].Host)
	assert.Equal(t, "caravan-caravan-central", ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name)

	c := decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central").Spec.Template.Spec.Containers[0]
	assert.Subset(t, c.Args, []string{"--tls-cert=/etc/caravan/tls/tls.crt", "--tls-key=/etc/caravan/tls/tls.key",
		"--repository-url=https://git.example.org/config.git", "--git-password-file=/etc/caravan/git/password"})
	assert.NotContains(t, c.Args, "--insecure-http")
	assert.Equal(t, corev1.URISchemeHTTPS, c.LivenessProbe.HTTPGet.Scheme)
	assert.Equal(t, "username", envNamed(c, "CARAVAN_GIT_USERNAME").ValueFrom.SecretKeyRef.Key)

	sm := r.find("ServiceMonitor", "caravan-caravan-central")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	require.Len(t, endpoints, 1)
	assert.Equal(t, "https", endpoints[0].(map[string]any)["scheme"])
}

func TestCentralWithoutAdminToken(t *testing.T) {
	r := render(t, charts.Central, centralRelease, map[string]any{"adminToken": map[string]any{"enabled": false}})
	assert.Nil(t, r.lookup("Secret", "caravan-caravan-central-admin-token"))
	pod := decode[appsv1.Deployment](r, "Deployment", "caravan-caravan-central").Spec.Template.Spec
	assert.NotContains(t, pod.Containers[0].Args, "--admin-token-file=/etc/caravan/admin-token/token")
	for _, v := range pod.Volumes {
		assert.NotEqual(t, "admin-token", v.Name)
	}
}
