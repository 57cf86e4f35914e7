-- Jira issues by JQL: the WHERE on jql goes into the POST body
SELECT key, summary, status, assignee
FROM jira_issues
WHERE jql = 'project = ABC ORDER BY key';

SELECT status, count(*) AS issues
FROM jira_issues
WHERE jql = 'project = XYZ'
GROUP BY status
ORDER BY status;
