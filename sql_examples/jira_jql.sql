-- Issues in progress or to do, updated since March, most recent first:
-- jql=project = ACME AND status in ("In Progress", "To Do") AND updated >= 2024-03-01 ORDER BY updated DESC
SELECT issue_key, summary, status, updated
FROM jira_issues
WHERE status IN ('In Progress', 'To Do') AND updated >= '2024-03-01'
ORDER BY updated DESC;

-- Unassigned issues: assignee is EMPTY
SELECT issue_key, summary FROM jira_issues WHERE assignee IS NULL ORDER BY issue_key;
