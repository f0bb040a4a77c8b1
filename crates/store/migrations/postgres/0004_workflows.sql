-- Named workflows and their revisions.
CREATE TABLE workflows (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    revision BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, name, revision)
);
