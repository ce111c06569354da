// The page: login, the cluster's data kept fresh, and the routes.

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import {
  ApiError,
  ClusterSummary,
  EventRow,
  Job,
  Topology,
  WhoAmI,
  follow,
  get,
  prefetch,
  saveToken,
  setToken,
  storedToken,
  takeTokenFromFragment,
} from './api';
import { Overview } from './views/overview';
import { Jobs, JobPage } from './views/jobs';
import { Events } from './views/events';
import { Login } from './views/login';

export interface Data {
  cluster: string;
  clusters: ClusterSummary[];
  summary: ClusterSummary | null;
  topology: Topology | null;
  jobs: Job[];
  /** Live events, newest first (the stream's tail). */
  live: EventRow[];
  /**
   * Every batch of live events (newest first) as it arrives, each once:
   * for a view that must miss none (the tail above is bounded, and a view
   * may skip some of its states under a burst). Returns the unsubscribe.
   */
  subscribe: (f: (batch: EventRow[]) => void) => () => void;
  streaming: boolean;
  me: WhoAmI;
  error: string | null;
  refresh: () => void;
  go: (hash: string) => void;
}

function useHash(): string {
  const [h, setH] = useState(location.hash || '#/');
  useEffect(() => {
    const on = () => setH(location.hash || '#/');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return h;
}

const LIVE_KEPT = 500;

export function App() {
  const [token, setTok] = useState<string | null>(() => {
    const t = takeTokenFromFragment() ?? storedToken();
    if (t) {
      setToken(t);
      prefetch(['/whoami', '/clusters']);
    }
    return t;
  });
  const [me, setMe] = useState<WhoAmI | null>(null);
  const [loginError, setLoginError] = useState<string | null>(null);

  const logout = useCallback((why: string | null) => {
    saveToken(null);
    setToken(null);
    setTok(null);
    setMe(null);
    setLoginError(why);
  }, []);

  useEffect(() => {
    if (!token) return;
    setToken(token, () => logout('The token was refused (401). It may have been revoked; enter a valid one.'));
    get<WhoAmI>('/whoami')
      .then((w) => {
        saveToken(token);
        setMe(w);
        setLoginError(null);
      })
      .catch((e: ApiError) => {
        logout(e.status === 401 ? 'That token is not valid: the control plane refused it.' : e.message);
      });
  }, [token]);

  if (!token || !me) {
    return <Login error={loginError} busy={!!token && !me && !loginError} onToken={(t) => setTok(t)} />;
  }
  return <Dashboard me={me} onLogout={() => logout(null)} />;
}

function Dashboard({ me, onLogout }: { me: WhoAmI; onLogout: () => void }) {
  const hash = useHash();
  const [clusters, setClusters] = useState<ClusterSummary[]>([]);
  const [cluster, setCluster] = useState<string>('');
  const [topology, setTopology] = useState<Topology | null>(null);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [live, setLive] = useState<EventRow[]>([]);
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const tick = useRef(0);

  // The chosen cluster, read by `load` (which keeps one identity, so a
  // choice made by the first load does not start another).
  const chosen = useRef('');
  const choose = (name: string) => {
    chosen.current = name;
    setCluster(name);
  };
  const load = useCallback(async () => {
    const n = ++tick.current;
    try {
      const cs = (await get<{ clusters: ClusterSummary[] }>('/clusters')).clusters;
      if (n !== tick.current) return;
      setClusters(cs);
      const name = chosen.current || (cs.find((c) => c.name === 'local') ?? cs[0])?.name || '';
      if (!name) return;
      const [t, j] = await Promise.all([
        get<Topology>(`/clusters/${encodeURIComponent(name)}/topology`),
        get<{ jobs: Job[] }>(`/jobs?cluster=${encodeURIComponent(name)}`),
      ]);
      if (n !== tick.current) return;
      if (name !== chosen.current) choose(name);
      setTopology(t);
      setJobs(j.jobs);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);

  // Polled every 2 s, and soon after any event; the first load starts
  // before the first paint.
  useLayoutEffect(() => {
    void load();
    const t = setInterval(load, 2000);
    return () => clearInterval(t);
  }, [load]);

  const soon = useRef<number | null>(null);
  const listeners = useRef(new Set<(batch: EventRow[]) => void>());
  const subscribe = useCallback((f: (batch: EventRow[]) => void) => {
    listeners.current.add(f);
    return () => void listeners.current.delete(f);
  }, []);
  useEffect(() => {
    if (!cluster) return;
    setLive([]);
    let s: { close(): void } | null = null;
    let stopped = false;
    // Events arriving together are added in one render per frame, so a
    // burst does not re-render the page per event.
    let pending: EventRow[] = [];
    let frame = 0;
    const flush = () => {
      frame = 0;
      const batch = pending.reverse();
      pending = [];
      setLive((l) => batch.concat(l).slice(0, LIVE_KEPT));
      for (const f of listeners.current) f(batch);
    };
    const base = `/clusters/${encodeURIComponent(cluster)}/events`;
    // The newest page first, then the stream from its newest id on.
    get<{ events: EventRow[] }>(`${base}?before=${Number.MAX_SAFE_INTEGER}&limit=100`)
      .catch(() => ({ events: [] as EventRow[] }))
      .then((page) => {
        if (stopped) return;
        setLive(page.events);
        const after = page.events[0]?.id ?? 0;
        s = follow(`${base}/stream?after=${after}`, onEvent, setStreaming);
      });
    function onEvent(_kind: string, data: string) {
        try {
          pending.push(JSON.parse(data) as EventRow);
        } catch {
          return;
        }
        if (!frame) frame = requestAnimationFrame(flush);
        // What changed is fetched again soon, at most once a second
        // however fast events come.
        if (soon.current === null) {
          soon.current = window.setTimeout(() => {
            void load();
            window.setTimeout(() => (soon.current = null), 1000);
          }, 300);
        }
    }
    return () => {
      stopped = true;
      s?.close();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [cluster]);

  const summary = clusters.find((c) => c.name === cluster) ?? null;
  const data: Data = {
    cluster,
    clusters,
    summary,
    topology,
    jobs,
    live,
    subscribe,
    streaming,
    me,
    error,
    refresh: () => void load(),
    go: (h) => {
      location.hash = h;
    },
  };

  const route = hash.replace(/^#/, '');
  let page;
  let m: RegExpExecArray | null;
  if ((m = /^\/jobs\/([^/]+)$/.exec(route))) page = <JobPage data={data} id={decodeURIComponent(m[1])} />;
  else if (route.startsWith('/jobs')) page = <Jobs data={data} />;
  else if (route.startsWith('/events')) page = <Events data={data} />;
  else page = <Overview data={data} />;

  const tab = (href: string, label: string, active: boolean) => (
    <a href={href} class={active ? 'tab active' : 'tab'} aria-current={active ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <>
      <header class="top">
        <span class="brand">slotkv</span>
        <nav aria-label="Sections">
          {tab('#/', 'Cluster', !route.startsWith('/jobs') && !route.startsWith('/events'))}
          {tab('#/jobs', 'Jobs', route.startsWith('/jobs'))}
          {tab('#/events', 'Events', route.startsWith('/events'))}
        </nav>
        <span class="spacer" />
        {clusters.length > 1 && (
          <label class="inline">
            Cluster{' '}
            <select
              value={cluster}
              onChange={(e) => {
                choose((e.target as HTMLSelectElement).value);
                setTopology(null);
                void load();
              }}
            >
              {clusters.map((c) => (
                <option value={c.name}>{c.name}</option>
              ))}
            </select>
          </label>
        )}
        <span class="who" title={`Signed in as ${me.name}`}>
          {me.name} · {me.role}
        </span>
        <button type="button" class="link" onClick={onLogout}>
          Log out
        </button>
      </header>
      {error && (
        <p class="banner error" role="alert">
          {error}
        </p>
      )}
      {!cluster && !error && <p class="banner">No cluster is known to this control plane yet.</p>}
      <main>{cluster && page}</main>
    </>
  );
}
