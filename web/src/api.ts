// The control plane's REST API as the page uses it: the token, JSON calls
// with the API's error shape, and the event stream read through fetch (an
// EventSource cannot send the Authorization header).

const KEY = 'slotkv.token';

export function storedToken(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function saveToken(t: string | null) {
  try {
    if (t) localStorage.setItem(KEY, t);
    else localStorage.removeItem(KEY);
  } catch {
    /* private mode: the token lives for this page only */
  }
}

/**
 * `controlplane up` prints the address with `#token=…`: take it, keep it,
 * and clear it from the address bar so it is not bookmarked or shared.
 */
export function takeTokenFromFragment(): string | null {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  const t = decodeURIComponent(m[1]);
  history.replaceState(null, '', location.pathname + location.search + '#/');
  return t;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public job?: string,
  ) {
    super(message);
  }
}

let token: string | null = null;
let onUnauthorized: () => void = () => {};

export function setToken(t: string | null, unauthorized?: () => void) {
  token = t;
  if (unauthorized) onUnauthorized = unauthorized;
}

export async function api<T>(method: string, path: string, body?: unknown, idempotencyKey?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let r: Response;
  try {
    r = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `The control plane did not answer (${String(e)})`);
  }
  const text = await r.text();
  let v: any = null;
  try {
    v = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: reported below */
  }
  if (!r.ok) {
    const e = v?.error;
    if (r.status === 401) onUnauthorized();
    throw new ApiError(r.status, e?.code ?? 'http_' + r.status, e?.message ?? (text || r.statusText), e?.job);
  }
  return v as T;
}

const early = new Map<string, Promise<unknown>>();

/**
 * Starts GETs the first render will need before there is anything to
 * render (the first visit waits on a chain of them otherwise); `get` of
 * the same path takes the answer once.
 */
export function prefetch(paths: string[]) {
  for (const p of paths) {
    const r = api('GET', p);
    r.catch(() => {});
    early.set(p, r);
  }
}

export function get<T>(path: string): Promise<T> {
  const r = early.get(path);
  if (r) {
    early.delete(path);
    return r as Promise<T>;
  }
  return api<T>('GET', path);
}

/** A fresh key per action a person confirms: a retried POST is the same job. */
export function newKey(): string {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export interface Sse {
  close(): void;
}

/**
 * Follows a Server-Sent Events stream with the bearer token, reconnecting
 * after a drop from the last id seen (the server refills from its store).
 */
export function follow(path: string, onEvent: (kind: string, data: string, id: number) => void, onState?: (live: boolean) => void): Sse {
  let closed = false;
  let last = 0;
  let ctl: AbortController | null = null;
  const run = async () => {
    while (!closed) {
      ctl = new AbortController();
      try {
        const headers: Record<string, string> = { Accept: 'text/event-stream' };
        if (token) headers.Authorization = `Bearer ${token}`;
        if (last) headers['Last-Event-ID'] = String(last);
        const r = await fetch(`/api/v1${path}`, { headers, signal: ctl.signal });
        if (r.status === 401) {
          onUnauthorized();
          return;
        }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        onState?.(true);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end: number;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let kind = 'message';
            let id = 0;
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) kind = line.slice(6).trim();
              else if (line.startsWith('id:')) id = Number(line.slice(3).trim());
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length) {
              if (id) last = id;
              onEvent(kind, data.join('\n'), id);
            }
          }
        }
      } catch {
        /* dropped: retried below */
      }
      onState?.(false);
      if (!closed) await new Promise((res) => setTimeout(res, 1000));
    }
  };
  void run();
  return {
    close() {
      closed = true;
      ctl?.abort();
    },
  };
}

// The API's shapes, as far as the page reads them.
export interface ObservedNode {
  id: string;
  address: string;
  role: string;
  master: string | null;
  slots: [number, number][];
  flags: string[];
  link: string;
  config_epoch: number;
  offset: number;
  memory_bytes: number;
  ops_per_sec: number;
  keys: number;
}
export interface OpenSlot {
  slot: number;
  from: string;
  to: string;
}
export interface Topology {
  state: string;
  observed_at: number;
  nodes: ObservedNode[];
  open_slots: OpenSlot[];
}
export interface ClusterSummary {
  name: string;
  state: string;
  masters: number;
  replicas: number;
  slots_covered: number;
  open_slots: number;
  keys: number;
  observed_at: number;
  running_job: string | null;
}
export interface Step {
  idx: number;
  name: string;
  status: string;
  detail: string | null;
  started_at: number | null;
  finished_at: number | null;
  slots_moved: number;
  keys_moved: number;
}
export interface Job {
  id: string;
  cluster: string;
  kind: string;
  status: string;
  progress: number;
  error: string | null;
  params: any;
  plan: any;
  actor: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  cancel_requested: boolean;
  slots_moved: number;
  keys_moved: number;
  steps?: Step[];
}
export interface EventRow {
  id: number;
  time: number;
  cluster: string;
  kind: string;
  node: string | null;
  actor: string | null;
  job: string | null;
  details: any;
}
export interface Sample {
  node: string;
  address: string;
  role: string;
  time: number;
  ops_per_sec: number;
  memory_bytes: number;
  keys: number;
  offset: number;
}
export interface WhoAmI {
  name: string;
  role: string;
}
