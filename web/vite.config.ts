import { defineConfig } from 'vite';

// The page is served by the control plane from its own binary: relative
// to the root, no external requests, hashed asset names (cached forever).
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a local `controlplane up`.
    proxy: { '/api': 'http://127.0.0.1:7070' },
  },
});
