-- Every issue of every repository of an organisation: SQLite calls Filter on gh_issues once
-- per repository (GET /repos/acme/widgets/issues, /repos/acme/gadgets/issues, ...).
SELECT r.full_name, count(*) AS issues, sum(i.state = 'open') AS open_issues
FROM gh_repos r JOIN gh_issues i ON i.owner = r.owner AND i.repo = r.name
WHERE r.org = 'acme'
GROUP BY r.full_name
ORDER BY r.full_name;

-- Open issues updated since the middle of June: sends state=open&since=2024-06-15T00:00:00Z.
SELECT number, title, updated_at
FROM gh_issues
WHERE owner = 'acme' AND repo = 'widgets' AND state = 'open' AND updated_at >= '2024-06-15'
ORDER BY updated_at DESC;

-- Issues nobody is assigned to, in two repositories (assignee=none, one request per repository).
SELECT repo, number, title
FROM gh_issues
WHERE owner = 'acme' AND repo IN ('widgets', 'gadgets') AND assignee IS NULL
ORDER BY repo, number;

-- The three most recently updated issues: sort=updated&direction=desc&per_page=3, one request,
-- and SQLite does not sort again (GitHub's order of ISO 8601 times is SQLite's text order).
SELECT number, title, updated_at
FROM gh_issues
WHERE owner = 'acme' AND repo = 'gadgets'
ORDER BY updated_at DESC
LIMIT 3;
