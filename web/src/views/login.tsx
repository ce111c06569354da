import { useState } from 'preact/hooks';

export function Login({ error, busy, onToken }: { error: string | null; busy: boolean; onToken: (t: string) => void }) {
  const [t, setT] = useState('');
  return (
    <main class="login">
      <h1>slotkv</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (t.trim()) onToken(t.trim());
        }}
      >
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          value={t}
          onInput={(e) => setT((e.target as HTMLInputElement).value)}
          placeholder="skv_…"
          required
        />
        <p class="hint">
          <code>controlplane up</code> prints the dashboard's address with the admin token in it, and saves the token in{' '}
          <code>data/slotkv/admin.token</code>. <code>controlplane token add --role viewer</code> makes a read-only one.
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Checking…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
