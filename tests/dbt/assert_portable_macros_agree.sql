{#- The dispatched macros the real datasets' staging and negative sampling rely on return the same
    values on every engine: hash_bucket (md5 hex digits to an integer; sampled_negatives draws its
    tickets with it) and timestamp_from_epoch_microseconds (unix time to a UTC timestamp) with its
    inverse epoch_microseconds. Expected values computed by hand (Python: int(md5(...)[:12], 16) %
    1000003). Returns a row when an engine disagrees. -#}
with

computed as (
    select
        {{ hash_bucket("'unirank|portable|7'", 1000003) }} as bucket,
        {{ epoch_microseconds(timestamp_from_epoch_microseconds('1451606400123456')) }} as round_trip_us,
        cast({{ timestamp_from_epoch_microseconds('1451606400123456') }} as {{ dbt.type_string() }}) as rendered
),

final as (
    select *
    from computed
    where bucket <> 474465
        or round_trip_us <> 1451606400123456
        or rendered <> '2016-01-01 00:00:00.123456'
)

select * from final
