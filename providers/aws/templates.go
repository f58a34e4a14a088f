package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// TemplateIdleTTL is how long a launch template may go unused before it is
// deleted; the next launch that needs it makes it again.
const TemplateIdleTTL = time.Hour

// templateRecord is one launch template this cluster's Stowage made.
type templateRecord struct {
	nodeClass string
	lastUsed  time.Time
}

// templateName is content-addressed: the hash covers the whole template, so a
// changed node class gets a new template and fleets are never edited under
// them.
func (p *Provider) templateName(data *ec2types.RequestLaunchTemplateData) (string, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("hashing launch template: %w", err)
	}
	sum := sha256.Sum256(raw)
	return fmt.Sprintf("stowage/%s/%s", p.opts.ClusterName, hex.EncodeToString(sum[:])[:20]), nil
}

// ensureLaunchTemplate returns the name of a launch template holding data,
// creating it when neither the cache nor EC2 has it. The cache is rebuilt
// from the cluster tag after a restart, so a restart neither recreates nor
// forgets templates.
func (p *Provider) ensureLaunchTemplate(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, data *ec2types.RequestLaunchTemplateData) (string, error) {
	name, err := p.templateName(data)
	if err != nil {
		return "", err
	}
	if err := p.loadTemplates(ctx); err != nil {
		return "", err
	}
	if p.touchTemplate(name) {
		return name, nil
	}
	_, err = p.opts.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: data,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: toTags(map[string]string{
			TagCluster: p.opts.ClusterName, TagNodeClass: nc.Name, TagNodePool: claim.Labels[v1.LabelNodePool],
		})}},
	})
	if err != nil && errorCode(err) != codeLaunchTemplateAlreadyExists {
		return "", fmt.Errorf("creating launch template %s: %w", name, err)
	}
	p.mu.Lock()
	p.templates[name] = &templateRecord{nodeClass: nc.Name, lastUsed: p.clock.Now()}
	p.mu.Unlock()
	return name, nil
}

func (p *Provider) touchTemplate(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.templates[name]
	if ok {
		r.lastUsed = p.clock.Now()
	}
	return ok
}

// forgetTemplate drops a template EC2 says is gone, so the next launch makes it again.
func (p *Provider) forgetTemplate(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.templates, name)
}

// loadTemplates fills the cache from EC2 once.
func (p *Provider) loadTemplates(ctx context.Context) error {
	p.mu.Lock()
	loaded := p.templatesLoaded
	p.mu.Unlock()
	if loaded {
		return nil
	}
	return p.syncTemplates(ctx)
}

// syncTemplates lists the cluster's launch templates: new ones are recorded
// as used now, ones EC2 no longer has are dropped.
func (p *Provider) syncTemplates(ctx context.Context) error {
	lts, err := p.listTemplates(ctx, map[string]string{TagCluster: p.opts.ClusterName})
	if err != nil {
		return fmt.Errorf("listing launch templates of cluster %s: %w", p.opts.ClusterName, err)
	}
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, lt := range lts {
		name := aws.ToString(lt.LaunchTemplateName)
		seen[name] = true
		if _, ok := p.templates[name]; !ok {
			p.templates[name] = &templateRecord{nodeClass: tagValue(lt.Tags, TagNodeClass), lastUsed: now}
		}
	}
	for name := range p.templates {
		if !seen[name] {
			delete(p.templates, name)
		}
	}
	p.templatesLoaded = true
	return nil
}

func (p *Provider) listTemplates(ctx context.Context, tags map[string]string) ([]ec2types.LaunchTemplate, error) {
	var filters []ec2types.Filter
	for k, v := range tags {
		filters = append(filters, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
	}
	var out []ec2types.LaunchTemplate
	pages := ec2.NewDescribeLaunchTemplatesPaginator(p.opts.EC2, &ec2.DescribeLaunchTemplatesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.LaunchTemplates...)
	}
	return out, nil
}

func (p *Provider) deleteTemplate(ctx context.Context, name string) error {
	_, err := p.opts.EC2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String(name)})
	if err != nil && errorCode(err) != codeLaunchTemplateNotFound && errorCode(err) != codeLaunchTemplateIDNotFound {
		return fmt.Errorf("deleting launch template %s: %w", name, err)
	}
	p.forgetTemplate(name)
	return nil
}

// DeleteLaunchTemplates deletes every launch template this cluster made for
// the node class. The EC2NodeClass finalizer calls it once no NodeClaim uses
// the class; machines already running do not need their template.
func (p *Provider) DeleteLaunchTemplates(ctx context.Context, nodeClass string) error {
	lts, err := p.listTemplates(ctx, map[string]string{TagCluster: p.opts.ClusterName, TagNodeClass: nodeClass})
	if err != nil {
		return fmt.Errorf("listing launch templates of EC2NodeClass %s: %w", nodeClass, err)
	}
	var errs []error
	for _, lt := range lts {
		errs = append(errs, p.deleteTemplate(ctx, aws.ToString(lt.LaunchTemplateName)))
	}
	return errors.Join(errs...)
}

// CollectLaunchTemplates deletes templates unused for TemplateIdleTTL and those
// whose node class is gone.
func (p *Provider) CollectLaunchTemplates(ctx context.Context) error {
	if err := p.syncTemplates(ctx); err != nil {
		return err
	}
	now := p.clock.Now()
	p.mu.Lock()
	var idle []string
	classes := map[string][]string{}
	for name, r := range p.templates {
		switch {
		case now.Sub(r.lastUsed) >= TemplateIdleTTL:
			idle = append(idle, name)
		case r.nodeClass != "":
			classes[r.nodeClass] = append(classes[r.nodeClass], name)
		}
	}
	p.mu.Unlock()
	if p.opts.Kube != nil {
		for class, names := range classes {
			err := p.opts.Kube.Get(ctx, client.ObjectKey{Name: class}, &awsv1.EC2NodeClass{})
			if apierrors.IsNotFound(err) {
				idle = append(idle, names...)
			}
		}
	}
	var errs []error
	for _, name := range idle {
		if err := p.deleteTemplate(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		log.FromContext(ctx).WithName(Name).V(1).Info("deleted unused launch template", "launchTemplate", name)
	}
	return errors.Join(errs...)
}

func tagValue(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
