-- Example queries for analysts: run with `clickhouse-client -d eventpipe --multiquery < docs/queries.sql`
-- or one at a time. Query the *_final views: they hold each event, session and joined event once, in its
-- latest state, however often Kafka delivered it. (They run on ClickHouse 18.16 and current ClickHouse.)

-- Sessions by status per type.
SELECT type, status, count() AS sessions
FROM sessions_final
GROUP BY type, status
ORDER BY type, status;

-- Session length of closed sessions per type: median and 95th percentile in seconds.
SELECT type, count() AS closed, quantile(0.5)(duration_s) AS p50_s, quantile(0.95)(duration_s) AS p95_s
FROM sessions_final
WHERE status = 'closed'
GROUP BY type
ORDER BY closed DESC;

-- The ten longest sessions of the last 7 days with their UPDATE count.
SELECT account_id, type, session, start_time, end_time, duration_s, update_count
FROM sessions_final
WHERE status = 'closed' AND start_time >= now() - INTERVAL 7 DAY
ORDER BY duration_s DESC
LIMIT 10;

-- Events per hour and action (event time).
SELECT toStartOfHour(event_time) AS hour, action, count() AS events
FROM events_final
GROUP BY hour, action
ORDER BY hour, action;

-- Values of one entity key: how often each app name occurs. Entity values are text; JSON strings are stored
-- unquoted, everything else as its JSON text.
SELECT value AS app, count() AS events
FROM events_final
ARRAY JOIN entities.key AS key, entities.value AS value
WHERE key = 'app'
GROUP BY app
ORDER BY events DESC
LIMIT 20;

-- Events whose entities contain a given key.
SELECT event_id, type, event_time
FROM events_final
WHERE has(entities.key, 'package')
LIMIT 10;

-- Joined events: the noisiest components, by the number of occurrences they stand for.
SELECT component_id, type_id, importance, sum(count) AS occurrences, sum(records) AS records_sent
FROM joined_events_final
GROUP BY component_id, type_id, importance
ORDER BY occurrences DESC
LIMIT 20;

-- Joined events still open: their window (end_time + JoinInterval) reaches past the newest record seen.
SELECT event_id, component_id, importance, count, start_time, end_time, actual_time, message
FROM joined_events_final
WHERE actual_time >= (SELECT max(end_time) FROM joined_events_final)
ORDER BY actual_time DESC
LIMIT 20;

-- Joined events with their Zidium component and its parent (components come from GetRootComponent,
-- GetOrAddComponent and UpdateComponent; SendEvent adds the event type's names and the properties).
SELECT component, parent, type_display_name AS type, importance, count, message, end_time
FROM joined_events_final
ANY LEFT JOIN (
    SELECT component_id, display_name AS component, parent
    FROM (SELECT component_id, display_name, parent_id FROM components_final) AS c
    ANY LEFT JOIN (SELECT component_id AS parent_id, display_name AS parent FROM components_final) AS p USING parent_id
) AS cp USING component_id
ORDER BY end_time DESC
LIMIT 20;

-- Values of one SendEvent property: which source files the application errors of the last day come from.
SELECT value AS file, sum(count) AS occurrences
FROM joined_events_final
ARRAY JOIN properties.name AS name, properties.value AS value
WHERE category = 'ApplicationError' AND name = 'FileName' AND end_time >= now() - INTERVAL 1 DAY
GROUP BY file
ORDER BY occurrences DESC;

-- What was rejected and why, today.
SELECT source, reason, count() AS rejected
FROM dead_letters_final
WHERE received_at >= toStartOfDay(now())
GROUP BY source, reason
ORDER BY rejected DESC;
