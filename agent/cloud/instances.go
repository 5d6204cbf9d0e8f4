package cloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// ec2Instances reads instances with EC2's DescribeInstances, sent as the
// signed query request the SDK would send. The SDK's EC2 client would link
// all of EC2's hundreds of operations into the agent (text/template's
// reflection keeps every method of a reachable type): 37 MB more binary and
// about 5 MiB more memory in every cluster, for this one read.
type ec2Instances struct {
	http        *http.Client
	credentials aws.CredentialsProvider
	signer      *v4.Signer
	region      string
	endpoint    string
}

// NewInstances returns the EC2 instance reader of a region; endpoint, when
// set, replaces EC2's regional endpoint (an emulator's).
func NewInstances(cfg aws.Config, region, endpoint string) nodes.Instances {
	httpClient, ok := cfg.HTTPClient.(*http.Client)
	if !ok || httpClient == nil {
		httpClient = &http.Client{Timeout: time.Minute}
	}
	if endpoint == "" {
		endpoint = "https://ec2." + region + ".amazonaws.com"
	}
	return &ec2Instances{http: httpClient, credentials: cfg.Credentials, signer: v4.NewSigner(), region: region, endpoint: strings.TrimSuffix(endpoint, "/") + "/"}
}

// describeResponse is the part of DescribeInstances' answer the roll reads.
type describeResponse struct {
	Reservations []struct {
		Instances []struct {
			ID        string `xml:"instanceId"`
			Type      string `xml:"instanceType"`
			Lifecycle string `xml:"instanceLifecycle"`
			Tags      []struct {
				Key   string `xml:"key"`
				Value string `xml:"value"`
			} `xml:"tagSet>item"`
		} `xml:"instancesSet>item"`
	} `xml:"reservationSet>item"`
	NextToken string `xml:"nextToken"`
}

type ec2Error struct {
	Errors []struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Errors>Error"`
}

// Describe returns the facts of the instances, a page at a time.
func (e *ec2Instances) Describe(ctx context.Context, ids []string) ([]nodes.InstanceFacts, error) {
	var out []nodes.InstanceFacts
	token := ""
	for {
		form := url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}}
		for i, id := range ids {
			form.Set("InstanceId."+strconv.Itoa(i+1), id)
		}
		if token != "" {
			form.Set("NextToken", token)
		}
		var page describeResponse
		if err := e.call(ctx, form, &page); err != nil {
			return nil, fmt.Errorf("describing the instances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				facts := nodes.InstanceFacts{ID: i.ID, Type: i.Type, Spot: i.Lifecycle == "spot"}
				for _, t := range i.Tags {
					if t.Key == nodes.TagRevision {
						facts.Revision = t.Value
					}
				}
				out = append(out, facts)
			}
		}
		if token = page.NextToken; token == "" {
			return out, nil
		}
	}
}

// callAttempts: EC2 throttles with 503 RequestLimitExceeded and fails now
// and then with 500; a few tries with backoff ride them out.
const callAttempts = 5

func (e *ec2Instances) call(ctx context.Context, form url.Values, into any) error {
	var err error
	for attempt := range callAttempts {
		var retry bool
		if retry, err = e.once(ctx, form, into); !retry {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(1<<attempt) * 200 * time.Millisecond):
		}
	}
	return err
}

// once sends the request; it says whether a failure is worth a retry.
func (e *ec2Instances) once(ctx context.Context, form url.Values, into any) (bool, error) {
	body := []byte(form.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256(body)
	creds, err := e.credentials.Retrieve(ctx)
	if err != nil {
		return false, fmt.Errorf("AWS credentials: %w", err)
	}
	if err := e.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ec2", e.region, time.Now()); err != nil {
		return false, fmt.Errorf("signing: %w", err)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return true, err
	}
	if resp.StatusCode/100 != 2 {
		var apiErr ec2Error
		msg := strings.TrimSpace(string(data))
		if xml.Unmarshal(data, &apiErr) == nil && len(apiErr.Errors) > 0 {
			msg = apiErr.Errors[0].Code + ": " + apiErr.Errors[0].Message
		}
		return resp.StatusCode >= 500 || resp.StatusCode == 429, fmt.Errorf("EC2 answered %s: %s", resp.Status, msg)
	}
	return false, xml.Unmarshal(data, into)
}
