{#- One row per probe (training example, serving candidate, check twin) with every registered
    feature column and its declared default where it does not apply: the one place features are
    assembled, read by both ranking_examples (training) and serving_candidates (serving). -#}
{{ assembled_features() }}
