-- Example queries over the ledger (run with clickhouse-client, or POST to the HTTP port).
-- They are examples, not applied by anything.

-- Revenue, impressions won per DSP per minute over the last hour.
SELECT minute, dsp, cur, sum(impressions_won) AS won, sum(revenue) AS revenue
FROM rtb.revenue_minute
WHERE minute >= now() - 3600
GROUP BY minute, dsp, cur
ORDER BY minute, dsp;

-- Win rate, timeout rate and mean latency per DSP per minute.
SELECT minute, dsp, sum(wins) / sum(calls) AS win_rate, sum(timeouts) / sum(calls) AS timeout_rate,
       sum(latency_us_sum) / sum(calls) AS latency_us_mean
FROM rtb.dsp_minute
GROUP BY minute, dsp
ORDER BY minute, dsp;

-- Publishers whose floors lose every bid: auctions with bids and no winner, by publisher.
SELECT publisher, count() AS auctions_with_bids_unsold
FROM rtb.ledger
WHERE kind = 'auction' AND answer = 'no_bid' AND arraySum(dsps.bids) > 0
GROUP BY publisher
ORDER BY auctions_with_bids_unsold DESC
LIMIT 20;

-- Reconcile a DSP's invoice for a day: its won impressions and clearing prices, non-test.
SELECT id, wins.imp AS imp, wins.clear AS clear_cpm
FROM rtb.ledger
ARRAY JOIN wins
WHERE date = today() AND kind = 'auction' AND test = 0 AND wins.dsp = 'steady'
ORDER BY ts_us;
