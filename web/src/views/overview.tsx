// The cluster at a glance: state, the slot map, shards and charts, and
// the buttons that start changes.

import { useMemo, useState } from 'preact/hooks';
import type { Data } from '../app';
import { bytes, num, ago } from '../format';
import { owners } from '../slots';
import { Action, ActionDialog } from './actions';
import { Charts } from './charts';
import { Nodes } from './nodes';
import { SlotMap } from './slotmap';

const NOT_ADMIN = 'Needs an admin token; this one may only read.';

export function Overview({ data }: { data: Data }) {
  const t = data.topology;
  const s = data.summary;
  const [selected, setSelected] = useState<string | null>(null);
  const [action, setAction] = useState<Action | null>(null);
  // The map is drawn again only when ownership changed, not per poll.
  const shape = (t?.nodes ?? []).map((n) => `${n.id}:${n.role}:${n.slots.join(',')}`).join('|');
  const o = useMemo(() => owners(t?.nodes ?? []), [shape]);
  if (!t || !s) return <p class="muted">Loading…</p>;
  const admin = data.me.role === 'admin';
  const busy = s.running_job;
  const why = !admin ? NOT_ADMIN : busy ? `A job is running (${busy}); one change at a time.` : undefined;
  const masters = t.nodes.filter((n) => n.role === 'master');
  const nodes = t.nodes;
  const total = (f: (n: (typeof nodes)[0]) => number) => nodes.reduce((a, n) => a + f(n), 0);
  const card = (label: string, value: string | preact.JSX.Element, cls = '') => (
    <div class={`card ${cls}`}>
      <div class="card-label">{label}</div>
      <div class="card-value">{value}</div>
    </div>
  );
  const button = (label: string, a: Action, extra?: string) => (
    <button type="button" disabled={!!why} title={why ?? extra} onClick={() => setAction(a)}>
      {label}
    </button>
  );
  return (
    <>
      <section class="overview" aria-label="Overview" data-testid="overview">
        {card('State', s.state === 'ok' ? 'ok' : 'fail', s.state === 'ok' ? 'ok' : 'bad')}
        {card('Slots covered', `${num(s.slots_covered)} / 16,384`, s.slots_covered === 16384 ? '' : 'bad')}
        {card('Slots open', num(s.open_slots), s.open_slots ? 'warn' : '')}
        {card('Masters', <span data-testid="masters">{s.masters}</span>)}
        {card('Replicas', <span data-testid="replicas">{s.replicas}</span>)}
        {card('Keys', num(s.keys))}
        {card('Memory', bytes(total((n) => n.memory_bytes)))}
        {card('Ops/s', num(total((n) => n.ops_per_sec)))}
        {card(
          'Running job',
          busy ? <a href={`#/jobs/${busy}`}>{busy}</a> : 'none',
        )}
        <p class="observed muted">
          Observed {ago(t.observed_at)} · events {data.streaming ? 'live' : 'reconnecting…'}
        </p>
      </section>
      <div class="toolbar" role="toolbar" aria-label="Changes">
        {button('Reshard…', { kind: 'reshard' }, 'Move slots to a master')}
        {button('Rebalance…', { kind: 'rebalance' }, 'Even out slots across masters')}
        {button('Add node…', { kind: 'add' }, 'Add an empty master or a replica')}
        {why && <span class="muted why">{why}</span>}
      </div>
      <SlotMap cluster={data.cluster} owners={o} nodes={t.nodes} open={t.open_slots} selected={selected} onSelect={setSelected} />
      <Nodes
        nodes={t.nodes}
        masters={o.masters}
        why={why}
        onFailover={(replica) => setAction({ kind: 'failover', replica })}
        onRemove={(node) => setAction({ kind: 'remove', node })}
      />
      <Charts cluster={data.cluster} nodes={t.nodes} masters={masters.map((m) => m.id).sort()} />
      {action && (
        <ActionDialog
          action={action}
          ctx={{
            cluster: data.cluster,
            nodes: t.nodes,
            owners: o,
            go: data.go,
            close: () => {
              setAction(null);
              data.refresh();
            },
          }}
        />
      )}
    </>
  );
}
