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


def sts_client():
    return client(access_key_id=env("PAI_STS_AK"), access_key_secret=env("PAI_STS_SECRET"), security_token=env("PAI_STS_TOKEN"))


def bearer_client():
    return client(bearer_token=env("PAI_BEARER"))


# Every label scenario runs once per credential kind. The tests share one
# simulator, so each kind works on its own image and dataset (seeded in
# tests/sdk_conformance.rs) and the assertions can compare whole label sets.
CREDENTIALS = {"access-key": ak_client, "sts-token": sts_client, "bearer": bearer_client}
by_credential = pytest.mark.parametrize("kind", list(CREDENTIALS))


def image_for(kind):
    return f"image-sdk0{kind}"


def dataset_for(kind):
    return f"d-sdk0{kind}"


def labels_of(sim, image=IMAGE):
    return sim.state()["paiImages"][image]["labels"]


def label_map(labels):
    return {l.key: l.value for l in labels}


def listed(resp):
    return label_map(resp.body.labels)


def calls(sim):
    """Successful and failed calls so far, per API."""
    return {api: (c["ok"], c["error"]) for api, c in sim.counters()["apis"].items()}


def calls_since(sim, before):
    """Per API, the (ok, error) calls made since `before` (a `calls` result)."""
    diff = {}
    for api, (ok, error) in calls(sim).items():
        ok0, error0 = before.get(api, (0, 0))
        if (ok, error) != (ok0, error0):
            diff[api] = (ok - ok0, error - error0)
    return diff


@by_credential
def test_add_list_remove_image_labels(sim, kind):
    c = CREDENTIALS[kind]()
    image = image_for(kind)
    # A value with spaces (and characters the query encoding escapes) that
    # only this kind's image holds, so the filter below selects it alone.
    framework = f"XGBoost 1.6.0 ({kind})"
    before = calls(sim)
    add = c.add_image_labels(
        image,
        ws.AddImageLabelsRequest(
            labels=[
                ws.AddImageLabelsRequestLabels(key="system.framework", value=framework),
                ws.AddImageLabelsRequestLabels(key="system.chipType", value="GPU"),
                ws.AddImageLabelsRequestLabels(key="system.team ml/ops", value="α β"),
            ]
        ),
    )
    assert add.status_code == 200
    assert add.body.request_id
    expected = {"system.official": "false", "system.framework": framework, "system.chipType": "GPU", "system.team ml/ops": "α β"}
    assert labels_of(sim, image) == expected

    by_image = c.list_image_labels(ws.ListImageLabelsRequest(image_id=image))
    assert listed(by_image) == expected
    assert by_image.body.total_count == len(expected)

    # Two keys as a comma list.
    by_keys = c.list_image_labels(ws.ListImageLabelsRequest(image_id=image, label_keys="system.chipType,system.framework"))
    assert listed(by_keys) == {"system.chipType": "GPU", "system.framework": framework}
    assert by_keys.body.total_count == 2

    # No ImageId: the filter (a value with spaces, `=`/`,` separators) picks
    # this kind's image out of all of them.
    by_filter = c.list_image_labels(ws.ListImageLabelsRequest(label_filter=f"system.framework={framework},system.chipType=GPU"))
    assert listed(by_filter) == expected
    none = c.list_image_labels(ws.ListImageLabelsRequest(image_id=image, label_filter="system.framework=XGBoost 1.6.0"))
    assert none.body.labels == [] and none.body.total_count == 0

    # One key per call; `/` and spaces in the key are percent-encoded in the path.
    c.remove_image_labels(image, "system.team ml/ops", ws.RemoveImageLabelsRequest())
    c.remove_image_labels(image, "system.chipType", ws.RemoveImageLabelsRequest())
    assert labels_of(sim, image) == {"system.official": "false", "system.framework": framework}
    # Removing a missing key succeeds.
    c.remove_image_labels(image, "system.chipType", ws.RemoveImageLabelsRequest())

    # Every call reached the simulator once and succeeded.
    assert calls_since(sim, before) == {"AddImageLabels": (1, 0), "ListImageLabels": (4, 0), "RemoveImageLabels": (3, 0)}


