package azuretest

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

func (c *Cloud) wireNetwork() {
	nics := &c.network.InterfacesServer
	nics.Get = c.getNIC
	nics.BeginCreateOrUpdate = c.putNIC
	nics.BeginDelete = c.deleteNIC
	nics.NewListPager = c.listNICs
	c.network.SubnetsServer.Get = c.getSubnet
}

func (c *Cloud) getNIC(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (resp azfake.Responder[armnetwork.InterfacesClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("NetworkInterfaces.Get")
	if !c.checkRG(rg, &errResp) {
		return
	}
	nic, ok := c.nics[strings.ToLower(name)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armnetwork.InterfacesClientGetResponse{Interface: clone(*nic)}, nil)
	return
}

func (c *Cloud) putNIC(_ context.Context, rg, name string, params armnetwork.Interface, _ *armnetwork.InterfacesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.InterfacesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("NetworkInterfaces.CreateOrUpdate")
	if !c.checkRG(rg, &errResp) {
		return
	}
	for k := range params.Tags {
		if invalidTagName.MatchString(k) {
			errResp.SetResponseError(http.StatusBadRequest, "InvalidTagNameCharacters")
			return
		}
	}
	p := params.Properties
	if p == nil || len(p.IPConfigurations) == 0 || p.IPConfigurations[0].Properties == nil || p.IPConfigurations[0].Properties.Subnet == nil {
		errResp.SetResponseError(http.StatusBadRequest, "InvalidRequestFormat")
		return
	}
	if _, ok := c.subnets[strings.ToLower(deref(p.IPConfigurations[0].Properties.Subnet.ID))]; !ok {
		errResp.SetResponseError(http.StatusBadRequest, "InvalidResourceReference")
		return
	}
	c.count("Subnets.Join")
	key := strings.ToLower(name)
	nic := clone(params)
	if cur, ok := c.nics[key]; ok {
		if cur.Properties.VirtualMachine != nil && deref(cur.Properties.EnableAcceleratedNetworking) != deref(p.EnableAcceleratedNetworking) {
			errResp.SetResponseError(http.StatusBadRequest, "CannotChangeAcceleratedNetworkingWhileAttached")
			return
		}
		nic.Properties.VirtualMachine = cur.Properties.VirtualMachine
	}
	nic.ID, nic.Name = ptr(c.nicID(name)), &name
	nic.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
	nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress = ptr(fmt.Sprintf("10.224.%d.%d", len(c.nics)/250, len(c.nics)%250+4))
	c.nics[key] = &nic
	resp = lro(c.opts.LROPolls, http.StatusOK, armnetwork.InterfacesClientCreateOrUpdateResponse{Interface: clone(nic)})
	return
}

func (c *Cloud) deleteNIC(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientBeginDeleteOptions) (resp azfake.PollerResponder[armnetwork.InterfacesClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("NetworkInterfaces.Delete")
	if !c.checkRG(rg, &errResp) {
		return
	}
	if nic, ok := c.nics[strings.ToLower(name)]; ok && nic.Properties.VirtualMachine != nil {
		errResp.SetResponseError(http.StatusBadRequest, "NicInUse")
		return
	}
	delete(c.nics, strings.ToLower(name))
	resp = lroDelete[armnetwork.InterfacesClientDeleteResponse](c.opts.LROPolls)
	return
}

func (c *Cloud) listNICs(rg string, _ *armnetwork.InterfacesClientListOptions) (resp azfake.PagerResponder[armnetwork.InterfacesClientListResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("NetworkInterfaces.List")
	page := armnetwork.InterfacesClientListResponse{}
	if strings.EqualFold(rg, c.opts.ResourceGroup) {
		for _, k := range sortedKeys(c.nics) {
			n := clone(*c.nics[k])
			page.Value = append(page.Value, &n)
		}
	}
	resp.AddPage(http.StatusOK, page, nil)
	return
}

func (c *Cloud) getSubnet(_ context.Context, rg, vnet, subnet string, _ *armnetwork.SubnetsClientGetOptions) (resp azfake.Responder[armnetwork.SubnetsClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Subnets.Get")
	id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s/subnets/%s", c.opts.SubscriptionID, rg, vnet, subnet)
	prefix, ok := c.subnets[strings.ToLower(id)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armnetwork.SubnetsClientGetResponse{Subnet: armnetwork.Subnet{ID: &id, Name: &subnet,
		Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: &prefix}}}, nil)
	return
}
