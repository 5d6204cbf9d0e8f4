package moto

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"sigs.k8s.io/yaml"
)

// The front is a proxy that every client of a Server talks to (Endpoint):
// it passes every request to moto_server unchanged, and fills one gap of
// moto 5.2 where CloudFormation on AWS behaves otherwise.
//
// A group's launch template version given as Fn::GetAtt
// <LaunchTemplate>.LatestVersionNumber, as the CloudFormation reference asks
// ($Latest is documented as unsupported in AWS::AutoScaling::AutoScalingGroup
// LaunchTemplateSpecification): on AWS, a stack update that makes a new
// launch template version updates the group to it, in place: the group and
// its instances stay, and instances launched afterwards get the new
// version. moto resolves the GetAtt only when it creates the group: on an
// update its group keeps launching the old version (moto compares the
// group's template text, which did not change). So after an UpdateStack
// that moto accepted (moto completes it before it answers), the front reads
// the stack's template and, for every group whose version is that GetAtt,
// calls UpdateAutoScalingGroup with the launch template's latest version:
// the same group, its instances kept, as CloudFormation does. Then it
// answers the client, so that the update the client waits for is complete,
// group included. If the fill fails, the client gets a 500 naming why,
// rather than a stack silently unlike AWS's.
//
// Not filled: moto's update of a group whose own properties changed (sizes,
// subnets, a MixedInstancesPolicy's overrides) deletes and recreates it,
// with new instances, where CloudFormation updates it in place. No test
// here depends on instances surviving such a change; a test that does
// must not use moto for it.
type front struct {
	server *Server
	proxy  *httputil.ReverseProxy
}

// startFront puts the front before moto_server and makes it the server's
// Endpoint and Port.
func (s *Server) startFront() error {
	target, err := url.Parse(s.motoEndpoint)
	if err != nil {
		return err
	}
	f := &front{server: s, proxy: httputil.NewSingleHostReverseProxy(target)}
	f.proxy.ModifyResponse = f.afterResponse
	f.proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusInternalServerError)
		var msg strings.Builder
		_ = xml.EscapeText(&msg, []byte("test/moto front: "+err.Error()))
		fmt.Fprintf(w, frontErrorResponse, msg.String())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for moto's front: %w", err)
	}
	s.front = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.front.Serve(ln) }()
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.Endpoint = "http://localhost:" + strconv.Itoa(s.Port)
	return nil
}

// fillKey marks, in a request's context, an UpdateStack whose response
// triggers the fill: the stack and the request's region.
type fillKey struct{}

type fillTarget struct{ stack, region string }

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if form, ok := cloudFormationForm(r); ok && form.Get("Action") == "UpdateStack" {
		region := signedRegion(r)
		if region == "" {
			region = "us-east-1"
		}
		r = r.WithContext(context.WithValue(r.Context(), fillKey{}, fillTarget{stack: form.Get("StackName"), region: region}))
	}
	f.proxy.ServeHTTP(w, r)
}

// credentialScope is the region of a SigV4 Authorization header:
// Credential=KEY/DATE/REGION/SERVICE/aws4_request.
var credentialScope = regexp.MustCompile(`Credential=[^/]+/[0-9]+/([^/]+)/`)

func signedRegion(r *http.Request) string {
	if m := credentialScope.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		return m[1]
	}
	return ""
}

