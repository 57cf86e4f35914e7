-- Native tables live in the same file as the remote ones and join with them.
CREATE TEMP TABLE teams(member TEXT PRIMARY KEY, team TEXT NOT NULL);
INSERT INTO teams VALUES ('alice', 'platform'), ('bob', 'platform'), ('carol', 'payments');

SELECT t.team, count(*) AS open_incidents, round(avg(i.score), 1) AS avg_score
FROM incidents AS i
JOIN teams AS t ON t.member = i.assigned_to
WHERE i.state = 'open'
GROUP BY t.team
ORDER BY t.team;
