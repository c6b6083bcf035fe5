-- The auction ledger in ClickHouse: one row per record (kind auction, shed or invalid), as
-- `rtb-exchange --ledger clickhouse:URL` inserts it (JSONEachRow, batched). Needs ClickHouse
-- 18.16 or later (Debian bookworm's package). Times are UTC.
CREATE DATABASE IF NOT EXISTS rtb;

CREATE TABLE IF NOT EXISTS rtb.ledger
(
    ts_us UInt64,
    date Date MATERIALIZED toDate(toDateTime(intDiv(ts_us, 1000000))),
    v UInt8,
    kind String,
    worker UInt16,
    id String,
    channel String,
    publisher String,
    test UInt8,
    cur String,
    answer String,
    reason String,
    -- Every DSP in the table when the auction started.
    dsps Nested (
        name String,
        status String,
        latency_us UInt64,
        bids UInt16,
        wins UInt16
    ),
    -- Each impression won: the DSP, what it bid and what it pays (CPM).
    wins Nested (
        imp String,
        dsp String,
        bid_price Float64,
        clear Float64
    ),
    -- The full record as written (schema v2; v1 rows from older files load the same), for what
    -- the columns leave out.
    record String
)
ENGINE = MergeTree()
PARTITION BY date
ORDER BY (date, kind, ts_us);
