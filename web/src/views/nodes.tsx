// Shards: each master with its replicas, and what the observer saw of them.

import { ObservedNode } from '../api';
import { bytes, num, shortId } from '../format';
import { colour } from '../slots';
import { count } from '../slots';

interface Props {
  nodes: ObservedNode[];
  masters: string[];
  /** Why changes are disabled, if they are. */
  why?: string;
  onFailover: (replica: ObservedNode) => void;
  onRemove: (node: ObservedNode) => void;
}

export function isDown(n: ObservedNode): boolean {
  return n.flags.includes('fail') || n.link !== 'connected';
}

function Flags({ n }: { n: ObservedNode }) {
  const shown = n.flags.filter((f) => !['myself', 'master', 'slave', 'replica'].includes(f));
  return (
    <>
      {shown.map((f) => (
        <span class={`flag flag-${f.replace(/\W/g, '')}`}>{f}</span>
      ))}
    </>
  );
}

export function Nodes({ nodes, masters, why, onFailover, onRemove }: Props) {
  const shards = nodes
    .filter((n) => n.role === 'master')
    .sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true }))
    .map((m) => ({ m, replicas: nodes.filter((r) => r.role !== 'master' && r.master === m.id) }));
  const orphans = nodes.filter((r) => r.role !== 'master' && !nodes.some((m) => m.id === r.master));
  const row = (n: ObservedNode, master: ObservedNode | null) => {
    const down = isDown(n);
    const lag = master && n.role !== 'master' ? Math.max(0, master.offset - n.offset) : null;
    return (
      <tr class={down ? 'down' : ''} data-node={n.id} data-role={n.role}>
        <td>
          {n.role === 'master' ? (
            <span class="swatch" style={{ background: colour(masters.indexOf(n.id)) }} aria-hidden="true" />
          ) : (
            <span class="indent" aria-hidden="true">↳</span>
          )}
          <span class="addr">{n.address}</span> <span class="muted mono" title={n.id}>{shortId(n.id)}</span>
        </td>
        <td>
          <span class={`role role-${n.role}`}>{n.role}</span> {down && <span class="flag flag-down">DOWN</span>} <Flags n={n} />
        </td>
        <td>{n.link}</td>
        <td class="num">{n.role === 'master' ? num(count(n.slots)) : ''}</td>
        {/* A node that does not answer has no figures (not zeros). */}
        <td class="num">{down ? '–' : num(n.keys)}</td>
        <td class="num">{down ? '–' : bytes(n.memory_bytes)}</td>
        <td class="num">{down ? '–' : num(n.ops_per_sec)}</td>
        <td class="num" title="replication offset">{down ? '–' : num(n.offset)}</td>
        <td class="num">{lag === null || down ? '' : num(lag)}</td>
        <td class="actions">
          {n.role !== 'master' && (
            <button
              type="button"
              disabled={!!why || down}
              title={why ?? (down ? 'The node is down' : 'Make this replica the master of its shard')}
              aria-label={`Failover ${n.address}`}
              onClick={() => onFailover(n)}
            >
              Failover
            </button>
          )}
          <button
            type="button"
            disabled={!!why}
            title={why ?? 'Remove this node from the cluster'}
            aria-label={`Remove ${n.address}`}
            onClick={() => onRemove(n)}
          >
            Remove
          </button>
        </td>
      </tr>
    );
  };
  return (
    <section aria-labelledby="nodes-title">
      <h2 id="nodes-title">Nodes and shards</h2>
      <div class="scroll-x">
        <table class="nodes" data-testid="nodes">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Role and flags</th>
              <th scope="col">Link</th>
              <th scope="col" class="num">Slots</th>
              <th scope="col" class="num">Keys</th>
              <th scope="col" class="num">Memory</th>
              <th scope="col" class="num">Ops/s</th>
              <th scope="col" class="num">Offset</th>
              <th scope="col" class="num">Lag</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          {shards.map(({ m, replicas }) => (
            <tbody class="shard">
              {row(m, null)}
              {replicas.map((r) => row(r, m))}
            </tbody>
          ))}
          {orphans.length > 0 && <tbody class="shard">{orphans.map((r) => row(r, null))}</tbody>}
        </table>
      </div>
    </section>
  );
}
