"""The documented signing-time rules (docs/cloud-rules.md), through the
official SDKs. The SDKs are unchanged; only the clock they read is moved."""
import datetime as dt

import pytest
from alibabacloud_aiworkspace20210204 import models as ws
from alibabacloud_tea_openapi import exceptions as openapi_errors
from alibabacloud_tea_openapi.utils import Utils
from huaweicloudsdkcore.exceptions import exceptions as hw_errors
from huaweicloudsdkcore.signer import signer as hw_signer
from huaweicloudsdkims.v2 import ListImageTagsRequest

from test_ims_sdk import client as ims_client, image as ims_image
from test_pai_sdk import IMAGE, ak_client


def pai_clock(monkeypatch, value):
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: value))


def pai_date(minutes_off):
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes_off)).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_pai():
    return ak_client().list_image_labels(ws.ListImageLabelsRequest(image_id=IMAGE))


@pytest.mark.parametrize("minutes_off", [-16, 16])
def test_pai_date_more_than_15_minutes_off_is_expired(monkeypatch, minutes_off):
    pai_clock(monkeypatch, pai_date(minutes_off))
    with pytest.raises(openapi_errors.ClientException) as e:
        list_pai()
    assert (e.value.status_code, e.value.code) == (400, "InvalidTimeStamp.Expired")


def test_pai_date_within_15_minutes_and_malformed(monkeypatch):
    pai_clock(monkeypatch, pai_date(-14))
    assert list_pai().status_code == 200
    pai_clock(monkeypatch, "2026-01-02 03:04:05")
    with pytest.raises(openapi_errors.ClientException) as e:
        list_pai()
    assert (e.value.status_code, e.value.code) == (400, "InvalidTimeStamp.Format")


def test_pai_nonce_is_not_reused(monkeypatch):
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: "a-nonce-used-twice-0123456789"))
    assert list_pai().status_code == 200
    with pytest.raises(openapi_errors.ClientException) as e:
        list_pai()
    assert (e.value.status_code, e.value.code) == (400, "SignatureNonceUsed")


def ims_clock(monkeypatch, minutes_off):
    class Shifted(dt.datetime):
        @classmethod
        def utcnow(cls):
            return dt.datetime.utcnow() + dt.timedelta(minutes=minutes_off)

    monkeypatch.setattr(hw_signer, "datetime", Shifted)


def list_ims():
    return ims_client().list_image_tags(ListImageTagsRequest(image_id=ims_image()))


@pytest.mark.parametrize("minutes_off", [-16, 16])
def test_ims_sdk_date_more_than_15_minutes_off_is_refused(monkeypatch, minutes_off):
    ims_clock(monkeypatch, minutes_off)
    with pytest.raises(hw_errors.ClientRequestException) as e:
        list_ims()
    assert (e.value.status_code, e.value.error_code) == (401, "APIGW.0301")


def test_ims_sdk_date_within_15_minutes(monkeypatch):
    ims_clock(monkeypatch, -14)
    assert list_ims().tags is not None
