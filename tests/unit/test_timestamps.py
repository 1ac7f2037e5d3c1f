"""The two timestamp formats the API takes: metav1.Time (conditions) to the
second, metav1.MicroTime (Lease renewTime) to the microsecond, both UTC."""

import datetime
import re

import pytest

from blixt.timestamps import utc_now, utc_now_micro

pytestmark = pytest.mark.unit


def _parse(text, fmt):
    return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)


def test_utc_now_is_rfc3339_to_the_second_in_utc():
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    text = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert before <= _parse(text, "%Y-%m-%dT%H:%M:%SZ") <= before + datetime.timedelta(seconds=5)


def test_utc_now_micro_has_six_fraction_digits_in_utc():
    before = datetime.datetime.now(datetime.timezone.utc)
    text = utc_now_micro()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert before <= _parse(text, "%Y-%m-%dT%H:%M:%S.%fZ") <= before + datetime.timedelta(seconds=5)
