// The changes an admin can start from the page. Each asks for
// confirmation (reshard and rebalance show their plan on the slot map
// first), shows the API's message when refused, and lands on the job.

import { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, Job, ObservedNode, api, newKey } from '../api';
import { Move, SlotOwners, applyMoves, count, movesSummary, parseRanges, Range } from '../slots';
import { SlotMap } from './slotmap';

export type Action =
  | { kind: 'reshard' }
  | { kind: 'rebalance' }
  | { kind: 'add' }
  | { kind: 'failover'; replica: ObservedNode }
  | { kind: 'remove'; node: ObservedNode };

interface Ctx {
  cluster: string;
  nodes: ObservedNode[];
  owners: SlotOwners;
  go: (hash: string) => void;
  close: () => void;
}

function Modal({ title, children, onClose }: { title: string; children: ComponentChildren; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const onCancel = (e: Event) => {
      e.preventDefault();
      onClose();
    };
    d?.addEventListener('cancel', onCancel);
    return () => d?.removeEventListener('cancel', onCancel);
  }, []);
  return (
    <dialog ref={ref} aria-labelledby="dialog-title" class="modal">
      <h2 id="dialog-title">{title}</h2>
      {children}
    </dialog>
  );
}

function Refusal({ e }: { e: ApiError | null }) {
  if (!e) return null;
  return (
    <p class="error" role="alert" data-testid="action-error">
      {e.message}
      {e.code && <span class="muted"> ({e.code})</span>}
      {e.job && (
        <>
          {' '}
          <a href={`#/jobs/${e.job}`}>See the running job</a>
        </>
      )}
    </p>
  );
}

/** Runs a POST/DELETE that starts a job and goes to the job's page. */
function useStart(ctx: Ctx) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<ApiError | null>(null);
  // One key per dialog: pressing confirm twice (or a retry after a
  // dropped answer) gives back the same job.
  const key = useRef(newKey());
  const start = async (method: string, path: string, body?: unknown) => {
    setBusy(true);
    setErr(null);
    try {
      const job = await api<Job>(method, path, body, key.current);
      ctx.close();
      ctx.go(`#/jobs/${job.id}`);
    } catch (e) {
      setErr(e as ApiError);
      key.current = newKey();
    } finally {
      setBusy(false);
    }
  };
  return { busy, err, setErr, start };
}

const base = (c: string) => `/clusters/${encodeURIComponent(c)}`;
const label = (nodes: ObservedNode[], id: string) => nodes.find((n) => n.id === id)?.address ?? id.slice(0, 8);

function PlanView({ ctx, moves }: { ctx: Ctx; moves: Move[] }) {
  const { after, changed } = applyMoves(ctx.owners, moves);
  const total = moves.reduce((n, m) => n + count(m.slots), 0);
  return (
    <div class="plan" data-testid="plan">
      <p>
        <b>{total}</b> slot{total === 1 ? '' : 's'} will move:
      </p>
      <ul>
        {movesSummary(moves, (id) => label(ctx.nodes, id)).map((l) => (
          <li>{l}</li>
        ))}
      </ul>
      <SlotMap
        cluster={ctx.cluster}
        owners={after}
        nodes={ctx.nodes}
        open={[]}
        changed={changed}
        selected={null}
        onSelect={() => {}}
        label="After the change (slots that move are bright)"
      />
    </div>
  );
}

function Buttons({ busy, confirm, onConfirm, onCancel, disabled }: { busy: boolean; confirm: string; onConfirm: () => void; onCancel: () => void; disabled?: boolean }) {
  return (
    <div class="buttons">
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
      <button type="button" class="primary" disabled={busy || disabled} onClick={onConfirm}>
        {busy ? 'Working…' : confirm}
      </button>
    </div>
  );
}

