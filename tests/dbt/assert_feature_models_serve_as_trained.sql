{#- Generic train/serve skew check over every registered feature model: the same probe flagged
    as a serving probe gets the same features. A feature model that branches on is_serving or
    looks the probe's request up (its label, its own engagements) is listed here. -#}
{{ config(store_failures=true) }}
{{ feature_twin_differences('check_serve') }}
