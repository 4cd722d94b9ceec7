"""Feast's own remote online store client against the service.

    feast_client_check.py SERVICE_URL TOKEN

Builds a RepoConfig with `online_store: {type: remote, path: SERVICE_URL}` and
`auth: {type: oidc, token_env_var: TITANIC_TOKEN}` (what docs/api.md tells a Feast user to
write), then calls feast.infra.online_stores.remote.RemoteOnlineStore: `online_read` (what
`FeatureStore.get_online_features` does with a remote online store) and
`get_online_features`, and checks what Feast itself parsed out of the answers; and that an
unknown feature view raises Feast's own FeastObjectNotFoundException. Run in the virtualenv
made by scripts/feast-client-check.sh (a pinned feast from PyPI).
"""

import os
import sys
import tempfile

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.errors import FeastObjectNotFoundException
from feast.infra.online_stores.remote import RemoteOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64, String


def main(base, token):
    os.environ["TITANIC_TOKEN"] = token
    work = tempfile.mkdtemp()
    config = RepoConfig(
        project="titanic",
        provider="local",
        registry=os.path.join(work, "registry.db"),
        online_store={"type": "remote", "path": base},
        auth={"type": "oidc", "token_env_var": "TITANIC_TOKEN"},
    )
    passenger = Entity(name="passenger", join_keys=["passenger_id"], value_type=ValueType.INT64)
    source = FileSource(path=os.path.join(work, "unused.parquet"), timestamp_field="event_timestamp")

    def view(name):
        return FeatureView(
            name=name,
            entities=[passenger],
            schema=[
                Field(name="passenger_id", dtype=Int64),
                Field(name="age", dtype=Float64),
                Field(name="fare", dtype=Float64),
                Field(name="sex", dtype=String),
            ],
            source=source,
        )

    store = RemoteOnlineStore()
    keys = [EntityKey(join_keys=["passenger_id"], entity_values=[Value(int64_val=i)]) for i in (1, 892, 999_999)]
    rows = store.online_read(config, view("passenger_demographics"), keys, ["age", "fare", "sex"])
    assert len(rows) == 3, rows
    first = rows[0][1]
    assert first["age"].double_val == 22.0, first
    assert first["fare"].double_val == 7.25, first
    assert first["sex"].string_val == "male", first
    assert rows[1][1]["age"].double_val == 34.5, rows[1]
    # Passenger 999999 has no values: Feast reads NOT_FOUND as an empty Value.
    assert not rows[2][1]["age"].HasField("val"), rows[2]
    print("online_read: ok", {k: str(v).strip() for k, v in first.items()})

    response = store.get_online_features(
        config,
        features=["passenger_demographics:age", "passenger_demographics:sex"],
        entity_rows=[{"passenger_id": 1}, {"passenger_id": 892}],
        registry=None,
        project="titanic",
    )
    answer = response.to_dict()
    assert answer["age"] == [22.0, 34.5], answer
    assert answer["sex"] == ["male", "male"], answer
    assert answer["passenger_id"] == [1, 892], answer
    print("get_online_features: ok", answer)

    try:
        store.online_read(config, view("no_such_view"), keys[:1], ["age"])
    except FeastObjectNotFoundException as e:
        print("unknown view: ok,", type(e).__name__, str(e))
    else:
        raise AssertionError("an unknown view did not raise FeastObjectNotFoundException")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
