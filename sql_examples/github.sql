-- Open issues with the most discussion.
SELECT number, title, comments
FROM gh_issues
WHERE state = 'open'
ORDER BY comments DESC, number
LIMIT 10;

-- Issues per label, unnesting the JSON array with SQLite's json_each.
SELECT json_extract(label.value, '$.name') AS label, count(*) AS issues
FROM gh_issues, json_each(gh_issues.labels) AS label
GROUP BY label
ORDER BY issues DESC, label;

-- Open versus closed per author.
SELECT author,
       sum(state = 'open') AS open_issues,
       sum(state = 'closed') AS closed_issues
FROM gh_issues
GROUP BY author
ORDER BY author;
