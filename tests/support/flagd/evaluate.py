"""Evaluates a flagd flags file the way an application does: the OpenFeature Python SDK with the
flagd provider in file mode (pinned in scripts/test.sh), for many targeting keys.

    evaluate.py FLAGS_FILE OUT_JSON [--keys N] [--edit-banner]

`{stage}` in OUT_JSON is replaced with $ROLLOUT_STAGE (the script runs as a stage hook).
--edit-banner first edits another flag in the file, as a person would while the rollout runs.
Writes to OUT_JSON: the keys that get `true` from flag `new-checkout`, those of them whose email
is in the staff segment, and the value every other flag gives the first 500 keys.
"""
import json
import os
import sys

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext


def email(i):
    # One key in ten is staff: their email ends with @example.com.
    return f"user-{i}@example.com" if i % 10 == 0 else f"user-{i}@mail.test"


def main():
    flags_file, out = sys.argv[1], sys.argv[2].replace("{stage}", os.environ.get("ROLLOUT_STAGE", ""))
    if "--edit-banner" in sys.argv:
        with open(flags_file) as f:
            doc = json.load(f)
        doc["flags"]["banner"]["defaultVariant"] = "blue"
        with open(flags_file, "w") as f:
            json.dump(doc, f, indent=2)
    keys = int(sys.argv[sys.argv.index("--keys") + 1]) if "--keys" in sys.argv else 10000
    provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=flags_file)
    # Without waiting, the first evaluations silently get the default.
    api.set_provider_and_wait(provider)
    client = api.get_client()
    on = []
    errors = set()
    for i in range(keys):
        ctx = EvaluationContext(targeting_key=f"user-{i}", attributes={"email": email(i)})
        details = client.get_boolean_details("new-checkout", False, ctx)
        if details.error_code is not None:
            errors.add(str(details.error_code))
        if details.value:
            on.append(i)
    with open(flags_file) as f:
        names = [n for n in json.load(f)["flags"] if n != "new-checkout"]
    others = {}
    for name in names:
        values = []
        for i in range(500):
            ctx = EvaluationContext(targeting_key=f"user-{i}", attributes={"email": email(i), "city": "Berlin" if i % 2 else "Paris"})
            values.append(client.get_string_value(name, "<default>", ctx))
        others[name] = values
    api.shutdown()
    with open(out, "w") as f:
        json.dump({"keys": keys, "on": on, "staff": [i for i in range(0, keys, 10)], "errors": sorted(errors), "others": others}, f)


if __name__ == "__main__":
    main()
