"""Each documented IMS tag rule (docs/cloud-rules.md), through the official
SDK: refused with the documented status, parsed by the SDK, and nothing
changed; the allowed edge still accepted."""
import pytest
from huaweicloudsdkcore.exceptions import exceptions as hw_errors
from huaweicloudsdkims.v2 import (
    AddImageTagRequest,
    AddImageTagRequestBody,
    BatchAddOrDeleteTagsRequest,
    BatchAddOrDeleteTagsRequestBody,
    DeleteImageTagRequest,
    ListImageTagsRequest,
    ResourceTag,
)

from conftest import env
from test_ims_sdk import client


def image():
    return env("IMS_RULES_IMAGE_ID")


def tags():
    return {t.key: t.value for t in client().list_image_tags(ListImageTagsRequest(image_id=image())).tags}


def add(key, value):
    return lambda: client().add_image_tag(AddImageTagRequest(image_id=image(), body=AddImageTagRequestBody(tag=ResourceTag(key=key, value=value))))


def batch(action, *pairs):
    body = BatchAddOrDeleteTagsRequestBody(action=action, tags=[ResourceTag(key=k, value=v) for k, v in pairs])
    return lambda: client().batch_add_or_delete_tags(BatchAddOrDeleteTagsRequest(image_id=image(), body=body))


def refused(call, status=400):
    with pytest.raises(hw_errors.ClientRequestException) as e:
        call()
    assert e.value.status_code == status, e.value
    assert e.value.error_code and e.value.error_msg
    return e.value


BAD_TAGS = [
    ("", "v"),  # keys are not empty
    ("   ", "v"),  # nor blank
    (" team", "v"),  # no leading or trailing space in keys
    ("team ", "v"),
    ("k", " v"),  # nor in values
    ("k", "v "),
    ("a=b", "v"),  # '=' is not in the key charset
    ("k", "a=b"),  # nor in the value charset
    ("ü", "v"),  # letters are A-Z, a-z and CJK only
    ("k" * 37, "v"),  # key 1-36 characters
    ("k", "v" * 44),  # value 0-43 characters
    ("_sys_x", "v"),  # reserved by the tag service
]


@pytest.mark.parametrize("key,value", BAD_TAGS)
def test_add_and_batch_create_refuse(key, value):
    before = tags()
    refused(add(key, value))
    refused(batch("create", (key, value)))
    assert tags() == before


def test_the_allowed_edges_are_accepted():
    edge = [("k" * 36, "v" * 43), ("数据 ml_1.0:a+b-c@d", "a/b 值"), ("empty", "")]
    batch("create", *edge)()
    assert {k: tags()[k] for k, _ in edge} == dict(edge)
    batch("delete", *edge)()


def test_delete_of_a_missing_tag():
    # DeleteImageTag is not idempotent: 404 for a key the image lacks.
    refused(lambda: client().delete_image_tag(DeleteImageTagRequest(image_id=image(), key="never-there")), 404)
    # BatchAddOrDeleteTags delete is: a missing key succeeds, but a blank key does not.
    batch("delete", ("never-there", None))()
    refused(batch("delete", ("  ", None)))
