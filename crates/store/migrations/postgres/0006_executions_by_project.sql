-- The executions list (and the dashboard's first page) asks for one project's newest
-- executions. With the project leading the index, that is a walk of the index in order
-- whatever the planner's statistics say; by `executions_by_creation` alone, a table not
-- yet analyzed after a bulk load was read whole and sorted for every page.
CREATE INDEX executions_by_project ON executions (project, created_at DESC, id DESC);
