-- Open incidents by priority (state and priority are sent to the API as parameters).
SELECT priority, count(*) AS incidents
FROM sn_incident
WHERE state = 'open'
GROUP BY priority
ORDER BY priority;

-- The five most recently opened high-priority incidents.
SELECT number, short_description, opened_at
FROM sn_incident
WHERE priority IN (1, 2)
ORDER BY opened_at DESC
LIMIT 5;

-- Who has the most active incidents (filtering on an unpushed column is done by SQLite).
SELECT assigned_to, count(*) AS active_incidents
FROM sn_incident
WHERE active AND assigned_to IS NOT NULL
GROUP BY assigned_to
ORDER BY active_incidents DESC, assigned_to;
