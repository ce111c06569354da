// Ops/s and memory per node over the last 15 minutes, from the control
// plane's samples, drawn with uPlot and updated every few seconds.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { get, Sample } from '../api';
import { bytes, num } from '../format';
import { colour } from '../slots';

const WINDOW_MS = 15 * 60_000;

/** Samples as uPlot columns: shared seconds, one series per node. */
export function columns(samples: Sample[], nodes: string[], field: 'ops_per_sec' | 'memory_bytes'): number[][] {
  const times = [...new Set(samples.map((s) => s.time))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const series = nodes.map(() => new Array<number>(times.length).fill(NaN));
  for (const s of samples) {
    const n = nodes.indexOf(s.node);
    const i = at.get(s.time);
    if (n >= 0 && i !== undefined) series[n][i] = s[field];
  }
  return [times.map((t) => t / 1000), ...series];
}

function Chart({ title, data, names, colours, fmt }: { title: string; data: number[][]; names: string[]; colours: string[]; fmt: (v: number) => string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = names.join(',');
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { values: (_u, vals) => vals.map((v) => fmt(v)), size: 70 }],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: colours[i], width: 1.5, value: (_u: uPlot, v: number | null) => (v == null ? '–' : fmt(v)) }))],
    };
    plot.current = new uPlot(opts, data as uPlot.AlignedData, el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height: 180 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [key]);
  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}, last 15 minutes, per node`} />
    </figure>
  );
}

export function Charts({ cluster, nodes, masters }: { cluster: string; nodes: { id: string; address: string }[]; masters: string[] }) {
  const [samples, setSamples] = useState<Sample[]>([]);
  useEffect(() => {
    let stop = false;
    let kept: Sample[] = [];
    const load = async () => {
      const since = kept.length ? kept[kept.length - 1].time + 1 : Date.now() - WINDOW_MS;
      try {
        const r = await get<{ samples: Sample[] }>(`/clusters/${encodeURIComponent(cluster)}/samples?since=${since}`);
        const from = Date.now() - WINDOW_MS;
        kept = kept.concat(r.samples).filter((s) => s.time >= from);
        if (!stop) setSamples(kept);
      } catch {
        /* kept as it is; the banner shows API errors */
      }
    };
    void load();
    const t = setInterval(load, 5000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [cluster]);
  const ids = nodes.map((n) => n.id).sort();
  // New columns only when new samples came (not on every page render).
  const idKey = ids.join(',');
  const ops = useMemo(() => columns(samples, ids, 'ops_per_sec'), [samples, idKey]);
  const mem = useMemo(() => columns(samples, ids, 'memory_bytes'), [samples, idKey]);
  const names = ids.map((id) => nodes.find((n) => n.id === id)?.address ?? id.slice(0, 8));
  const colours = ids.map((id, i) => {
    const m = masters.indexOf(id);
    return m >= 0 ? colour(m) : `hsl(0 0% ${30 + ((i * 13) % 40)}%)`;
  });
  return (
    <section class="charts" aria-labelledby="charts-title">
      <h2 id="charts-title">Last 15 minutes</h2>
      <div class="chart-row">
        <Chart title="Ops/s" data={ops} names={names} colours={colours} fmt={num} />
        <Chart title="Memory" data={mem} names={names} colours={colours} fmt={bytes} />
      </div>
    </section>
  );
}
