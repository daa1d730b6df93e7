{#- Generic leakage check over every registered feature model: a feature computed only from
    events strictly before the probe's time gives the same value one microsecond earlier. A
    feature that reads an event at the probe's own time (`<=` instead of `<`, the label's own
    engagement) changes and is listed here, with how many probes and an example. -#}
{{ config(store_failures=true) }}
{{ feature_twin_differences('check_past') }}
