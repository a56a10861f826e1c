"""Flow control and STS GetCallerIdentity through the official SDKs
(alibabacloud-aiworkspace20210204, alibabacloud-sts20150401), unchanged.

Alibaba Cloud's AIWorkSpace flow control is per region, API and main
account: the AccessKey and the STS key of one main account share one budget
per API (docs/cloud-rules.md, "Flow control")."""
import pytest
from alibabacloud_aiworkspace20210204 import models as ws
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import exceptions as openapi_errors
from alibabacloud_tea_openapi import models as open_api_models

from conftest import env
from test_pai_sdk import IMAGE, ak_client, endpoint, sts_client


def sts(**creds):
    config = open_api_models.Config(endpoint=endpoint(), protocol="http", region_id="cn-hangzhou", **creds)
    return StsClient(config)


def test_get_caller_identity_of_an_access_key():
    c = sts(access_key_id=env("PAI_AK"), access_key_secret=env("PAI_SECRET"))
    body = c.get_caller_identity().body
    account = env("PAI_ACCOUNT_ID")
    assert body.account_id == account
    assert body.identity_type == "RAMUser"
    assert body.arn == f"acs:ram::{account}:user/{env('PAI_AK')}"
    assert body.user_id and body.principal_id == body.user_id
    assert body.request_id


def test_get_caller_identity_of_an_sts_token():
    c = sts(access_key_id=env("PAI_STS_AK"), access_key_secret=env("PAI_STS_SECRET"), security_token=env("PAI_STS_TOKEN"))
    body = c.get_caller_identity().body
    assert body.account_id == env("PAI_ACCOUNT_ID")
    assert body.identity_type == "AssumedRoleUser"
    assert body.arn.startswith(f"acs:ram::{env('PAI_ACCOUNT_ID')}:assumed-role/")
    assert body.role_id and body.principal_id.startswith(body.role_id + ":")


def test_get_caller_identity_with_a_wrong_secret():
    c = sts(access_key_id=env("PAI_AK"), access_key_secret="wrong")
    with pytest.raises(openapi_errors.ClientException) as e:
        c.get_caller_identity()
    assert e.value.code == "SignatureDoesNotMatch"


def add(client):
    return client.add_image_labels(IMAGE, ws.AddImageLabelsRequest(labels=[ws.AddImageLabelsRequestLabels(key="system.chipType", value="GPU")]))


def test_flow_control_is_shared_by_the_keys_of_a_main_account(sim):
    sim.set_flow_control(enabled=True, rates={"AddImageLabels": 1})
    before = sim.counters()
    # The AccessKey spends the main account's one AddImageLabels a second;
    # the STS key of the same main account then gets the documented error.
    assert add(ak_client()).status_code == 200
    with pytest.raises(openapi_errors.ThrottlingException) as e:
        add(sts_client())
    assert (e.value.status_code, e.value.code) == (400, "Throttling.User")
    assert "Request was denied due to user flow control." in e.value.message
    assert e.value.retry_after and e.value.retry_after > 0
    # Another API of the same account still passes.
    ak_client().list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    after = sim.counters()
    throttled = lambda c: c["apis"].get("AddImageLabels", {}).get("throttled", 0)
    assert throttled(after) - throttled(before) == 1
    by_agent = lambda c: sum(c.get("throttledByAgent", {}).values())
    assert by_agent(after) - by_agent(before) == 1
