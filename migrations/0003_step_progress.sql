-- What a slot-moving step has done so far (slots and keys), so a job
-- reports progress while a long step runs. A resumed step starts its own
-- counts again; the job's totals are the sums over its steps.
ALTER TABLE job_steps ADD COLUMN slots_moved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_steps ADD COLUMN keys_moved BIGINT NOT NULL DEFAULT 0;
