-- Open tickets of priority 2 or less, newest first:
-- $filter=status eq 'open' and priority le 2&$orderby=createdDateTime desc&$select=...&$top=10
SELECT subject, status, priority, created
FROM tickets
WHERE status = 'open' AND priority <= 2
ORDER BY created DESC;

-- A quote in a value is doubled: $filter=subject eq 'It''s broken'
SELECT id, subject FROM tickets WHERE subject = 'It''s broken' ORDER BY id;

-- Unassigned tickets since the 10th: assignedTo eq null and createdDateTime ge 2024-06-10T00:00:00Z
SELECT subject, created FROM tickets WHERE assigned_to IS NULL AND created >= '2024-06-10' ORDER BY created;
