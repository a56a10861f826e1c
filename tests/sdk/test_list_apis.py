"""The list calls `imagelabel export` reads with (ListImages, ListDatasets,
ListDatasetVersions; IMS Querying Images), through the official SDKs: the
pages together hold every object once, with the labels the state holds."""
import pytest
from alibabacloud_aiworkspace20210204 import models as ws
from alibabacloud_tea_openapi import exceptions as openapi_errors
from huaweicloudsdkcore.exceptions import exceptions as hw_errors
from huaweicloudsdkims.v2 import ListImagesRequest

import test_ims_sdk
from test_pai_sdk import VERSION, ak_client

WORKSPACE = "12345"


def label_map(labels):
    return {l.key: l.value for l in labels or []}


def test_list_images_pages_with_total_count(sim):
    state = sim.state()["paiImages"]
    expected = {i: img["labels"] for i, img in state.items() if img.get("workspaceId") == WORKSPACE}
    assert len(expected) >= 3, "the seed has several images in the workspace"
    seen, page = {}, 1
    while True:
        body = ak_client().list_images(ws.ListImagesRequest(workspace_id=WORKSPACE, verbose=True, page_size=2, page_number=page)).body
        assert body.total_count == len(expected)
        assert len(body.images) <= 2
        if not body.images:
            break
        for img in body.images:
            assert img.image_id not in seen, "an image on two pages"
            seen[img.image_id] = label_map(img.labels)
        page += 1
    assert seen == expected
    assert page == -(-len(expected) // 2) + 1, "the first empty page is the one after the last"


def test_page_size_above_the_simulated_maximum_is_refused():
    with pytest.raises(openapi_errors.ClientException) as e:
        ak_client().list_images(ws.ListImagesRequest(page_size=101))
    assert (e.value.status_code, e.value.code) == (400, "InvalidParameter")
    assert "PageSize" in e.value.message


def test_list_datasets_carries_labels(sim):
    state = sim.state()["paiDatasets"]
    expected = {i: d["labels"] for i, d in state.items() if d.get("workspaceId") == WORKSPACE}
    body = ak_client().list_datasets(ws.ListDatasetsRequest(workspace_id=WORKSPACE, page_size=100)).body
    assert body.total_count == len(expected)
    assert {d.dataset_id: label_map(d.labels) for d in body.datasets} == expected
    one = ak_client().list_datasets(ws.ListDatasetsRequest(workspace_id=WORKSPACE, page_size=1, page_number=2)).body
    assert len(one.datasets) == 1 and one.datasets[0].dataset_id == sorted(expected)[1]


def test_list_dataset_versions_carries_labels(sim):
    dataset = "d-sdk0rules"
    expected = sim.state()["paiDatasets"][dataset]["versions"]
    body = ak_client().list_dataset_versions(dataset, ws.ListDatasetVersionsRequest(page_number=1, page_size=10)).body
    assert body.total_count == len(expected) == 1
    assert {v.version_name: label_map(v.labels) for v in body.dataset_versions} == expected
    assert body.dataset_versions[0].version_name == VERSION
    # PageNumber and PageSize are required by the API reference.
    with pytest.raises(openapi_errors.ClientException) as e:
        ak_client().list_dataset_versions(dataset, ws.ListDatasetVersionsRequest())
    assert e.value.status_code == 400 and "PageNumber" in e.value.message


def test_ims_list_images_pages_by_marker_and_filters_by_tag(sim):
    project = test_ims_sdk.env("IMS_PROJECT_ID")
    expected = sim.state()["imsImages"][project]
    c = test_ims_sdk.client()
    seen, marker = [], None
    while True:
        resp = c.list_images(ListImagesRequest(limit=1, marker=marker))
        seen += [i.id for i in resp.images]
        marker = resp.page_info.next_marker if resp.page_info else None
        if not marker:
            break
    assert seen == sorted(expected)
    first = sorted(expected)[0]
    key, value = sorted(expected[first].items())[0]
    tagged = c.list_images(ListImagesRequest(tag=f"{key}.{value}")).images
    assert first in [i.id for i in tagged]
    assert all(f"{key}.{value}" in i.tags for i in tagged)
    with pytest.raises(hw_errors.ClientRequestException) as e:
        c.list_images(ListImagesRequest(name="x"))
    assert e.value.status_code == 400