func (f *front) afterResponse(resp *http.Response) error {
	target, ok := resp.Request.Context().Value(fillKey{}).(fillTarget)
	if !ok || resp.StatusCode != http.StatusOK {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.server.followLatestVersions(ctx, target.region, target.stack); err != nil {
		return fmt.Errorf("after UpdateStack %s, moving its auto scaling groups to their launch template's latest version: %w", target.stack, err)
	}
	return nil
}

// followLatestVersions is the fill: each group of the stack whose version
// is its launch template's LatestVersionNumber is updated to that version.
func (s *Server) followLatestVersions(ctx context.Context, region, stack string) error {
	cfg := s.AWSConfig(region)
	cfg.BaseEndpoint = aws.String(s.motoEndpoint)
	cfn := cloudformation.NewFromConfig(cfg)
	tpl, err := cfn.GetTemplate(ctx, &cloudformation.GetTemplateInput{StackName: aws.String(stack)})
	if err != nil {
		return fmt.Errorf("reading the template: %w", err)
	}
	groups, err := groupsOnLatestVersion(aws.ToString(tpl.TemplateBody))
	if err != nil || len(groups) == 0 {
		return err
	}
	resources, err := cfn.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(stack)})
	if err != nil {
		return fmt.Errorf("listing the resources: %w", err)
	}
	physical := map[string]string{}
	for _, r := range resources.StackResources {
		physical[aws.ToString(r.LogicalResourceId)] = aws.ToString(r.PhysicalResourceId)
	}
	asg, ec2c := autoscaling.NewFromConfig(cfg), ec2.NewFromConfig(cfg)
	for group, launchTemplate := range groups {
		name, id := physical[group], physical[launchTemplate]
		if name == "" || id == "" {
			return fmt.Errorf("the stack has no %s or %s", group, launchTemplate)
		}
		lts, err := ec2c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{id}})
		if err != nil || len(lts.LaunchTemplates) != 1 {
			return errors.Join(fmt.Errorf("describing launch template %s", id), err)
		}
		latest := strconv.FormatInt(aws.ToInt64(lts.LaunchTemplates[0].LatestVersionNumber), 10)
		out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			return errors.Join(fmt.Errorf("describing auto scaling group %s", name), err)
		}
		in := toLatest(out.AutoScalingGroups[0], id, latest)
		if in == nil {
			continue
		}
		if _, err := asg.UpdateAutoScalingGroup(ctx, in); err != nil {
			return fmt.Errorf("updating auto scaling group %s to version %s of %s: %w", name, latest, id, err)
		}
	}
	return nil
}

// toLatest is the update that puts a group on a launch template version,
// nil when it is on it already. A MixedInstancesPolicy is given whole:
// moto's UpdateAutoScalingGroup drops the policy a request leaves out.
func toLatest(g astypes.AutoScalingGroup, id, version string) *autoscaling.UpdateAutoScalingGroupInput {
	in := &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: g.AutoScalingGroupName}
	spec := &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(id), Version: aws.String(version)}
	switch {
	case g.MixedInstancesPolicy != nil && g.MixedInstancesPolicy.LaunchTemplate != nil:
		current := g.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification
		if current != nil && aws.ToString(current.Version) == version {
			return nil
		}
		policy := *g.MixedInstancesPolicy
		lt := *policy.LaunchTemplate
		lt.LaunchTemplateSpecification = spec
		policy.LaunchTemplate = &lt
		in.MixedInstancesPolicy = &policy
	case g.LaunchTemplate != nil:
		if aws.ToString(g.LaunchTemplate.Version) == version {
			return nil
		}
		in.LaunchTemplate = spec
	default:
		return nil
	}
	return in
}

// groupsOnLatestVersion finds the auto scaling groups of a template whose
// launch template version is Fn::GetAtt <LT>.LatestVersionNumber, in any of
// its forms ({"Fn::GetAtt": [LT, LatestVersionNumber]}, "LT.LatestVersionNumber",
// or !GetAtt, whose tag the YAML reader drops): group -> LT, logical IDs.
func groupsOnLatestVersion(body string) (map[string]string, error) {
	var t struct {
		Resources map[string]struct {
			Type       string         `json:"Type"`
			Properties map[string]any `json:"Properties"`
		} `json:"Resources"`
	}
	if err := yaml.Unmarshal([]byte(body), &t); err != nil {
		return nil, fmt.Errorf("parsing the template: %w", err)
	}
	groups := map[string]string{}
	for name, r := range t.Resources {
		if r.Type != "AWS::AutoScaling::AutoScalingGroup" {
			continue
		}
		spec := lookup(r.Properties, "LaunchTemplate")
		if spec == nil {
			spec = lookup(r.Properties, "MixedInstancesPolicy", "LaunchTemplate", "LaunchTemplateSpecification")
		}
		if lt, ok := latestVersionOf(lookup(spec, "Version")); ok {
			groups[name] = lt
		}
	}
	return groups, nil
}

func lookup(v any, path ...string) any {
	for _, key := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

// latestVersionOf reads a GetAtt of LatestVersionNumber: the resource.
func latestVersionOf(v any) (string, bool) {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		v = m["Fn::GetAtt"]
	}
	switch x := v.(type) {
	case string:
		lt, ok := strings.CutSuffix(x, ".LatestVersionNumber")
		return lt, ok && lt != ""
	case []any:
		if len(x) == 2 && x[1] == "LatestVersionNumber" {
			lt, ok := x[0].(string)
			return lt, ok
		}
	}
	return "", false
}

// frontErrorResponse is CloudFormation's error shape, which the SDK reads.
const frontErrorResponse = `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <Error>
    <Type>Receiver</Type>
    <Code>InternalFailure</Code>
    <Message>%s</Message>
  </Error>
  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>`
