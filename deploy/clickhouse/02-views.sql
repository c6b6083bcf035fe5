-- Per DSP per minute: calls, bids, wins, timeouts, summed latency (for the mean).
CREATE MATERIALIZED VIEW IF NOT EXISTS rtb.dsp_minute
ENGINE = SummingMergeTree()
PARTITION BY toDate(minute)
ORDER BY (minute, dsp)
AS SELECT
    toStartOfMinute(toDateTime(intDiv(ts_us, 1000000))) AS minute,
    dsps.name AS dsp,
    toUInt64(count()) AS calls,
    toUInt64(sum(dsps.bids)) AS bids,
    toUInt64(sum(dsps.wins)) AS wins,
    toUInt64(sum(dsps.status = 'timeout')) AS timeouts,
    toUInt64(sum(dsps.latency_us)) AS latency_us_sum
FROM rtb.ledger
ARRAY JOIN dsps
WHERE kind = 'auction' AND dsps.status NOT IN ('skipped_breaker', 'pending')
GROUP BY minute, dsp;

-- Revenue per DSP per minute per currency: clearing prices / 1000, test auctions excluded.
CREATE MATERIALIZED VIEW IF NOT EXISTS rtb.revenue_minute
ENGINE = SummingMergeTree()
PARTITION BY toDate(minute)
ORDER BY (minute, dsp, cur)
AS SELECT
    toStartOfMinute(toDateTime(intDiv(ts_us, 1000000))) AS minute,
    wins.dsp AS dsp,
    cur,
    toUInt64(count()) AS impressions_won,
    sum(wins.clear) / 1000 AS revenue
FROM rtb.ledger
ARRAY JOIN wins
WHERE kind = 'auction' AND test = 0
GROUP BY minute, dsp, cur;