@by_credential
def test_dataset_labels(sim, kind):
    c = CREDENTIALS[kind]()
    dataset = dataset_for(kind)
    before = calls(sim)
    c.create_dataset_labels(
        dataset,
        ws.CreateDatasetLabelsRequest(labels=[ws.Label(key="team", value="ml ops"), ws.Label(key="stage", value="raw")]),
    )
    got = c.get_dataset(dataset, ws.GetDatasetRequest())
    assert label_map(got.body.labels) == {"team": "ml ops", "stage": "raw", "owner": "seed"}
    c.delete_dataset_labels(dataset, ws.DeleteDatasetLabelsRequest(label_keys="team,stage,never-there"))
    got = c.get_dataset(dataset, ws.GetDatasetRequest())
    assert label_map(got.body.labels) == {"owner": "seed"}
    assert calls_since(sim, before) == {"CreateDatasetLabels": (1, 0), "GetDataset": (2, 0), "DeleteDatasetLabels": (1, 0)}


@by_credential
def test_dataset_version_labels(sim, kind):
    c = CREDENTIALS[kind]()
    dataset = dataset_for(kind)
    before = calls(sim)
    c.create_dataset_version_labels(dataset, VERSION, ws.CreateDatasetVersionLabelsRequest(labels=[ws.Label(key="quality", value="gold"), ws.Label(key="split", value="train set")]))
    got = c.get_dataset_version(dataset, VERSION, ws.GetDatasetVersionRequest())
    assert label_map(got.body.labels) == {"quality": "gold", "split": "train set"}
    assert sim.state()["paiDatasets"][dataset]["versions"][VERSION] == {"quality": "gold", "split": "train set"}
    c.delete_dataset_version_labels(dataset, VERSION, ws.DeleteDatasetVersionLabelsRequest(keys="quality,split"))
    assert c.get_dataset_version(dataset, VERSION, ws.GetDatasetVersionRequest()).body.labels == []
    assert calls_since(sim, before) == {"CreateDatasetVersionLabels": (1, 0), "GetDatasetVersion": (2, 0), "DeleteDatasetVersionLabels": (1, 0)}


def test_get_image_and_list_images(sim):
    c = ak_client()
    img = c.get_image(IMAGE, ws.GetImageRequest())
    assert img.body.name == "sdk-test"
    assert img.body.workspace_id == "12345"
    images = c.list_images(ws.ListImagesRequest(workspace_id="12345", page_size=50))
    assert IMAGE in [i.image_id for i in images.body.images]


def test_wrong_security_token(sim):
    before = calls(sim)
    wrong = client(access_key_id=env("PAI_STS_AK"), access_key_secret=env("PAI_STS_SECRET"), security_token="not-the-token")
    with pytest.raises(openapi_errors.ClientException) as e:
        wrong.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
    assert calls_since(sim, before) == {"ListImageLabels": (0, 1)}


def test_wrong_bearer_token(sim):
    before = calls(sim)
    with pytest.raises(openapi_errors.ClientException) as e:
        client(bearer_token="sk-wrong").list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.status_code == 401
    assert calls_since(sim, before) == {"ListImageLabels": (0, 1)}


def test_wrong_secret_is_signature_does_not_match(sim):
    before = calls(sim)
    c = client(access_key_id=env("PAI_AK"), access_key_secret="wrong-secret")
    with pytest.raises(openapi_errors.ClientException) as e:
        c.list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))
    assert e.value.code == "SignatureDoesNotMatch"
    assert e.value.status_code == 400
    assert e.value.request_id
    assert calls_since(sim, before) == {"ListImageLabels": (0, 1)}


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