function Reshard({ ctx }: { ctx: Ctx }) {
  const masters = ctx.nodes.filter((n) => n.role === 'master');
  const [to, setTo] = useState(masters[0]?.id ?? '');
  const [from, setFrom] = useState<string[]>([]);
  const [byRanges, setByRanges] = useState(false);
  const [slots, setSlots] = useState('100');
  const [ranges, setRanges] = useState('');
  const [method, setMethod] = useState('auto');
  const [plan, setPlan] = useState<Move[] | null>(null);
  const [local, setLocal] = useState<string | null>(null);
  const { busy, err, setErr, start } = useStart(ctx);
  const body = (): Record<string, unknown> | null => {
    const b: Record<string, unknown> = { to, method };
    if (from.length) b.from = from;
    if (byRanges) {
      const r = parseRanges(ranges);
      if ('error' in r) {
        setLocal(r.error);
        return null;
      }
      b.ranges = r as Range[];
    } else {
      const n = Number(slots);
      if (!Number.isInteger(n) || n < 1 || n > 16384) {
        setLocal('The number of slots is 1 to 16384.');
        return null;
      }
      b.slots = n;
    }
    setLocal(null);
    return b;
  };
  const preview = async () => {
    const b = body();
    if (!b) return;
    setErr(null);
    try {
      const r = await api<{ plan: { moves: Move[] } }>('POST', `${base(ctx.cluster)}/reshard`, { ...b, dry_run: true });
      setPlan(r.plan.moves);
    } catch (e) {
      setErr(e as ApiError);
    }
  };
  return (
    <Modal title="Reshard" onClose={ctx.close}>
      <form class="form" onSubmit={(e) => e.preventDefault()} onInput={() => setPlan(null)}>
        <label>
          Target master
          <select value={to} onChange={(e) => setTo((e.target as HTMLSelectElement).value)}>
            {masters.map((m) => (
              <option value={m.id}>{m.address}</option>
            ))}
          </select>
        </label>
        <fieldset>
          <legend>Take slots from (none ticked: from all other masters)</legend>
          {masters
            .filter((m) => m.id !== to)
            .map((m) => (
              <label class="check">
                <input
                  type="checkbox"
                  checked={from.includes(m.id)}
                  onChange={(e) => setFrom((f) => ((e.target as HTMLInputElement).checked ? [...f, m.id] : f.filter((x) => x !== m.id)))}
                />
                {m.address}
              </label>
            ))}
        </fieldset>
        <fieldset>
          <legend>What moves</legend>
          <label class="check">
            <input type="radio" name="what" checked={!byRanges} onChange={() => setByRanges(false)} /> a number of slots
          </label>
          <label class="check">
            <input type="radio" name="what" checked={byRanges} onChange={() => setByRanges(true)} /> given slot ranges
          </label>
          {byRanges ? (
            <label>
              Ranges (e.g. 0-99, 500)
              <input value={ranges} onInput={(e) => setRanges((e.target as HTMLInputElement).value)} />
            </label>
          ) : (
            <label>
              Number of slots
              <input type="number" min={1} max={16384} value={slots} onInput={(e) => setSlots((e.target as HTMLInputElement).value)} />
            </label>
          )}
        </fieldset>
        <label>
          Method
          <select value={method} onChange={(e) => setMethod((e.target as HTMLSelectElement).value)}>
            <option value="auto">auto: atomic between datanodes, MIGRATE otherwise</option>
            <option value="atomic">atomic: whole slots at once (datanodes only)</option>
            <option value="legacy">legacy: MIGRATE slot by slot, as redis-cli does</option>
          </select>
        </label>
      </form>
      {local && (
        <p class="error" role="alert">
          {local}
        </p>
      )}
      <Refusal e={err} />
      {plan && <PlanView ctx={ctx} moves={plan} />}
      {plan ? (
        <Buttons
          busy={busy}
          confirm="Confirm reshard"
          onCancel={ctx.close}
          onConfirm={() => {
            const b = body();
            if (b) void start('POST', `${base(ctx.cluster)}/reshard`, b);
          }}
        />
      ) : (
        <Buttons busy={busy} confirm="Preview plan" onCancel={ctx.close} onConfirm={preview} />
      )}
    </Modal>
  );
}

