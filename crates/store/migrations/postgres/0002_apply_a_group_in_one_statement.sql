
CREATE FUNCTION skein_apply(
    p_node text, p_group bigint, p_roots text[],
    s_exec text[], s_key text[], s_state text[], s_payload text[], s_context text[],
    s_deadline bigint[],
    x_id text[], x_status text[], x_output text[], x_error text[], x_at bigint[],
    e_exec text[], e_seq bigint[], e_time bigint[], e_type text[], e_data text[],
    p_notice text
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    lost text[];
    n bigint;
    head bigint;
BEGIN
    -- Fencing: executions another process holds keep their rows as they are. The rows
    -- stay share-locked to the commit, so no takeover slips in between.
    SELECT coalesce(array_agg(r.id), '{}') INTO lost FROM (
        SELECT id, owner FROM executions WHERE id = ANY(p_roots) ORDER BY id FOR SHARE
    ) r WHERE r.owner IS NOT NULL AND r.owner <> p_node;

    INSERT INTO steps (execution_id, key, state, payload, context, deadline)
        SELECT u.e, u.k, u.st, u.p, u.c, u.d
        FROM unnest(s_exec, s_key, s_state, s_payload, s_context, s_deadline)
            AS u(e, k, st, p, c, d)
        WHERE split_part(u.e, '/', 1) <> ALL(lost)
    ON CONFLICT (execution_id, key) DO UPDATE SET state = excluded.state,
        payload = excluded.payload, context = excluded.context, deadline = excluded.deadline;

    UPDATE executions x SET status = c.st, output = COALESCE(c.o, x.output),
        error = COALESCE(c.er, x.error), updated_at = c.at
    FROM unnest(x_id, x_status, x_output, x_error, x_at) AS c(id, st, o, er, at)
    WHERE x.id = c.id AND split_part(c.id, '/', 1) <> ALL(lost);

    SELECT count(*) INTO n FROM unnest(e_exec) AS u(e) WHERE split_part(u.e, '/', 1) <> ALL(lost);
    IF n > 0 THEN
        -- Last, so that the row that orders every process's appends is held briefly.
        UPDATE log_head SET pos = pos + n RETURNING pos INTO head;
        INSERT INTO events (execution_id, seq, time, type, data, pos)
            SELECT u.e, u.s, u.t, u.ty, u.d, head - n + row_number() OVER (ORDER BY u.o)
            FROM unnest(e_exec, e_seq, e_time, e_type, e_data) WITH ORDINALITY
                AS u(e, s, t, ty, d, o)
            WHERE split_part(u.e, '/', 1) <> ALL(lost);
        PERFORM pg_notify('skein_events', p_notice);
    END IF;

    INSERT INTO writers (node, last_group) VALUES (p_node, p_group)
    ON CONFLICT (node) DO UPDATE SET last_group = excluded.last_group, seen_at = now();
    RETURN lost;
END
$$;
