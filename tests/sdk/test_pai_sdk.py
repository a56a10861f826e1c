"""The official Alibaba Cloud SDK (alibabacloud-aiworkspace20210204 with
alibabacloud-tea-openapi), unchanged, against the simulator."""
import os
import urllib.parse

import pytest
from alibabacloud_aiworkspace20210204 import models as ws
from alibabacloud_aiworkspace20210204.client import Client
from alibabacloud_tea_openapi import exceptions as openapi_errors
from alibabacloud_tea_openapi import models as open_api_models

from conftest import env

IMAGE = "image-sdk0test0001"
DATASET = "d-sdk0test0001"
VERSION = "v 1/β"  # a version name that needs percent-encoding in the path


def endpoint():
    # The SDK puts `endpoint` into the Host header and the URL as
    # `<protocol>://<endpoint><path>`, so host:port works as is.
    return urllib.parse.urlparse(env("IMAGELABEL_SIM_URL")).netloc


def client(**creds):
    config = open_api_models.Config(endpoint=endpoint(), protocol="http", region_id="cn-shanghai", **creds)
    return Client(config)


def ak_client():
    return client(access_key_id=env("PAI_AK"), access_key_secret=env("PAI_SECRET"))


def labels_of(sim, image=IMAGE):
    return sim.state()["paiImages"][image]["labels"]


def listed(resp):
    return {l.key: l.value for l in resp.body.labels}


def test_add_list_remove_image_labels_with_access_key(sim):
    c = ak_client()
    add = c.add_image_labels(
        IMAGE,
        ws.AddImageLabelsRequest(
            labels=[
                ws.AddImageLabelsRequestLabels(key="system.framework", value="XGBoost 1.6.0"),
                ws.AddImageLabelsRequestLabels(key="system.chipType", value="GPU"),
                ws.AddImageLabelsRequestLabels(key="system.team ml/ops", value="α β"),
            ]
        ),
    )
    assert add.status_code == 200
    assert add.body.request_id
    assert labels_of(sim)["system.team ml/ops"] == "α β"

    by_image = c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert listed(by_image)["system.framework"] == "XGBoost 1.6.0"
    assert by_image.body.total_count == len(by_image.body.labels)

    by_keys = c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE, label_keys="system.chipType,system.framework"))
    assert listed(by_keys) == {"system.chipType": "GPU", "system.framework": "XGBoost 1.6.0"}

    # A filter value with a space and `=`/`,` separators in the query.
    by_filter = c.list_image_labels(ws.ListImageLabelsRequest(label_filter="system.framework=XGBoost 1.6.0,system.chipType=GPU", label_keys="system.chipType"))
    assert listed(by_filter) == {"system.chipType": "GPU"}
    none = c.list_image_labels(ws.ListImageLabelsRequest(label_filter="system.framework=XGBoost 9"))
    assert none.body.labels == [] and none.body.total_count == 0

    # One key per call; `/` and spaces in the key are percent-encoded in the path.
    c.remove_image_labels(IMAGE, "system.team ml/ops", ws.RemoveImageLabelsRequest())
    c.remove_image_labels(IMAGE, "system.chipType", ws.RemoveImageLabelsRequest())
    assert "system.team ml/ops" not in labels_of(sim)
    assert "system.chipType" not in labels_of(sim)
    # Removing a missing key succeeds.
    c.remove_image_labels(IMAGE, "system.chipType", ws.RemoveImageLabelsRequest())


def test_get_image_and_list_images(sim):
    c = ak_client()
    img = c.get_image(IMAGE, ws.GetImageRequest())
    assert img.body.name == "sdk-test"
    assert img.body.workspace_id == "12345"
    images = c.list_images(ws.ListImagesRequest(workspace_id="12345", page_size=50))
    assert IMAGE in [i.image_id for i in images.body.images]


def test_dataset_labels(sim):
    c = ak_client()
    c.create_dataset_labels(
        DATASET,
        ws.CreateDatasetLabelsRequest(labels=[ws.Label(key="team", value="ml ops"), ws.Label(key="stage", value="raw")]),
    )
    got = c.get_dataset(DATASET, ws.GetDatasetRequest())
    assert {l.key: l.value for l in got.body.labels} == {"team": "ml ops", "stage": "raw", "owner": "seed"}
    c.delete_dataset_labels(DATASET, ws.DeleteDatasetLabelsRequest(label_keys="team,stage,never-there"))
    got = c.get_dataset(DATASET, ws.GetDatasetRequest())
    assert {l.key: l.value for l in got.body.labels} == {"owner": "seed"}


