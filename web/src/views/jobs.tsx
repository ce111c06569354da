// Jobs: the list with progress, and one job's plan, steps and error.

import { useEffect, useState } from 'preact/hooks';
import type { Data } from '../app';
import { ApiError, Job, api, get } from '../api';
import { ago, num, time } from '../format';
import { Move, movesSummary } from '../slots';

function Progress({ job }: { job: Job }) {
  return (
    <div class="progress-wrap">
      <progress max={100} value={job.progress} aria-label={`${job.kind} ${job.id} progress`} data-testid="job-progress">
        {job.progress}%
      </progress>
      <span class="num">{job.progress}%</span>
    </div>
  );
}

function Status({ s }: { s: string }) {
  return <span class={`status status-${s}`}>{s}</span>;
}

export function Jobs({ data }: { data: Data }) {
  return (
    <section aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      {data.jobs.length === 0 ? (
        <p class="muted">No job has run on this cluster yet.</p>
      ) : (
        <div class="scroll-x">
          <table class="jobs" data-testid="jobs">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Kind</th>
                <th scope="col">Status</th>
                <th scope="col">Progress</th>
                <th scope="col" class="num">Slots moved</th>
                <th scope="col">By</th>
                <th scope="col">Started</th>
              </tr>
            </thead>
            <tbody>
              {data.jobs.map((j) => (
                <tr>
                  <td>
                    <a href={`#/jobs/${j.id}`}>{j.id}</a>
                  </td>
                  <td>{j.kind}</td>
                  <td>
                    <Status s={j.status} />
                  </td>
                  <td>
                    <Progress job={j} />
                  </td>
                  <td class="num">{num(j.slots_moved)}</td>
                  <td>{j.actor}</td>
                  <td title={time(j.created_at)}>{ago(j.started_at ?? j.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

const FINAL = ['succeeded', 'failed', 'cancelled'];

export function JobPage({ data, id }: { data: Data; id: string }) {
  const [job, setJob] = useState<Job | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [cancelling, setCancelling] = useState(false);
  useEffect(() => {
    let stop = false;
    let t = 0;
    const load = async () => {
      try {
        const j = await get<Job>(`/jobs/${encodeURIComponent(id)}`);
        if (stop) return;
        setJob(j);
        setErr(null);
        if (!FINAL.includes(j.status)) t = window.setTimeout(load, 500);
      } catch (e) {
        if (stop) return;
        setErr((e as ApiError).message);
        t = window.setTimeout(load, 2000);
      }
    };
    void load();
    return () => {
      stop = true;
      clearTimeout(t);
    };
  }, [id]);
  if (err && !job) return <p class="error" role="alert">{err}</p>;
  if (!job) return <p class="muted">Loading…</p>;
  const admin = data.me.role === 'admin';
  const addr = (id: string) => data.topology?.nodes.find((n) => n.id === id)?.address ?? id.slice(0, 8);
  const running = !FINAL.includes(job.status);
  const cancel = async () => {
    if (!confirm(`Cancel job ${job.id}? It stops at the next safe point; no slot is left open.`)) return;
    setCancelling(true);
    try {
      setJob(await api<Job>('POST', `/jobs/${encodeURIComponent(job.id)}/cancel`));
    } catch (e) {
      setErr((e as ApiError).message);
    } finally {
      setCancelling(false);
    }
  };
  return (
    <section aria-labelledby="job-title" data-testid="job-page" data-status={job.status}>
      <p>
        <a href="#/jobs">← Jobs</a>
      </p>
      <h2 id="job-title">
        {job.kind} <span class="mono">{job.id}</span> <Status s={job.status} />
      </h2>
      <Progress job={job} />
      <dl class="facts">
        <dt>Started by</dt>
        <dd>{job.actor}</dd>
        <dt>Created</dt>
        <dd>{time(job.created_at)}</dd>
        <dt>Finished</dt>
        <dd>{time(job.finished_at)}</dd>
        <dt>Moved</dt>
        <dd>
          {num(job.slots_moved)} slots, {num(job.keys_moved)} keys
        </dd>
      </dl>
      {job.error && (
        <p class="error" role="alert" data-testid="job-error">
          {job.error}
        </p>
      )}
      {err && <p class="error">{err}</p>}
      {running && (
        <button
          type="button"
          disabled={!admin || cancelling || job.cancel_requested}
          title={!admin ? 'Needs an admin token; this one may only read.' : undefined}
          onClick={cancel}
        >
          {job.cancel_requested ? 'Cancel requested…' : 'Cancel job'}
        </button>
      )}
      <h3>Steps</h3>
      <ol class="steps">
        {(job.steps ?? []).map((s) => (
          <li class={`step step-${s.status}`}>
            <span class="step-name">{s.name}</span> <Status s={s.status} />
            {s.slots_moved > 0 && (
              <span class="muted">
                {' '}
                {num(s.slots_moved)} slots, {num(s.keys_moved)} keys
              </span>
            )}
            {s.detail && <div class="muted">{s.detail}</div>}
          </li>
        ))}
      </ol>
      {Array.isArray(job.plan?.moves) && job.plan.moves.length > 0 && (
        <>
          <h3>Plan</h3>
          <ul data-testid="job-plan">
            {movesSummary(job.plan.moves as Move[], addr).map((l) => (
              <li>{l}</li>
            ))}
          </ul>
        </>
      )}
      <details>
        <summary>Plan and parameters</summary>
        <pre>{JSON.stringify({ params: job.params, plan: job.plan }, null, 2)}</pre>
      </details>
    </section>
  );
}
