"""The official Huawei Cloud SDK (huaweicloudsdkims v2), unchanged, against
the simulator."""
import urllib.parse

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions as hw_errors
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkims.v2 import (
    AddImageTagRequest,
    AddImageTagRequestBody,
    BatchAddOrDeleteTagsRequest,
    BatchAddOrDeleteTagsRequestBody,
    DeleteImageTagRequest,
    ImsClient,
    ListImageTagsRequest,
    ResourceTag,
)

from conftest import env


def client(ak=None, sk=None, token=None, project=None):
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    creds = BasicCredentials(ak or env("IMS_AK"), sk or env("IMS_SK"), project or env("IMS_PROJECT_ID"))
    if token:
        creds = creds.with_security_token(token)
    return ImsClient.new_builder().with_http_config(config).with_credentials(creds).with_endpoints([env("IMAGELABEL_SIM_URL")]).build()


def image():
    return env("IMS_IMAGE_ID")


def tags(c=None):
    resp = (c or client()).list_image_tags(ListImageTagsRequest(image_id=image()))
    return {t.key: t.value for t in resp.tags}


def test_list_add_batch_delete():
    c = client()
    assert tags(c) == {"env": "prod", "owner": "ml-platform"}

    c.add_image_tag(AddImageTagRequest(image_id=image(), body=AddImageTagRequestBody(tag=ResourceTag(key="team ml", value="a/b"))))
    assert tags(c)["team ml"] == "a/b"

    body = BatchAddOrDeleteTagsRequestBody(action="create", tags=[ResourceTag(key="key1", value="value1"), ResourceTag(key="key3", value=""), ResourceTag(key="env", value="dev")])
    c.batch_add_or_delete_tags(BatchAddOrDeleteTagsRequest(image_id=image(), body=body))
    assert tags(c) == {"env": "dev", "owner": "ml-platform", "team ml": "a/b", "key1": "value1", "key3": ""}

    body = BatchAddOrDeleteTagsRequestBody(action="delete", tags=[ResourceTag(key="key1", value="value1"), ResourceTag(key="key3"), ResourceTag(key="missing")])
    c.batch_add_or_delete_tags(BatchAddOrDeleteTagsRequest(image_id=image(), body=body))
    assert tags(c) == {"env": "dev", "owner": "ml-platform", "team ml": "a/b"}

    c.delete_image_tag(DeleteImageTagRequest(image_id=image(), key="team ml"))
    assert tags(c) == {"env": "dev", "owner": "ml-platform"}
    # Not idempotent (https://support.huaweicloud.com/api-ims/ims_03_0619.html).
    with pytest.raises(hw_errors.ClientRequestException) as e:
        c.delete_image_tag(DeleteImageTagRequest(image_id=image(), key="team ml"))
    assert e.value.status_code == 404


def test_delete_key_with_slash_set_out_of_band(sim):
    # The API rejects `/` in new keys, but other tools may have set one; the
    # SDK sends it percent-encoded as one path segment.
    sim.put(f"/_sim/ims/{env('IMS_PROJECT_ID')}/images/{image()}/tags/{urllib.parse.quote('team ml/ops', safe='')}", "x")
    assert "team ml/ops" in tags()
    client().delete_image_tag(DeleteImageTagRequest(image_id=image(), key="team ml/ops"))
    assert "team ml/ops" not in tags()


def test_temporary_credentials_with_security_token():
    c = client(ak=env("IMS_STS_AK"), sk=env("IMS_STS_SK"), token=env("IMS_STS_TOKEN"))
    assert "owner" in tags(c)


def test_wrong_sk_is_401_apigw_0301():
    with pytest.raises(hw_errors.ClientRequestException) as e:
        tags(client(sk="wrong-sk"))
    assert e.value.status_code == 401
    assert e.value.error_code == "APIGW.0301"
    assert "Incorrect IAM authentication information" in e.value.error_msg
    assert e.value.request_id


def test_rule_errors():
    c = client()
    with pytest.raises(hw_errors.ClientRequestException) as e:
        c.add_image_tag(AddImageTagRequest(image_id=image(), body=AddImageTagRequestBody(tag=ResourceTag(key="k" * 37, value="v"))))
    assert e.value.status_code == 400
    many = [ResourceTag(key=f"k{i}", value="v") for i in range(9)]
    with pytest.raises(hw_errors.ClientRequestException) as e:
        c.batch_add_or_delete_tags(BatchAddOrDeleteTagsRequest(image_id=image(), body=BatchAddOrDeleteTagsRequestBody(action="create", tags=many)))
    assert (e.value.status_code, e.value.error_code) == (400, "IMG.0201")
    with pytest.raises(hw_errors.ClientRequestException) as e:
        c.list_image_tags(ListImageTagsRequest(image_id="no-such-image"))
    assert e.value.status_code == 404


def test_wrong_project_is_403():
    other = client(project="0" * 32)
    with pytest.raises(hw_errors.ClientRequestException) as e:
        other.list_image_tags(ListImageTagsRequest(image_id=image()))
    # The key is bound to the test project in the seed.
    assert e.value.status_code == 403
