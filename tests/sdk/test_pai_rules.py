"""Each documented AIWorkSpace input rule (docs/cloud-rules.md), through the
official SDK: the simulator must refuse what the cloud refuses, with the
documented status and a code the SDK parses, and accept the edge that is
still allowed."""
import pytest
from alibabacloud_aiworkspace20210204 import models as ws
from alibabacloud_tea_openapi import exceptions as openapi_errors

from test_pai_sdk import IMAGE, VERSION, ak_client

DATASET = "d-sdk0rules"


def refused(call):
    """The SDK's error for a call the cloud refuses as a bad parameter."""
    with pytest.raises(openapi_errors.ClientException) as e:
        call()
    assert (e.value.status_code, e.value.code) == (400, "InvalidParameter"), e.value
    return e.value


def add_image(key, value="v"):
    return lambda: ak_client().add_image_labels(IMAGE, ws.AddImageLabelsRequest(labels=[ws.AddImageLabelsRequestLabels(key=key, value=value)]))


def create_dataset(key, value):
    return lambda: ak_client().create_dataset_labels(DATASET, ws.CreateDatasetLabelsRequest(labels=[ws.Label(key=key, value=value)]))


def create_version(key, value):
    return lambda: ak_client().create_dataset_version_labels(DATASET, VERSION, ws.CreateDatasetVersionLabelsRequest(labels=[ws.Label(key=key, value=value)]))


def dataset_labels(sim):
    ds = sim.state()["paiDatasets"][DATASET]
    return ds["labels"], ds["versions"][VERSION]


def test_image_keys_are_the_documented_list(sim):
    for key in ["system.chipType", "system.dsw.os", "system.supported.dsw", "system.origin"]:
        add_image(key)()
    # system.official is set by the cloud but is not on AddImageLabels' list;
    # team lacks the prefix; a made-up system.* key is not listed either.
    for key in ["system.official", "team", "system.madeUp"]:
        assert "Labels.Key" in refused(add_image(key)).message
    assert "system.madeUp" not in sim.state()["paiImages"][IMAGE]["labels"]


def test_image_keys_the_cloud_gained_are_accepted(sim):
    # The seed's pai.extraImageLabelKeys plays a cloud newer than the list.
    add_image("system.team ml/ops", "x")()
    assert sim.state()["paiImages"][IMAGE]["labels"]["system.team ml/ops"] == "x"


@pytest.mark.parametrize("create", [create_dataset, create_version], ids=["dataset", "version"])
def test_dataset_label_rules(sim, create):
    before = dataset_labels(sim)
    bad = [
        ("team", ""),  # values are non-empty
        ("team", "v" * 129),  # values are at most 128 characters
        ("k" * 129, "v"),  # keys too
        ("aliyun.team", "v"),  # reserved prefixes
        ("acsTeam", "v"),
        ("http://x/team", "v"),
        ("https://x/team", "v"),
        ("a=b", "v"),  # the Label structure forbids = and ,
        ("a,b", "v"),
        ("team", "a=b"),
        ("team", "a,b"),
    ]
    for key, value in bad:
        refused(create(key, value))
    assert dataset_labels(sim) == before
    create("k" * 128, "v" * 128)()
    create("http", "1")()
    labels, version = dataset_labels(sim)
    got = labels if create is create_dataset else version
    assert got["k" * 128] == "v" * 128 and got["http"] == "1"


def test_labels_come_only_with_verbose(sim):
    c = ak_client()
    # The SDK reads an absent Labels as []; the image does carry labels.
    assert not c.get_image(IMAGE, ws.GetImageRequest()).body.labels
    verbose = c.get_image(IMAGE, ws.GetImageRequest(verbose=True)).body.labels
    assert {l.key: l.value for l in verbose}["system.official"] == "false"
    plain = c.list_images(ws.ListImagesRequest(workspace_id="12345", page_size=50)).body.images
    assert plain and not any(i.labels for i in plain)
    full = c.list_images(ws.ListImagesRequest(workspace_id="12345", page_size=50, verbose=True)).body.images
    assert any(i.image_id == IMAGE and i.labels for i in full)
