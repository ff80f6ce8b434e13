"""The SeaweedFS the tests share holds a bucket per test for a whole session.

Each bucket is a collection with volumes of its own; with weed's defaults the
number of volumes follows free disk at 1 GB a volume, and a session ran out at
about 60 buckets (every later upload: 500 "failed to find writable volumes").
"""

import uuid

import obstore
from obstore.store import S3Store

from cas.s3config import S3Settings

BUCKETS = 100   # more than weed's default volume count allowed (about 60) on this disk


def test_the_shared_server_takes_an_upload_in_each_of_many_new_buckets(s3_bucket):
    settings = S3Settings.resolve()
    for i in range(BUCKETS):
        store = S3Store(f"t-cap-{uuid.uuid4().hex[:16]}", **settings.obstore_options())
        obstore.put(store, "probe", b"%d" % i)
        assert bytes(obstore.get(store, "probe").bytes()) == b"%d" % i
