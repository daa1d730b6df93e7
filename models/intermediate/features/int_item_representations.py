"""Item representations, one version per cut: one row per (cut_at, item with engagements before
the cut) with its unit vector rep_0 .. rep_{D-1} (cosine = dot product).

Learned here, at build time (`dbt build` / `unirank-cli build` refresh them), by ALS on the
engagements of every canvas strictly before each cut (ranker.representations); the cuts and
the settings come from int_representation_versions. Enabled in _features.yml when the registry
lists int_features__representation (a Python model cannot call the registry macro).
"""


def model(dbt, session):
    from ranker.representations import AlsSettings, learn_versions

    dbt.config(materialized="table")
    versions = dbt.ref("int_representation_versions").df()
    engagements = (
        dbt.ref("int_engagement_history").project("request_id, user_id, item_id, engaged_at").df()
    )
    first = versions.iloc[0]
    settings = AlsSettings(
        dimensions=int(first["dimensions"]),
        iterations=int(first["iterations"]),
        regularization=float(first["regularization"]),
        alpha=float(first["alpha"]),
        seed=int(first["seed"]),
    )
    return learn_versions(engagements, list(versions["cut_at"]), settings)
