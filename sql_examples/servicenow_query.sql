-- New incidents of priority 1 or 2 about disks, newest first: one request,
-- sysparm_query=state=1^priority<=2^short_descriptionLIKEdisk^ORDERBYDESCopened_at
SELECT number, short_description, priority, opened_at
FROM sn_incidents
WHERE state = 1 AND priority <= 2 AND short_description LIKE '%disk%'
ORDER BY opened_at DESC;

-- Incidents nobody called in (an empty reference): caller_idISEMPTY
SELECT number, state FROM sn_incidents WHERE caller IS NULL ORDER BY number;
