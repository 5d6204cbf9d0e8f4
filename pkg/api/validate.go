package api

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/window"
)

var (
	accountIDPattern     = regexp.MustCompile(`^aws:[0-9]{12}$`)
	regionPattern        = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	clusterIDPattern     = regexp.MustCompile(`^(aws:[0-9]{12}):([a-z]{2}(?:-[a-z]+)+-[0-9]+):([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$`)
	dnsLabelPattern      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	configKeyPattern     = regexp.MustCompile(`^[a-z0-9_]+$`)
	environmentPattern   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	branchPattern        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$`)
	labelKeyPattern      = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValuePattern    = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	instanceTypePattern  = regexp.MustCompile(`^[a-z0-9-]+\.[a-z0-9-]+$`)
	tokenNamePattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)
	taintEffects         = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
	discountStrategies   = []string{DiscountNone, DiscountSpot}
	maxConfigValueLength = 64 * 1024
	maxChannelPosition   = 1000000
)

// profilePattern is a node pool's profile: the profiles the reference
// node-pool.yaml knows, master or master-... (control plane) and worker or
// worker-.... A profile reaches node labels and the node's boot script, so
// it is a name of [a-z0-9-] parts, never "-" or anything a template could
// read as more than a name.
var profilePattern = regexp.MustCompile(`^(master|worker)(-[a-z0-9]+)*$`)

// ParseClusterID splits a cluster id into its account, region and local id.
func ParseClusterID(id string) (account, region, local string, ok bool) {
	m := clusterIDPattern.FindStringSubmatch(id)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// Normalize fills the defaults of an account that a request left out.
func (a *InfrastructureAccount) Normalize() {
	if a.LifecycleStatus == "" {
		a.LifecycleStatus = accountLifecycleDefault
	}
	if a.Criticality == 0 {
		a.Criticality = defaultAccountCriticalityLevel
	}
	if a.ConfigItems == nil {
		a.ConfigItems = map[string]string{}
	}
}

// Validate checks every field of an account.
func (a *InfrastructureAccount) Validate() error {
	v := &ValidationError{}
	if !accountIDPattern.MatchString(a.ID) {
		v.add("id", "must look like aws:123456789012, got %q", a.ID)
	}
	if strings.TrimSpace(a.Name) == "" {
		v.add("name", "must not be empty")
	}
	if strings.TrimSpace(a.Owner) == "" {
		v.add("owner", "must not be empty")
	}
	validateEnvironment(v, "environment", a.Environment)
	if !slices.Contains([]string{"ready", "decommissioned"}, a.LifecycleStatus) {
		v.add("lifecycle_status", "must be one of ready, decommissioned, got %q", a.LifecycleStatus)
	}
	validateCriticality(v, "criticality", a.Criticality)
	validateConfigItems(v, "config_items", a.ConfigItems)
	return v.err()
}

// Normalize fills the defaults of a cluster that a request left out.
func (c *Cluster) Normalize() {
	if c.Provider == "" {
		c.Provider = ProviderAWS
	}
	if c.LifecycleStatus == "" {
		c.LifecycleStatus = LifecycleRequested
	}
	if c.CriticalityLevel == 0 {
		c.CriticalityLevel = defaultClusterCriticalityLevel
	}
	if c.ConfigItems == nil {
		c.ConfigItems = map[string]string{}
	}
	if c.Alias == "" {
		if _, _, local, ok := ParseClusterID(c.ID); ok {
			c.Alias = local
		}
	}
	for i := range c.NodePools {
		c.NodePools[i].Normalize()
	}
}

// Validate checks every field of a cluster that can be checked without the
// store; whether its account and channel exist is the store's to check.
func (c *Cluster) Validate() error {
	v := &ValidationError{}
	account, region, _, ok := ParseClusterID(c.ID)
	switch {
	case !ok:
		v.add("id", "must look like aws:123456789012:eu-central-1:kube-1, got %q", c.ID)
	case account != c.InfrastructureAccount:
		v.add("infrastructure_account", "must be %q, the account in the cluster id, got %q", account, c.InfrastructureAccount)
	case region != c.Region:
		v.add("region", "must be %q, the region in the cluster id, got %q", region, c.Region)
	}
	if !accountIDPattern.MatchString(c.InfrastructureAccount) {
		v.add("infrastructure_account", "must look like aws:123456789012, got %q", c.InfrastructureAccount)
	}
	if !regionPattern.MatchString(c.Region) {
		v.add("region", "must be an AWS region such as eu-central-1, got %q", c.Region)
	}
	if !dnsLabelPattern.MatchString(c.Alias) {
		v.add("alias", "must be a DNS label (lower case letters, digits, '-'), got %q", c.Alias)
	}
	validateURL(v, "api_server_url", c.APIServerURL)
	validateEnvironment(v, "environment", c.Environment)
	if c.Channel == "" {
		v.add("channel", "must not be empty")
	}
	if c.Provider != ProviderAWS {
		v.add("provider", "must be %q, got %q", ProviderAWS, c.Provider)
	}
	validateCriticality(v, "criticality_level", c.CriticalityLevel)
	if !slices.Contains(LifecycleStatuses, c.LifecycleStatus) {
		v.add("lifecycle_status", "must be one of %s, got %q", strings.Join(LifecycleStatuses, ", "), c.LifecycleStatus)
	}
	validateConfigItems(v, "config_items", c.ConfigItems)
	seen := map[string]bool{}
	for i := range c.NodePools {
		p := &c.NodePools[i]
		if seen[p.Name] {
			v.add("node_pools["+p.Name+"].name", "is used twice")
		}
		seen[p.Name] = true
		p.validateInto(v, "node_pools["+strconv.Itoa(i)+"].")
	}
	return v.err()
}

// Normalize fills the defaults of a node pool that a request left out.
func (p *NodePool) Normalize() {
	if p.DiscountStrategy == "" {
		p.DiscountStrategy = defaultNodePoolDiscountStrategy
	}
	if p.ConfigItems == nil {
		p.ConfigItems = map[string]string{}
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if p.Taints == nil {
		p.Taints = []Taint{}
	}
	if p.InstanceTypes == nil {
		p.InstanceTypes = []string{}
	}
}

// Validate checks every field of a node pool.
func (p *NodePool) Validate() error {
	v := &ValidationError{}
	p.validateInto(v, "")
	return v.err()
}

func (p *NodePool) validateInto(v *ValidationError, prefix string) {
	if !dnsLabelPattern.MatchString(p.Name) {
		v.add(prefix+"name", "must be a DNS label (lower case letters, digits, '-'), got %q", p.Name)
	}
	if !profilePattern.MatchString(p.Profile) {
		v.add(prefix+"profile", "must be master, worker, or either followed by -name parts of lower case letters and digits (such as worker-default), got %q", p.Profile)
	}
	if len(p.InstanceTypes) == 0 {
		v.add(prefix+"instance_types", "must name at least one instance type")
	}
	for i, t := range p.InstanceTypes {
		if !instanceTypePattern.MatchString(t) {
			v.add(prefix+"instance_types["+strconv.Itoa(i)+"]", "must be an EC2 instance type such as m6i.large, got %q", t)
		}
	}
	if p.MinSize < 0 {
		v.add(prefix+"min_size", "must not be negative, got %d", p.MinSize)
	}
	if p.MaxSize < p.MinSize {
		v.add(prefix+"max_size", "must be at least min_size (%d), got %d", p.MinSize, p.MaxSize)
	}
	if p.MaxSize > 1000 {
		v.add(prefix+"max_size", "must be at most 1000, got %d", p.MaxSize)
	}
	if !slices.Contains(discountStrategies, p.DiscountStrategy) {
		v.add(prefix+"discount_strategy", "must be one of none, spot, got %q", p.DiscountStrategy)
	}
	validateConfigItems(v, prefix+"config_items", p.ConfigItems)
	for k, val := range p.Labels {
		if !labelKeyPattern.MatchString(k) {
			v.add(prefix+"labels", "key %q is not a valid Kubernetes label key", k)
		}
		if !labelValuePattern.MatchString(val) {
			v.add(prefix+"labels."+k, "value %q is not a valid Kubernetes label value", val)
		}
	}
	for i, t := range p.Taints {
		field := prefix + "taints[" + strconv.Itoa(i) + "]"
		if !labelKeyPattern.MatchString(t.Key) {
			v.add(field+".key", "%q is not a valid taint key", t.Key)
		}
		if !labelValuePattern.MatchString(t.Value) {
			v.add(field+".value", "%q is not a valid taint value", t.Value)
		}
		if !slices.Contains(taintEffects, t.Effect) {
			v.add(field+".effect", "must be one of %s, got %q", strings.Join(taintEffects, ", "), t.Effect)
		}
	}
}

// Validate checks every field of a channel.
func (c *Channel) Validate() error {
	v := &ValidationError{}
	if !dnsLabelPattern.MatchString(c.Name) {
		v.add("name", "must be a DNS label (lower case letters, digits, '-'), got %q", c.Name)
	}
	if !branchPattern.MatchString(c.Branch) || strings.Contains(c.Branch, "..") || strings.HasSuffix(c.Branch, "/") || strings.HasSuffix(c.Branch, ".lock") {
		v.add("branch", "must be a git branch name, got %q", c.Branch)
	}
	if c.Position < 0 || c.Position > maxChannelPosition {
		v.add("position", "must be from 0 to %d, got %d", maxChannelPosition, c.Position)
	}
	if c.RepositoryURL != "" {
		validateRepositoryURL(v, "repository_url", c.RepositoryURL)
	}
	if c.PromotionSoak != "" {
		validatePromotionSoak(v, "promotion_soak", c.PromotionSoak)
	}
	validateGate(v, "gate", c.Gate)
	return v.err()
}

// Validate checks the fields of a block that a user sets.
func (b *Block) Validate() error {
	v := &ValidationError{}
	if strings.TrimSpace(b.Reason) == "" {
		v.add("reason", "must say why updates are blocked")
	}
	if len(b.Reason) > 1024 {
		v.add("reason", "must be at most 1024 characters")
	}
	if b.NodePool != "" && !dnsLabelPattern.MatchString(b.NodePool) {
		v.add("node_pool", "must be a node pool name, got %q", b.NodePool)
	}
	if b.Until != nil && !b.Until.After(b.Since) {
		v.add("until", "must be after since (%s)", b.Since.Format("2006-01-02T15:04:05Z07:00"))
	}
	return v.err()
}

// ValidateToken checks a token request.
func ValidateToken(name, role, clusterID string) error {
	v := &ValidationError{}
	if !tokenNamePattern.MatchString(name) {
		v.add("name", "must be 1 to 128 letters, digits or ._@-, got %q", name)
	}
	if !slices.Contains(Roles, role) {
		v.add("role", "must be one of %s, got %q", strings.Join(Roles, ", "), role)
	}
	switch {
	case role == RoleAgent && clusterID == "":
		v.add("cluster_id", "an agent token must be bound to a cluster")
	case role != RoleAgent && clusterID != "":
		v.add("cluster_id", "only an agent token is bound to a cluster")
	case clusterID != "":
		if _, _, _, ok := ParseClusterID(clusterID); !ok {
			v.add("cluster_id", "must look like aws:123456789012:eu-central-1:kube-1, got %q", clusterID)
		}
	}
	return v.err()
}

// Validate checks an agent's status report.
func (s *ClusterStatus) Validate() error {
	v := &ValidationError{}
	if !slices.Contains(Phases, s.Phase) {
		v.add("phase", "must be one of %s, got %q", strings.Join(Phases, ", "), s.Phase)
	}
	for name, val := range map[string]string{"current_version": s.CurrentVersion, "next_version": s.NextVersion, "last_version": s.LastVersion, "agent_version": s.AgentVersion} {
		if len(val) > 256 {
			v.add(name, "must be at most 256 characters")
		}
	}
	if len(s.Problems) > 100 {
		v.add("problems", "must list at most 100 problems, got %d", len(s.Problems))
	}
	for i, p := range s.Problems {
		if strings.TrimSpace(p.Type) == "" {
			v.add("problems["+strconv.Itoa(i)+"].type", "must not be empty")
		}
		if strings.TrimSpace(p.Title) == "" {
			v.add("problems["+strconv.Itoa(i)+"].title", "must not be empty")
		}
	}
	if s.Drift != nil {
		s.Drift.validate(v)
	}
	seen := map[string]bool{}
	for i, p := range s.NodePools {
		field := "node_pools[" + strconv.Itoa(i) + "]"
		if p.Name == "" || seen[p.Name] {
			v.add(field+".name", "must be a distinct node pool name, got %q", p.Name)
		}
		seen[p.Name] = true
		if p.NodesTotal < 0 || p.Outdated < 0 || p.Draining < 0 {
			v.add(field, "counts must not be negative")
		}
		if len(p.HeldBy) > 200 {
			v.add(field+".held_by", "must be at most 200 characters")
		}
	}
	return v.err()
}

func validateEnvironment(v *ValidationError, field, env string) {
	if !environmentPattern.MatchString(env) {
		v.add(field, "must be a lower case name such as production or test, got %q", env)
	}
}

func validateCriticality(v *ValidationError, field string, level int) {
	if level < 1 || level > 3 {
		v.add(field, "must be 1, 2 or 3, got %d", level)
	}
}

func validateConfigItems(v *ValidationError, field string, items map[string]string) {
	for k, val := range items {
		if !configKeyPattern.MatchString(k) {
			v.add(field, "key %q must match [a-z0-9_]+", k)
		}
		if len(val) > maxConfigValueLength {
			v.add(field+"."+k, "value must be at most %d bytes", maxConfigValueLength)
		}
	}
	// A window that does not parse would hold every version of the cluster
	// back: it is refused here, so it never reaches an agent.
	for _, k := range []string{ConfigUpdateWindows, ConfigNodeUpdateWindows} {
		raw, ok := items[k]
		if !ok || len(raw) > maxConfigValueLength {
			continue
		}
		if _, err := window.Parse(raw); err != nil {
			v.add(field+"."+k, "%s", err.Error())
		}
	}
}

// maxFreezeReason bounds a freeze's reason, like a block's.
const maxFreezeReason = 1024

// Validate checks the fields of a freeze that a user sets. Since must be
// set (the registry makes it now when a request leaves it out) for Until to
// be checked against it.
func (f *Freeze) Validate() error {
	v := &ValidationError{}
	if strings.TrimSpace(f.Reason) == "" {
		v.add("reason", "must say why changes are frozen")
	}
	if len(f.Reason) > maxFreezeReason {
		v.add("reason", "must be at most %d characters", maxFreezeReason)
	}
	switch {
	case f.All && f.Channel != "":
		v.add("channel", "a freeze of the whole fleet (all) names no channel, got %q", f.Channel)
	case f.All && f.Environment != "":
		v.add("environment", "a freeze of the whole fleet (all) names no environment, got %q", f.Environment)
	case !f.All && f.Channel == "" && f.Environment == "":
		v.add("all", "a freeze covers a channel, an environment (or both) or the whole fleet (all: true); it names none")
	}
	if f.Channel != "" && !dnsLabelPattern.MatchString(f.Channel) {
		v.add("channel", "must be a channel name, got %q", f.Channel)
	}
	if f.Environment != "" {
		validateEnvironment(v, "environment", f.Environment)
	}
	switch {
	case f.Until.IsZero():
		v.add("until", "must say when the freeze ends")
	case f.Since.IsZero():
	case !f.Until.After(f.Since):
		v.add("until", "must be after since (%s), got %s", f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	case f.Until.After(f.Since.AddDate(1, 0, 0)):
		v.add("until", "must be at most a year after since (%s), got %s", f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	}
	return v.err()
}

func validateURL(v *ValidationError, field, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.add(field, "must be an absolute http(s) URL, got %q", raw)
	}
}

func validateRepositoryURL(v *ValidationError, field, raw string) {
	if strings.HasPrefix(raw, "git@") && strings.Contains(raw, ":") {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains([]string{"https", "http", "ssh", "file"}, u.Scheme) || (u.Scheme != "file" && u.Host == "") {
		v.add(field, "must be a git URL (https://, ssh://, git@host:path or file://), got %q", raw)
	}
}

// ValidConfigKey reports whether key is a valid config item key.
func ValidConfigKey(key string) bool { return configKeyPattern.MatchString(key) }