function Rebalance({ ctx }: { ctx: Ctx }) {
  const [empty, setEmpty] = useState(true);
  const [plan, setPlan] = useState<Move[] | null>(null);
  const { busy, err, setErr, start } = useStart(ctx);
  const body = () => ({ use_empty_masters: empty });
  useEffect(() => {
    setPlan(null);
    setErr(null);
    api<{ plan: { moves: Move[] } }>('POST', `${base(ctx.cluster)}/rebalance`, { ...body(), dry_run: true })
      .then((r) => setPlan(r.plan.moves))
      .catch((e) => setErr(e as ApiError));
  }, [empty]);
  return (
    <Modal title="Rebalance" onClose={ctx.close}>
      <p>Moves slots so that every master holds an equal share (redis-cli's threshold of 2% applies).</p>
      <label class="check">
        <input type="checkbox" checked={empty} onChange={(e) => setEmpty((e.target as HTMLInputElement).checked)} /> give slots to masters that
        have none
      </label>
      <Refusal e={err} />
      {plan && plan.length === 0 && <p>The cluster is balanced: nothing would move.</p>}
      {plan && plan.length > 0 && <PlanView ctx={ctx} moves={plan} />}
      <Buttons
        busy={busy}
        disabled={!plan || plan.length === 0}
        confirm="Confirm rebalance"
        onCancel={ctx.close}
        onConfirm={() => void start('POST', `${base(ctx.cluster)}/rebalance`, body())}
      />
    </Modal>
  );
}

function AddNode({ ctx }: { ctx: Ctx }) {
  const masters = ctx.nodes.filter((n) => n.role === 'master');
  const [address, setAddress] = useState('');
  const [role, setRole] = useState<'master' | 'replica'>('master');
  const [master, setMaster] = useState('');
  const { busy, err, start } = useStart(ctx);
  return (
    <Modal title="Add a node" onClose={ctx.close}>
      <form class="form" onSubmit={(e) => e.preventDefault()}>
        <label>
          Address (host:port of an empty node started in cluster mode)
          <input value={address} placeholder="127.0.0.1:30007" onInput={(e) => setAddress((e.target as HTMLInputElement).value.trim())} />
        </label>
        <fieldset>
          <legend>Role</legend>
          <label class="check">
            <input type="radio" name="role" checked={role === 'master'} onChange={() => setRole('master')} /> empty master (give it slots with a
            reshard or rebalance)
          </label>
          <label class="check">
            <input type="radio" name="role" checked={role === 'replica'} onChange={() => setRole('replica')} /> replica
          </label>
        </fieldset>
        {role === 'replica' && (
          <label>
            Of master
            <select value={master} onChange={(e) => setMaster((e.target as HTMLSelectElement).value)}>
              <option value="">the master with the fewest replicas</option>
              {masters.map((m) => (
                <option value={m.id}>{m.address}</option>
              ))}
            </select>
          </label>
        )}
      </form>
      <Refusal e={err} />
      <Buttons
        busy={busy}
        disabled={!address}
        confirm="Add node"
        onCancel={ctx.close}
        onConfirm={() => {
          const b: Record<string, string> = { address, role };
          if (role === 'replica' && master) b.master = master;
          void start('POST', `${base(ctx.cluster)}/nodes`, b);
        }}
      />
    </Modal>
  );
}

export const FAILOVER_MODES: [string, string][] = [
  ['default', 'Safe: the master stops writes until this replica has caught up, then they swap. Needs the master up.'],
  ['force', 'The replica takes over without waiting for the master (which may be down); the other masters still vote.'],
  ['takeover', 'No vote and no master: the replica claims the shard alone. Last resort; recent writes may be lost.'],
];

function Failover({ ctx, replica }: { ctx: Ctx; replica: ObservedNode }) {
  const [mode, setMode] = useState('default');
  const { busy, err, start } = useStart(ctx);
  const master = replica.master ? label(ctx.nodes, replica.master) : 'its master';
  return (
    <Modal title={`Fail over to ${replica.address}`} onClose={ctx.close}>
      <p>
        {replica.address} becomes the master of the shard; {master} becomes its replica.
      </p>
      <fieldset>
        <legend>Mode</legend>
        {FAILOVER_MODES.map(([m, why]) => (
          <label class="check">
            <input type="radio" name="mode" value={m} checked={mode === m} onChange={() => setMode(m)} />
            <b>{m}</b>: {why}
          </label>
        ))}
      </fieldset>
      <Refusal e={err} />
      <Buttons
        busy={busy}
        confirm={`Confirm ${mode} failover`}
        onCancel={ctx.close}
        onConfirm={() => void start('POST', `${base(ctx.cluster)}/failover`, { replica: replica.id, mode })}
      />
    </Modal>
  );
}

function Remove({ ctx, node }: { ctx: Ctx; node: ObservedNode }) {
  const slots = count(node.slots);
  const [drain, setDrain] = useState(slots > 0);
  const { busy, err, start } = useStart(ctx);
  return (
    <Modal title={`Remove ${node.address}`} onClose={ctx.close}>
      <p>
        Every other node forgets {node.address}, and it is reset to know only itself.
        {node.role === 'master' && ' Its replicas move to the master with the fewest.'}
      </p>
      {slots > 0 && (
        <label class="check">
          <input type="checkbox" checked={drain} onChange={(e) => setDrain((e.target as HTMLInputElement).checked)} /> first move its {slots} slots to
          the other masters (without this the API refuses: the node owns slots)
        </label>
      )}
      <Refusal e={err} />
      <Buttons
        busy={busy}
        confirm="Confirm removal"
        onCancel={ctx.close}
        onConfirm={() => void start('DELETE', `${base(ctx.cluster)}/nodes/${node.id}${drain ? '?drain=true' : ''}`)}
      />
    </Modal>
  );
}

export function ActionDialog({ action, ctx }: { action: Action; ctx: Ctx }) {
  switch (action.kind) {
    case 'reshard':
      return <Reshard ctx={ctx} />;
    case 'rebalance':
      return <Rebalance ctx={ctx} />;
    case 'add':
      return <AddNode ctx={ctx} />;
    case 'failover':
      return <Failover ctx={ctx} replica={action.replica} />;
    case 'remove':
      return <Remove ctx={ctx} node={action.node} />;
  }
}
