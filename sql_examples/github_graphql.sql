-- GitHub issues through GraphQL: state = 'OPEN' becomes the $states variable
SELECT number, title, author
FROM gh_graphql_issues
WHERE state = 'OPEN'
ORDER BY number;

SELECT author, count(*) AS issues
FROM gh_graphql_issues
GROUP BY author
ORDER BY author;
