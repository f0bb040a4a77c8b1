-- Schedules: what each starts and when (spec), and how far it got (state).
CREATE TABLE schedules (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    spec JSONB NOT NULL,
    state JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, id)
);