def test_dataset_version_labels(sim):
    c = ak_client()
    c.create_dataset_version_labels(DATASET, VERSION, ws.CreateDatasetVersionLabelsRequest(labels=[ws.Label(key="quality", value="gold")]))
    got = c.get_dataset_version(DATASET, VERSION, ws.GetDatasetVersionRequest())
    assert {l.key: l.value for l in got.body.labels} == {"quality": "gold"}
    assert sim.state()["paiDatasets"][DATASET]["versions"][VERSION] == {"quality": "gold"}
    c.delete_dataset_version_labels(DATASET, VERSION, ws.DeleteDatasetVersionLabelsRequest(keys="quality"))
    assert c.get_dataset_version(DATASET, VERSION, ws.GetDatasetVersionRequest()).body.labels == []


def test_sts_security_token():
    c = client(access_key_id=env("PAI_STS_AK"), access_key_secret=env("PAI_STS_SECRET"), security_token=env("PAI_STS_TOKEN"))
    assert c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE)).status_code == 200
    wrong = client(access_key_id=env("PAI_STS_AK"), access_key_secret=env("PAI_STS_SECRET"), security_token="not-the-token")
    with pytest.raises(openapi_errors.ClientException) as e:
        wrong.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_bearer_token(sim):
    c = client(bearer_token=env("PAI_BEARER"))
    c.add_image_labels(IMAGE, ws.AddImageLabelsRequest(labels=[ws.AddImageLabelsRequestLabels(key="system.viaBearer", value="yes")]))
    assert labels_of(sim)["system.viaBearer"] == "yes"
    with pytest.raises(openapi_errors.ClientException) as e:
        client(bearer_token="sk-wrong").list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.status_code == 401


def test_wrong_secret_is_signature_does_not_match():
    c = client(access_key_id=env("PAI_AK"), access_key_secret="wrong-secret")
    with pytest.raises(openapi_errors.ClientException) as e:
        c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.code == "SignatureDoesNotMatch"
    assert e.value.status_code == 400
    assert e.value.request_id


def test_unknown_access_key():
    c = client(access_key_id="noSuchAK", access_key_secret="x")
    with pytest.raises(openapi_errors.ClientException) as e:
        c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert (e.value.status_code, e.value.code) == (404, "InvalidAccessKeyId.NotFound")


def test_rule_errors_and_not_found():
    c = ak_client()
    with pytest.raises(openapi_errors.ClientException) as e:
        c.add_image_labels(IMAGE, ws.AddImageLabelsRequest(labels=[ws.AddImageLabelsRequestLabels(key="team", value="x")]))
    assert (e.value.status_code, e.value.code) == (400, "InvalidParameter")
    too_many = [ws.AddImageLabelsRequestLabels(key=f"system.k{i}", value="v") for i in range(101)]
    with pytest.raises(openapi_errors.ClientException) as e:
        c.add_image_labels(IMAGE, ws.AddImageLabelsRequest(labels=too_many))
    assert e.value.code == "InvalidParameter"
    with pytest.raises(openapi_errors.ClientException) as e:
        c.get_dataset("d-missing", ws.GetDatasetRequest())
    assert (e.value.status_code, e.value.code) == (404, "Dataset.NotFound")
    with pytest.raises(openapi_errors.ClientException) as e:
        c.list_image_labels(ws.ListImageLabelsRequest(image_id="image-missing"))
    assert (e.value.status_code, e.value.code) == (404, "Image.NotFound")


def test_throttling_and_server_errors_map_to_sdk_exceptions(sim):
    c = ak_client()
    sim.set_faults(throttleRate=1.0)
    with pytest.raises(openapi_errors.ThrottlingException) as e:
        c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.code == "Throttling.User"
    assert e.value.retry_after and e.value.retry_after > 0
    sim.set_faults(serverErrorRate=1.0)
    with pytest.raises(openapi_errors.ServerException) as e:
        c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.status_code in (500, 503)
    assert e.value.code in ("InternalError", "ServiceUnavailable")
